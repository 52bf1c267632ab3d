"""The TFLite emitter on real runtimes: float vs a torch reference, int8 on LiteRT reference
kernels vs TFLite Micro (bit-exact for conv models), int8 vs float, layouts without TRANSPOSE."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_helpers import (GraphBuilder, calibrate, litert, op_names, run_litert, run_reference,
                            run_tflm, single_node_graph, stored_values, tflm)

from edgepack.errors import ConfigError, EdgepackError, UnsupportedOpError
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.exporter.layout import build_layout
from edgepack.exporter.tflite_builder import BuiltinOp, TfliteBuilder
from edgepack.exporter.tflite_ops import NOT_EMITTED, WRITERS
from edgepack.ir import OPS, QuantParams


# ---- models -----------------------------------------------------------------------------
def conv_stack():
    gb = GraphBuilder(seed=1)
    x = gb.input("x", (1, 3, 16, 16))
    y = gb.conv(x, 8, 3, stride=2, pads=[1, 1, 1, 1], activation="Relu")  # explicit PAD
    y = gb.conv(y, 8, 3, stride=1, activation="Relu6")  # SAME
    y = gb.conv(y, 12, 2, stride=1, pads=[0, 0, 1, 1])  # SAME (pads after)
    y = gb.conv(y, 12, 3, stride=2, pads=[0, 0, 1, 1], activation="Relu")  # SAME with stride 2
    y = gb.conv(y, 6, 3, stride=1, pads=[1, 0, 2, 1])  # asymmetric: explicit PAD
    y = gb.conv(y, 4, 1, pads=[0, 0, 0, 0], bias=False)  # VALID, no bias
    return gb.build(y), ("PAD", "CONV_2D")


def depthwise_residual():
    gb = GraphBuilder(seed=2)
    x = gb.input("x", (1, 4, 12, 12))
    a = gb.conv(x, 8, 1, activation="Relu")
    d = gb.conv(a, 8, 3, group=8, activation="Relu6")  # depthwise, multiplier 1
    d = gb.conv(d, 8, 1)
    r = gb.node("Add", [a, d], activation="Relu")  # residual
    c = gb.node("Concat", [a, r], axis=1)  # on channels
    p = gb.node("MaxPool", [c], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    q = gb.node("AveragePool", [p], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                count_include_pad=0)
    return gb.build(q), ("DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D")


def flatten_gemm():
    gb = GraphBuilder(seed=3)
    x = gb.input("x", (1, 2, 8, 8))
    y = gb.conv(x, 6, 3, stride=2, activation="Relu")
    y = gb.node("Reshape", [y], shape=[1, 6 * 4 * 4])
    y = gb.gemm(y, 16, activation="Relu")
    y = gb.gemm(y, 10)
    y = gb.node("Softmax", [y], axis=1)
    return gb.build(y), ("RESHAPE", "FULLY_CONNECTED", "SOFTMAX")


def squeeze_excite():
    gb = GraphBuilder(seed=4)
    x = gb.input("x", (1, 3, 10, 10))
    y = gb.conv(x, 8, 3, activation="Relu")
    s = gb.node("GlobalAveragePool", [y])
    s = gb.conv(s, 4, 1, activation="Relu")
    s = gb.conv(s, 8, 1)
    s = gb.node("Sigmoid", [s])
    y = gb.node("Mul", [y, s])  # (1,C,H,W) x (1,C,1,1)
    y = gb.node("HardSwish", [y])
    y = gb.node("Mul", [y, gb.const("chan_scale", np.linspace(0.5, 1.5, 8).reshape(1, 8, 1, 1))])
    y = gb.node("Add", [y, gb.const("chan_bias", np.linspace(-0.2, 0.2, 8).reshape(1, 8, 1, 1))])
    return gb.build(y), ("AVERAGE_POOL_2D", "LOGISTIC", "MUL", "HARD_SWISH", "ADD")


def resize_pad():
    gb = GraphBuilder(seed=5)
    x = gb.input("x", (1, 3, 6, 6))
    y = gb.conv(x, 4, 3, activation="Relu")
    y = gb.node("Resize", [y], mode="nearest", size=[12, 12], coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")
    y = gb.node("Pad", [y], pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="constant", value=0.0)
    y = gb.conv(y, 4, 3, pads=[0, 0, 0, 0])
    y = gb.node("Resize", [y], mode="linear", size=[26, 26], coordinate_transformation_mode="half_pixel")
    y = gb.node("Resize", [y], mode="linear", size=[13, 13], coordinate_transformation_mode="align_corners")
    y = gb.node("Resize", [y], mode="nearest", size=[26, 26], coordinate_transformation_mode="half_pixel",
                nearest_mode="round_prefer_floor")
    y = gb.conv(y, 3, 3, stride=2)
    return gb.build(y), ("RESIZE_NEAREST_NEIGHBOR", "PAD", "RESIZE_BILINEAR")


def keras_transposes():
    """An NHWC input through Transpose(0,3,1,2) into convs, and the mirror at the output."""
    gb = GraphBuilder(seed=6)
    x = gb.input("x", (1, 12, 12, 3))
    y = gb.node("Transpose", [x], perm=[0, 3, 1, 2])
    y = gb.conv(y, 8, 3, activation="Relu")
    y = gb.conv(y, 4, 3, stride=2)
    y = gb.node("Transpose", [y], out="y_nhwc", perm=[0, 2, 3, 1])
    return gb.build(y), ("CONV_2D",)


def genuine_transpose():
    """A model that really swaps H and W: exactly one TRANSPOSE."""
    gb = GraphBuilder(seed=7)
    x = gb.input("x", (1, 3, 8, 6))
    y = gb.conv(x, 4, 3, activation="Relu")
    y = gb.node("Transpose", [y], perm=[0, 1, 3, 2])
    y = gb.conv(y, 4, 3)
    y = gb.node("Softmax", [y], axis=1)
    return gb.build(y), ("TRANSPOSE", "SOFTMAX")


def misc_activations():
    gb = GraphBuilder(seed=8)
    x = gb.input("x", (1, 4, 8, 8))
    y = gb.conv(x, 6, 3)
    t = gb.node("Tanh", [y])
    l = gb.node("LeakyRelu", [y], alpha=0.1)
    y = gb.node("Sub", [l, t])
    y = gb.node("Clip", [y], min=-1.0, max=1.0)
    h = gb.node("HardSigmoid", [gb.conv(y, 6, 1)], alpha=0.2, beta=0.5)
    y = gb.node("Mul", [y, h])
    y = gb.node("Div", [y, gb.const("two", np.array(2.0, np.float32))])
    y = gb.node("Clip", [gb.conv(y, 6, 1)], min=-0.5, max=0.75)
    y = gb.node("Relu", [y])
    y = gb.node("ReduceMean", [y], axes=[2, 3], keepdims=0)
    return gb.build(y), ("TANH", "LEAKY_RELU", "SUB", "MINIMUM", "MAXIMUM", "MEAN")


def pools_and_pads():
    gb = GraphBuilder(seed=9)
    x = gb.input("x", (1, 3, 8, 8))
    y = gb.conv(x, 6, 3, activation="Relu6")
    y = gb.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # PADV2
    y = gb.node("AveragePool", [y], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                count_include_pad=1)  # explicit PAD, the zeros are averaged
    y = gb.node("Pad", [y], pads=[0, 0, 2, 1, 0, 0, 1, 2], mode="reflect")
    y = gb.conv(y, 4, 3, pads=[0, 0, 0, 0])
    z = gb.node("ReduceMean", [y], axes=[2, 3], keepdims=1)
    y = gb.node("Concat", [y, gb.node("Mul", [y, z])], axis=2)  # concat on H
    return gb.build(y), ("PADV2", "MAX_POOL_2D", "PAD", "MIRROR_PAD", "MEAN", "CONCATENATION")


def matmul_attention():
    gb = GraphBuilder(seed=10)
    x = gb.input("x", (1, 4, 6))
    q = gb.node("MatMul", [x, gb.weight("wq", 6, 8)])
    q = gb.node("Relu", [q])
    k = gb.node("Transpose", [q], perm=[0, 2, 1])
    a = gb.node("MatMul", [q, k])
    a = gb.node("Softmax", [a], axis=-1)
    y = gb.node("MatMul", [a, q])
    return gb.build(y), ("BATCH_MATMUL", "SOFTMAX")  # the Transpose becomes adj_y


CONV_MODELS = [conv_stack, depthwise_residual, squeeze_excite, resize_pad, keras_transposes,
               genuine_transpose, misc_activations, pools_and_pads]
FC_MODELS = [flatten_gemm, matmul_attention]


def _samples(g, n=50, seed=0):
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(g.tensors[k].shape).astype(np.float32) for k in g.inputs}
            for _ in range(n)]


@pytest.fixture(scope="module", params=CONV_MODELS + FC_MODELS, ids=lambda f: f.__name__)
def model(request):
    g, ops = request.param()
    samples = _samples(g)
    calibrate(g, samples)
    return request.param.__name__, g, ops, samples


# ---- float --------------------------------------------------------------------------------
def test_float_matches_reference(model):
    name, g, ops, samples = model
    data = to_tflite(g, int8=False)
    names = op_names(data)
    for op in ops:
        assert op in names, f"{name}: expected {op} in {names}"
    plan = build_layout(g)
    for s in samples[:5]:
        ref = run_reference(g, s)
        outs = run_litert(data, [plan.to_stored(k, s[k]) for k in g.inputs])
        for o, got in zip(g.outputs, outs):
            want = ref[o]
            got = plan.from_stored(o, got)
            span = float(want.max() - want.min()) or 1.0
            assert np.abs(got - want).max() <= 1e-4 * span, name


# ---- int8 ---------------------------------------------------------------------------------
def _int8_runs(g, samples, data, kinds=("ref", "tflm")):
    plan = build_layout(g)
    qin = [g.tensors[k].quant for k in g.inputs]
    micro = tflm(data) if "tflm" in kinds else None
    results = []
    for s in samples:
        feeds = [plan.to_stored(k, q.quantize(s[k])) for k, q in zip(g.inputs, qin)]
        row = {}
        for kind in kinds:
            row[kind] = run_tflm(micro, feeds, len(g.outputs)) if kind == "tflm" else \
                run_litert(data, feeds, kind)
        results.append(row)
    return results


def test_int8_tflm_matches_litert_reference(model):
    name, g, _, samples = model
    data = to_tflite(g, int8=True)
    runs = _int8_runs(g, samples, data)
    diffs = [np.abs(r["ref"][i].astype(np.int32) - r["tflm"][i].astype(np.int32))
             for r in runs for i in range(len(g.outputs))]
    worst = max(int(d.max()) for d in diffs)
    equal = float(np.mean(np.concatenate([d.ravel() == 0 for d in diffs])))
    if name in [f.__name__ for f in CONV_MODELS]:
        assert worst == 0, f"{name}: TFLM differs from LiteRT reference by {worst} LSB"
    else:  # FULLY_CONNECTED: TFLM rounds twice, LiteRT reference once
        assert worst <= 1, f"{name}: {worst} LSB"
        print(f"{name}: {equal:.1%} of int8 outputs equal between TFLM and LiteRT reference")


def test_int8_close_to_float(model):
    name, g, _, samples = model
    data = to_tflite(g, int8=True)
    plan = build_layout(g)
    runs = _int8_runs(g, samples[:20], data, kinds=("ref",))
    for s, r in zip(samples[:20], runs):
        ref = run_reference(g, s)
        for i, o in enumerate(g.outputs):
            q = g.tensors[o].quant
            got = q.dequantize(plan.from_stored(o, r["ref"][i]))
            err = np.abs(got - ref[o])
            assert err.max() <= 8 * q.scale[0], f"{name}: max error {err.max() / q.scale[0]:.1f} steps"
            assert err.mean() <= 1.5 * q.scale[0], name


def test_int8_xnnpack_within_one_lsb_per_op(model):
    """XNNPACK runs the int8 file; fed the same int8 inputs, each op differs from the LiteRT
    reference kernel by at most 1 LSB (end to end, such differences compound with depth)."""
    name, g, _, samples = model
    data = to_tflite(g, int8=True)
    plan = build_layout(g)
    checked = 0
    for s in samples[:3]:
        feeds = [plan.to_stored(k, g.tensors[k].quant.quantize(s[k])) for k in g.inputs]
        assert run_litert(data, feeds, "xnnpack")[0].dtype == np.int8
        values = stored_values(data, plan, g, feeds)
        for node in g.nodes:
            if node.name in plan.vanished or any(
                    i not in values for i in node.inputs if i and not g.tensors[i].is_const):
                continue
            sub = single_node_graph(g, node)
            sub_data, sub_plan = to_tflite(sub, int8=True), build_layout(sub)
            sub_feeds = [sub_plan.to_stored(i, values[i]) for i in sub.inputs]
            ref = run_litert(sub_data, sub_feeds, "ref")[0]
            xnn = run_litert(sub_data, sub_feeds, "xnnpack")[0]
            assert np.abs(ref.astype(np.int32) - xnn).max() <= 1, f"{name}: {node.name} ({node.op})"
            checked += 1
    assert checked >= 3 * (len(g.nodes) - 2 * len(plan.vanished))  # nodes beside a vanished Transpose


def test_conv_models_have_no_transpose_but_where_the_model_transposes(model):
    name, g, _, _ = model
    for int8 in (False, True):
        names = op_names(to_tflite(g, int8=int8))
        expected = 1 if name == "genuine_transpose" else 0
        assert names.count("TRANSPOSE") == expected, f"{name}: {names}"


def test_io_float_adds_one_quantize_and_one_dequantize(model):
    name, g, _, samples = model
    plain, wrapped = op_names(to_tflite(g, True)), op_names(to_tflite(g, True, io="float"))
    assert wrapped.count("QUANTIZE") - plain.count("QUANTIZE") == len(g.inputs)
    assert wrapped.count("DEQUANTIZE") - plain.count("DEQUANTIZE") == len(g.outputs)
    it = litert(to_tflite(g, True, io="float"))
    assert all(d["dtype"] == np.float32 for d in it.get_input_details() + it.get_output_details())
    plan = build_layout(g)
    s = samples[0]
    feeds = [plan.to_stored(k, s[k]) for k in g.inputs]
    got = run_litert(to_tflite(g, True, io="float"), feeds)
    mcu = run_tflm(tflm(to_tflite(g, True, io="float")), feeds, len(g.outputs))
    ref = run_reference(g, s)
    for o, y, m in zip(g.outputs, got, mcu):
        step = g.tensors[o].quant.scale[0]
        assert np.abs(plan.from_stored(o, y) - ref[o]).max() <= 8 * step
        assert np.abs(m - y).max() <= 1.01 * step  # TFLM runs QUANTIZE/DEQUANTIZE too


def test_file_names_signature_and_determinism(model):
    _, g, _, _ = model
    data = to_tflite(g, int8=True)
    assert data == to_tflite(g, int8=True)
    assert data[4:8] == b"TFL3"
    it = litert(data, preserve=True)
    sig = it.get_signature_list()["serving_default"]
    assert sig["inputs"] == sorted(g.inputs) and sig["outputs"] == sorted(g.outputs)
    names = {d["name"] for d in it.get_tensor_details()}
    vanished = {t for n in g.nodes if n.name in build_layout(g).vanished for t in n.inputs + n.outputs}
    missing = [t for t in g.activations() if t not in names and t not in vanished]
    assert not missing, missing
    for d in it.get_tensor_details():
        if d["name"] in g.tensors and not g.tensors[d["name"]].is_const:
            q = g.tensors[d["name"]].quant
            assert d["quantization"] == (pytest.approx(q.scale[0]), q.zero_point[0])


# ---- contracts ----------------------------------------------------------------------------
def test_every_ir_op_has_a_writer_or_a_reason():
    missing = [op for op in OPS if op not in WRITERS and op not in NOT_EMITTED]
    assert not missing, f"IR ops without a TFLite writer: {missing}"
    assert not set(WRITERS) & set(NOT_EMITTED)


@pytest.mark.parametrize("op", sorted(NOT_EMITTED))
def test_not_emitted_ops_raise_a_clear_error(op):
    gb = GraphBuilder()
    x = gb.input("x", (1, 2, 4, 4))
    g = gb.build(gb.conv(x, 2, 3))
    g.tensors["z"] = type(g.tensors[x])("z", (1, 2, 4, 4))
    g.nodes.append(type(g.nodes[0])("gone", op, [g.outputs[0]], ["z"], {}))
    g.outputs = ["z"]
    with pytest.raises(UnsupportedOpError, match="gone"):
        to_tflite(g, int8=False)


def test_int8_without_quant_params_raises():
    g, _ = conv_stack()
    with pytest.raises(EdgepackError, match="quantization parameters"):
        to_tflite(g, int8=True)


def test_broken_shared_and_fixed_params_raise():
    g, _ = depthwise_residual()
    calibrate(g, _samples(g, 5))
    pool = next(n for n in g.nodes if n.op == "MaxPool")
    g.tensors[pool.outputs[0]].quant = QuantParams.per_tensor(0.5, 3)
    with pytest.raises(EdgepackError, match="must keep its input's quantization"):
        to_tflite(g, int8=True)
    g, _ = squeeze_excite()
    calibrate(g, _samples(g, 5))
    sig = next(n for n in g.nodes if n.op == "Sigmoid")
    g.tensors[sig.outputs[0]].quant = QuantParams.per_tensor(1 / 255, -128)
    with pytest.raises(EdgepackError, match="TFLite requires"):
        to_tflite(g, int8=True)


def test_bad_io_mode_is_a_config_error():
    g, _ = conv_stack()
    with pytest.raises(ConfigError, match="allowed: int8, float"):
        to_tflite(g, int8=False, io="uint8")


def test_constant_buffers_are_16_byte_aligned_and_buffer_0_is_empty():
    import flatbuffers
    from ai_edge_litert import schema_py_generated as tfl

    g, _ = depthwise_residual()
    calibrate(g, _samples(g, 3))
    data = to_tflite(g, int8=True)
    m = tfl.Model.GetRootAs(data, 0)
    assert m.Version() == 3 and m.Buffers(0).DataLength() == 0
    starts = []
    for i in range(1, m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength():
            vec = flatbuffers.number_types.UOffsetTFlags.py_type(b._tab.Offset(4))
            starts.append(b._tab.Vector(vec))
    assert starts and all(s % 16 == 0 for s in starts)


def test_builtin_codes_above_127_use_the_placeholder():
    b = TfliteBuilder()
    t = b.add_tensor("t", (1, 4), "float32")
    b.add_op(BuiltinOp.GELU, [t], [t])
    b.add_op(BuiltinOp.ADD, [t, t], [t])
    codes = b._opcodes
    assert (codes[0].builtinCode, codes[0].deprecatedBuiltinCode) == (BuiltinOp.GELU, 127)
    assert (codes[1].builtinCode, codes[1].deprecatedBuiltinCode) == (BuiltinOp.ADD, BuiltinOp.ADD)


def test_int8_weights_are_per_channel_on_the_file_axis():
    g, _ = depthwise_residual()
    calibrate(g, _samples(g, 5))
    it = litert(to_tflite(g, int8=True))
    by_name = {d["name"]: d for d in it.get_tensor_details()}
    dw = next(n for n in g.nodes if n.op == "Conv" and n.attrs["group"] > 1)
    pw = next(n for n in g.nodes if n.op == "Conv" and n.attrs["group"] == 1)
    w_dw, w_pw = by_name[dw.inputs[1]], by_name[pw.inputs[1]]
    assert tuple(w_dw["shape"]) == (1, 3, 3, 8)  # 1HWO
    assert w_dw["quantization_parameters"]["quantized_dimension"] == 3
    assert tuple(w_pw["shape"])[0] == 8  # OHWI
    assert w_pw["quantization_parameters"]["quantized_dimension"] == 0
    assert len(w_dw["quantization_parameters"]["scales"]) == 8
    bias = by_name[dw.inputs[2]]
    assert bias["dtype"] == np.int32
    s_in = g.tensors[dw.inputs[0]].quant.scale[0]
    np.testing.assert_allclose(bias["quantization_parameters"]["scales"],
                               s_in * w_dw["quantization_parameters"]["scales"], rtol=1e-6)


# ---- end to end: torch models through the frontend and passes -------------------------------
@pytest.mark.parametrize("zoo_name", ["mobilenet_v3", "resnet", "squeezenet", "decoder"])
def test_zoo_models_export_without_transpose_and_run_on_tflm(zoo_name):
    import torch
    import zoo

    import edgepack
    from edgepack.ir import torch_exec

    model, shape = zoo.build(zoo_name)
    g = edgepack.load(model, input_shape=shape)
    xs = np.random.default_rng(0).standard_normal((16, *shape[1:])).astype(np.float32)
    calibrate(g, [{g.inputs[0]: x[None]} for x in xs],
              run=lambda graph, feeds: torch_exec.run(graph, feeds, keep="all"))
    plan = build_layout(g)
    with torch.no_grad():
        want = model(torch.from_numpy(xs[:4])).numpy()
    f32 = to_tflite(g, int8=False)
    runs = [run_litert(f32, [plan.to_stored(g.inputs[0], x[None])])[0] for x in xs[:4]]
    got = np.concatenate([plan.from_stored(g.outputs[0], r) for r in runs])
    assert np.abs(got - want).max() <= 1e-4 * float(want.max() - want.min())
    i8 = to_tflite(g, int8=True)
    assert "TRANSPOSE" not in op_names(i8)
    qin, qout = g.tensors[g.inputs[0]].quant, g.tensors[g.outputs[0]].quant
    micro = tflm(i8)
    for x, w in zip(xs[:4], want):
        feeds = [plan.to_stored(g.inputs[0], qin.quantize(x[None]))]
        ref, mcu = run_litert(i8, feeds)[0], run_tflm(micro, feeds)[0]
        limit = 1 if "FULLY_CONNECTED" in op_names(i8) else 0
        assert np.abs(ref.astype(np.int32) - mcu).max() <= limit
        err = np.abs(qout.dequantize(plan.from_stored(g.outputs[0], ref))[0] - w)
        assert err.max() <= 6 * qout.scale[0]
