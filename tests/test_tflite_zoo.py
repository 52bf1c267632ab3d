"""TFLite acceptance on the whole zoo: float matches onnxruntime, int8 runs on LiteRT (XNNPACK and reference)
and TFLite Micro, TFLM is bit-exact with the reference kernels, and the .tflite carries the very scales of
the .onnx twin."""
import numpy as np
import pytest
from onnx import numpy_helper

import edgepack
import zoo
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.demo import accuracy
from edgepack.errors import UnsupportedOpError
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.io_mapping import dequantize_output, from_file_layout, quantize_input, to_file_layout
from edgepack.targets.runtimes import TFLM, LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite
from test_int8_onnx import MAX_INT8_LOSS

_CACHE = {}

# zoo.LITERT_ONLY: models using a builtin TFLite Micro has no kernel for run on LiteRT only, and TFLM
# refuses them with one line naming the op and the node.
LITERT_ONLY = zoo.LITERT_ONLY
digits_like = zoo.digits_like  # other tests import it from here
# Every runtime rounds 1-LSB ties its own way; a layer whose output scale is several times finer than its
# input's shows such a difference as several LSB. Per model: (fraction of onnxruntime values within 1 LSB
# of LiteRT's, max LSB between XNNPACK and the reference kernels). act_heads: its output Mul's scale is
# ~5x finer than the fixed Sigmoid/Tanh scales it reads; lenet: the layers after its Tanhs (fixed 1/128)
# have ~3.5x finer outputs.
AMPLIFIED = {"act_heads": (0.95, 8), "lenet": (0.85, 4)}


def quantized(name):
    if name not in _CACHE:
        model, shape = zoo.build(name)
        graph = edgepack.load(model, input_shape=shape)
        samples = load_samples(zoo.digits_like(shape, 64), shape)
        qgraph, _ = calibrate_graph(graph, samples, "minmax")
        _CACHE[name] = (graph, qgraph, shape, zoo.digits_like(shape, 80)[64:])
    return _CACHE[name]


class Int8Runner:
    """Feeds float NCHW samples to an int8 .tflite runtime and returns its raw int8 outputs."""

    def __init__(self, runtime, model: bytes):
        info = read_tflite(model)
        self.rt, self.inp = runtime, info.tensors[info.inputs[0]]

    def __call__(self, x):
        q = quantize_input(to_file_layout(x[None], self.inp.shape), np.int8, self.inp.scale[0],
                           self.inp.zero_point[0])
        return self.rt.run(q)[0]


def truncated_before_gemm(qgraph):
    """The convolutional part of a model: everything before its first fully connected layer."""
    g = qgraph.copy()
    gemm = next((n for n in g.nodes if n.op == "Gemm"), None)
    if gemm is None:
        return g
    feed = gemm.inputs[0]
    while g.producer(feed).op == "Reshape":  # keep the 4-D feature map, not its flattened view
        feed = g.producer(feed).inputs[0]
    g.outputs = [feed]
    g.remove_unused()
    return g


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_float_tflite_matches_onnxruntime(name):
    graph, _, shape, xs = quantized(name)
    lite = LiteRT(to_tflite(graph, int8=False), reference=True)
    ort_ = OnnxRuntime(to_onnx(graph).SerializeToString())
    for x in xs[:8]:
        want = ort_.run(x[None])[0]
        got = from_file_layout(lite.run(to_file_layout(x[None], lite.inputs[0]["shape"]))[0], want.shape)
        scale = float(want.max() - want.min()) or 1.0
        assert np.max(np.abs(got - want)) <= 1e-4 * scale


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_int8_runs_on_three_runtimes_and_tflm_is_bit_exact(name):
    _, qgraph, _, xs = quantized(name)
    model = to_tflite(qgraph, int8=True)
    ref, xnn = Int8Runner(LiteRT(model, reference=True), model), Int8Runner(LiteRT(model), model)
    a = np.stack([ref(x) for x in xs]).astype(int)
    c = np.stack([xnn(x) for x in xs]).astype(int)
    assert np.max(np.abs(a - c)) <= AMPLIFIED.get(name, (0, 4))[1]  # XNNPACK: within 1 LSB per op
    if name in LITERT_ONLY:
        with pytest.raises(UnsupportedOpError, match=f"unsupported op '{LITERT_ONLY[name]}' at node '.+'"):
            TFLM(model)
        return
    tflm = Int8Runner(TFLM(model), model)
    b = np.stack([tflm(x) for x in xs]).astype(int)
    has_fc = "Gemm" in qgraph.op_counts()
    if has_fc:
        # TFLM's int8 FULLY_CONNECTED rounds twice (requantize, then add the output offset with its own
        # rounding) where LiteRT's reference kernel rounds once: its outputs may differ by 1 LSB.
        assert np.max(np.abs(a - b)) <= 1
    else:
        assert np.array_equal(a, b), f"TFLM differs from LiteRT reference on {np.mean(a != b):.1%} of values"


@pytest.mark.parametrize("name", [n for n in zoo.CONV_NAMES if n not in ("decoder", "squeezenet")])
def test_the_part_before_fully_connected_is_bit_exact_on_tflm(name):
    """Proves the FC op is the only source of TFLM-vs-LiteRT differences in the models that have one."""
    _, qgraph, _, xs = quantized(name)
    body = truncated_before_gemm(qgraph)
    model = to_tflite(body, int8=True)
    ref, tflm = Int8Runner(LiteRT(model, reference=True), model), Int8Runner(TFLM(model), model)
    for x in xs:
        assert np.array_equal(ref(x), tflm(x))


def _onnx_params(model):
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] in inits:
            name = n.input[1].removesuffix("/scale")
            zp = inits[n.input[2]]
            shift = 128 if zp.dtype == np.uint8 else 0
            out[name] = (tuple(np.atleast_1d(inits[n.input[1]]).astype(float)),
                         tuple(int(z) - shift for z in np.atleast_1d(zp)))
    return out


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_every_tflite_scale_equals_its_onnx_twin(name):
    _, qgraph, _, _ = quantized(name)
    tfl = read_tflite(to_tflite(qgraph, int8=True))
    onnx_params = _onnx_params(to_onnx_qdq(qgraph, activations="uint8"))
    compared = 0
    for t in tfl.tensors:
        if not t.scale or t.dtype == "int32" or t.name not in onnx_params:
            continue
        scale, zp = onnx_params[t.name]
        np.testing.assert_array_equal(np.float32(t.scale), np.float32(scale), err_msg=t.name)
        assert t.zero_point == zp or (set(t.zero_point) == {0} and set(zp) == {0}), t.name
        compared += 1
    activations = [t for t in tfl.tensors if t.scale and not t.is_const]
    assert compared >= len(activations) - 1  # every activation (a vanished transpose may leave one out)


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_onnxruntime_and_litert_int8_agree_within_one_lsb(name):
    _, qgraph, _, xs = quantized(name)
    model = to_tflite(qgraph, int8=True)
    lite = Int8Runner(LiteRT(model, reference=True), model)
    ort_ = OnnxRuntime(to_onnx_qdq(qgraph).SerializeToString(), reference=True)  # the file, not MLAS (cpu.py)
    out = read_tflite(model).tensors[read_tflite(model).outputs[0]]
    diffs = []
    for x in xs:
        ref = ort_.run(x[None])[0]
        q_ort = np.round(ref / out.scale[0]) + out.zero_point[0]
        q_lite = from_file_layout(lite(x), ref.shape).astype(int)
        diffs.append(np.abs(q_ort - q_lite).ravel())
    d = np.concatenate(diffs)
    want = AMPLIFIED.get(name, (0.99, 4))[0]
    assert np.mean(d <= 1) >= want, f"only {np.mean(d <= 1):.1%} within 1 LSB"


@pytest.mark.parametrize("name", zoo.CONV_NAMES)
def test_no_transpose_in_zoo_cnns(name):
    graph, qgraph, _, _ = quantized(name)
    for model in (to_tflite(graph, int8=False), to_tflite(qgraph, int8=True)):
        assert "TRANSPOSE" not in read_tflite(model).op_counts()


# TRANSPOSEs a file may hold beyond the model's own Transpose nodes: audio_conv1d reads channel-first
# (N, C, T) data that its (NHWC) convolutions need channel-last.
LAYOUT_TRANSPOSES = {"audio_conv1d": 1}


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_the_only_transposes_are_the_models_own(name):
    graph, qgraph, _, _ = quantized(name)
    own = graph.op_counts().get("Transpose", 0)
    for model in (to_tflite(graph, int8=False), to_tflite(qgraph, int8=True)):
        assert read_tflite(model).op_counts().get("TRANSPOSE", 0) <= own + LAYOUT_TRANSPOSES.get(name, 0)


def test_channel_shuffle_is_one_transpose_between_two_reshapes():
    graph, qgraph, _, _ = quantized("shufflenet")
    assert graph.op_counts()["Transpose"] == 3  # three ShuffleUnits
    ops = read_tflite(to_tflite(qgraph, int8=True)).op_counts()
    assert ops["TRANSPOSE"] == 3 and ops["RESHAPE"] == 2 * 3  # the pooled flatten: FULLY_CONNECTED flattens itself


def int8_tflm_and_float_accuracy(model, digits, out):
    """Accuracy on the 359 held-out digits of an export's int8 .tflite on TFLite Micro and its float .onnx."""
    x_tr, _, x_te, y_te = digits
    rep = edgepack.export(model, calib=x_tr[:300], out=out, input_shape=(1, 1, 8, 8))
    model = open(rep.artifacts["int8_tflite"]["path"], "rb").read()
    info = read_tflite(model)
    out = info.tensors[info.outputs[0]]
    run = Int8Runner(TFLM(model), model)
    int8 = np.stack([dequantize_output(run(x), out.scale[0], out.zero_point[0]).ravel() for x in x_te])
    flt = OnnxRuntime(open(rep.artifacts["float_onnx"]["path"], "rb").read())
    return accuracy(int8, y_te), accuracy(np.concatenate([flt.run(x[None])[0] for x in x_te]), y_te)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet"])
def test_int8_tflite_of_digits_cnns_keeps_accuracy(tmp_path, digits, trained, name):
    int8_acc, float_acc = int8_tflm_and_float_accuracy(trained(name), digits, tmp_path)
    assert int8_acc >= float_acc - MAX_INT8_LOSS  # TFLM: measured -0.003 to 0 over 5 seeds
