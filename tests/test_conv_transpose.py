"""ConvTranspose end to end: ONNX attributes -> IR pads, torch_exec, the ONNX writer, TFLite TRANSPOSE_CONV
(OHWI weights, per-output-channel scales, int32 bias) on LiteRT and TFLite Micro."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import edgepack
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.errors import UnsupportedOpError
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.frontends.onnx import load_onnx
from edgepack.ir import torch_exec
from edgepack.targets.io_mapping import from_file_layout, quantize_input, to_file_layout
from edgepack.targets.runtimes import TFLM, LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite


class Up(torch.nn.Module):
    def __init__(self, k, s, p, op):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 6, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(6, 4, k, s, p, output_padding=op)

    def forward(self, x):
        return self.up(torch.relu(self.conv(x)))


VARIANTS = {"k2s2": (2, 2, 0, 0), "k4s2p1": (4, 2, 1, 0), "k3s2p1op1": (3, 2, 1, 1), "k3s1p1": (3, 1, 1, 0),
            "k3s2": (3, 2, 0, 0)}


def _model(variant):
    torch.manual_seed(0)
    return Up(*VARIANTS[variant]).eval()


def _xs(n=6, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 2, 5, 5)).astype(np.float32)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_float_matches_torch_on_torch_exec_onnxruntime_and_litert(variant):
    model = _model(variant)
    graph = edgepack.load(model, input_shape=(1, 2, 5, 5))
    assert graph.op_counts()["ConvTranspose"] == 1
    lite = LiteRT(to_tflite(graph, int8=False), reference=True)
    ort_ = OnnxRuntime(to_onnx(graph).SerializeToString())
    for x in _xs(3):
        want = model(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(torch_exec.run(graph, [x])[graph.outputs[0]], want, atol=1e-5)
        np.testing.assert_allclose(ort_.run(x)[0], want, atol=1e-5)
        got = lite.run(to_file_layout(x, lite.inputs[0]["shape"]))[0]
        np.testing.assert_allclose(from_file_layout(got, want.shape), want, atol=1e-5)


def test_crops_tflite_cannot_express_become_a_slice_and_the_others_do_not():
    ops = {v: read_tflite(to_tflite(edgepack.load(_model(v), input_shape=(1, 2, 5, 5)), int8=False)).op_counts()
           for v in VARIANTS}
    assert ops["k3s2p1op1"].get("SLICE") == 1  # PyTorch crops top/left 1, TFLite's SAME would crop 0
    assert all("SLICE" not in c for v, c in ops.items() if v != "k3s2p1op1")
    assert all(c["TRANSPOSE_CONV"] == 1 and "TRANSPOSE" not in c for c in ops.values())


@pytest.mark.parametrize("variant", ["k2s2", "k4s2p1", "k3s2p1op1"])
def test_int8_per_channel_weights_and_bias_run_bit_exact_on_tflm(variant):
    graph = edgepack.load(_model(variant), input_shape=(1, 2, 5, 5))
    qgraph, _ = calibrate_graph(graph, load_samples(_xs(32, 1)[:, 0], (1, 2, 5, 5)), "minmax")
    up = next(n for n in qgraph.nodes if n.op == "ConvTranspose")
    wq, bq = qgraph.tensors[up.inputs[1]].quant, qgraph.tensors[up.inputs[2]].quant
    assert wq.axis == 1 and len(wq.scale) == 4  # IR weights (Cin, Cout, kh, kw): one scale per output channel
    in_scale = qgraph.tensors[up.inputs[0]].quant.scale[0]
    np.testing.assert_allclose(bq.scale, np.asarray(wq.scale) * in_scale, rtol=1e-6)
    model = to_tflite(qgraph, int8=True)
    info = read_tflite(model)
    w = info.tensor(up.inputs[1])
    assert w.shape == (4, *qgraph.tensors[up.inputs[1]].shape[2:], 6)  # OHWI
    assert w.quantized_dimension == 0 and np.allclose(w.scale, wq.scale)
    op = next(o for o in info.ops if o.op == "TRANSPOSE_CONV")
    assert op.version == 3 and len(op.inputs) == 4  # with its bias
    tin = info.tensors[info.inputs[0]]
    ref, micro = LiteRT(model, reference=True), TFLM(model)
    for x in _xs(8, 2):
        q = quantize_input(to_file_layout(x, tin.shape), np.int8, tin.scale[0], tin.zero_point[0])
        np.testing.assert_array_equal(ref.run(q)[0], micro.run(q)[0])


def _onnx_deconv(attrs, out_hw, group=1, cin=3):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((cin, 6 // group, 3, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], group=group, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, *out_hw])],
                              [numpy_helper.from_array(w, "w"),
                               numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("attrs, out_hw, pads", [
    (dict(strides=[2, 2], auto_pad="SAME_UPPER"), (10, 10), [0, 0, 1, 1]),
    (dict(strides=[2, 2], auto_pad="SAME_LOWER"), (10, 10), [1, 1, 0, 0]),
    (dict(strides=[2, 2], output_shape=[9, 10]), (9, 10), [1, 1, 1, 0]),
    (dict(strides=[2, 1], pads=[1, 0, 0, 2], output_padding=[1, 0]), (11, 5), [1, 0, 0, 2]),
])
def test_onnx_attributes_become_normalised_pads(attrs, out_hw, pads):
    proto = _onnx_deconv(attrs, out_hw)
    graph = load_onnx(proto)
    node = graph.nodes[0]
    assert node.op == "ConvTranspose" and node.attrs["pads"] == pads
    x = np.random.default_rng(4).standard_normal((1, 3, 5, 5)).astype(np.float32)
    want = OnnxRuntime(proto.SerializeToString()).run(x)[0]
    np.testing.assert_allclose(torch_exec.run(graph, [x])["y"], want, atol=1e-5)
    np.testing.assert_allclose(OnnxRuntime(to_onnx(graph).SerializeToString()).run(x)[0], want, atol=1e-5)
    lite = LiteRT(to_tflite(graph, int8=False), reference=True)
    got = from_file_layout(lite.run(to_file_layout(x, lite.inputs[0]["shape"]))[0], want.shape)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("attrs, group, what", [(dict(dilations=[2, 2]), 1, "dilations"), ({}, 2, "group=2")])
def test_what_tflite_lacks_is_one_clear_error(attrs, group, what):
    out = (9, 9) if "dilations" in attrs else (7, 7)
    proto = _onnx_deconv(attrs, out, group=group, cin=4)
    onnx.checker.check_model(proto)
    graph = load_onnx(proto)
    x = np.random.default_rng(5).standard_normal((1, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(torch_exec.run(graph, [x])["y"], OnnxRuntime(proto.SerializeToString()).run(x)[0],
                               atol=1e-5)  # the IR and torch_exec still handle it
    with pytest.raises(UnsupportedOpError, match=rf"unsupported op 'ConvTranspose\(.*{what}.*\)' at node"):
        to_tflite(graph, int8=False)
