"""Transformer ops: GELU (the erf pattern torch writes and opset 20's Gelu), LayerNormalization (lowered to
primitives before emission), attention's MatMul of two activations in int8 on LiteRT and TFLite Micro."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from onnx import TensorProto, helper

import edgepack
from int8_everywhere import int8_outputs
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.errors import ConfigError, UnsupportedOpError
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.frontends.onnx import load_onnx
from edgepack.frontends.torch import load_torch
from edgepack.ir import torch_exec
from edgepack.targets.io_mapping import quantize_input
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import TFLM, LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite

SHAPE = (1, 6, 8)


def _xs(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE[1:])).astype(np.float32)


class MlpGelu(nn.Module):
    def __init__(self, approximate="none"):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(8, 16), nn.GELU(approximate=approximate), nn.Linear(16, 8)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_torch_gelu_becomes_one_gelu_node(exporter):
    torch.manual_seed(0)
    model = MlpGelu().eval()
    graph = load_torch(model, input_shape=SHAPE, exporter=exporter)
    ops = graph.op_counts()
    assert ops.get("Gelu") == 1 and not {"Div", "Mul", "Add"} & set(ops)
    x = _xs(1)
    want = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(OnnxRuntime(to_onnx(graph).SerializeToString()).run(x)[0], want, atol=1e-5)


def _onnx_gelu(approximate: str, opset=20):
    node = helper.make_node("Gelu", ["x"], ["y"], approximate=approximate, name="g")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 9])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_forms_agree_on_every_writer(approximate):
    proto = _onnx_gelu(approximate)
    graph = load_onnx(proto)
    assert graph.nodes[0].attrs == {"approximate": approximate}
    x = np.linspace(-5, 5, 36, dtype=np.float32).reshape(1, 4, 9)
    want = OnnxRuntime(proto.SerializeToString()).run(x)[0]
    np.testing.assert_allclose(torch_exec.run(graph, [x])["y"], want, atol=1e-6)
    for opset in (17, 20):  # the erf / tanh formula before opset 20, the Gelu node from 20 on
        written = to_onnx(graph, opset=opset)
        assert ("Gelu" in {n.op_type for n in written.graph.node}) == (opset == 20)
        np.testing.assert_allclose(OnnxRuntime(written.SerializeToString()).run(x)[0], want, atol=1e-6)
    model = to_tflite(graph, int8=False)
    assert read_tflite(model).op_counts() == {"GELU": 1}
    np.testing.assert_allclose(LiteRT(model, reference=True).run(x)[0], want, atol=1e-5)


@pytest.mark.parametrize("op", ["Erf"])  # a lone Sqrt is an op of its own now (test_elementwise_ops)
def test_erf_outside_its_pattern_is_named(op):
    node = helper.make_node(op, ["x"], ["y"], name="lonely")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(UnsupportedOpError, match=f"unsupported op '{op}' at node 'lonely'"):
        load_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


class Attention(nn.Module):
    """LayerNorm, one attention head, residual, LayerNorm without affine, classifier: no GELU, so TFLM runs it."""

    def __init__(self, d=8):
        super().__init__()
        self.ln, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d, elementwise_affine=False)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.fc = nn.Linear(d, 5)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = self.ln(x)
        att = torch.softmax(self.q(h) @ self.k(h).transpose(1, 2) * 0.35, dim=-1)
        return self.fc(self.ln2(x + att @ self.v(h)).mean(1))


def _attention():
    torch.manual_seed(1)
    model = Attention().eval()
    return model, edgepack.load(model, input_shape=SHAPE)


def test_layernorm_is_lowered_by_the_passes_and_computes_the_same():
    model, graph = _attention()
    raw = edgepack.load(model, input_shape=SHAPE, optimize=False)
    assert raw.op_counts()["LayerNormalization"] == 2
    ops = graph.op_counts()
    assert "LayerNormalization" not in ops and ops["Rsqrt"] == 2
    # mean, variance per norm, plus the mean over tokens; the norm without affine has no scale Mul / bias Add
    assert ops["ReduceMean"] == 2 * 2 + 1 and ops["Sub"] == 2
    x = _xs(1)
    want = model(torch.from_numpy(x)).detach().numpy()
    for g in (raw, graph):
        np.testing.assert_allclose(torch_exec.run(g, [x])[g.outputs[0]], want, atol=1e-5)
    np.testing.assert_allclose(OnnxRuntime(to_onnx(raw).SerializeToString()).run(x)[0], want, atol=1e-5)
    # edgepack's own float .onnx of the lowered graph (1/sqrt written as Sqrt + Reciprocal) loads back as
    # the two LayerNormalizations (the decomposed-LayerNorm pattern)
    lowered = load_onnx(to_onnx(graph))
    assert lowered.op_counts()["LayerNormalization"] == 2 and "Sqrt" not in lowered.op_counts()
    np.testing.assert_allclose(torch_exec.run(lowered, [x])[lowered.outputs[0]], want, atol=1e-5)
    with pytest.raises(ConfigError, match="LayerNormalization .* needs ONNX opset >= 17"):
        to_onnx(raw, opset=16)
    with pytest.raises(UnsupportedOpError, match="LayerNormalization.*decompose_layernorm"):
        to_tflite(raw, int8=False)


def test_int8_attention_runs_on_tflm_like_litert_and_close_to_float():
    model, graph = _attention()
    qgraph, _ = calibrate_graph(graph, load_samples(_xs(64, 1), SHAPE), "minmax")
    data = to_tflite(qgraph, int8=True)
    info = read_tflite(data)
    ops = info.op_counts()
    assert ops["BATCH_MATMUL"] == 2 and ops["RSQRT"] == 2 and "TRANSPOSE" not in ops  # k^T: adj_y
    xs = _xs(40, 2)
    want = model(torch.from_numpy(xs)).detach().numpy()
    got, got_onnx = int8_outputs(qgraph, xs)  # and TFLM within 1 LSB of LiteRT's reference
    assert sqnr_db(want, got) > 25 and sqnr_db(want, got_onnx) > 25
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9


class SelfAttention(nn.Module):
    """LayerNorm then attention of the normalised tokens with themselves: no FULLY_CONNECTED."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(8)
        with torch.no_grad():
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = self.ln(x)
        return torch.softmax(h @ h.transpose(1, 2) * 0.3, dim=-1) @ h


def test_layernorm_softmax_and_batch_matmul_are_bit_exact_on_tflm():
    torch.manual_seed(0)
    graph = edgepack.load(SelfAttention().eval(), input_shape=SHAPE)
    qgraph, _ = calibrate_graph(graph, load_samples(_xs(32, 3), SHAPE), "minmax")
    data = to_tflite(qgraph, int8=True)
    info = read_tflite(data)
    assert {"MEAN", "RSQRT", "BATCH_MATMUL", "SOFTMAX"} <= set(info.op_counts())
    tin = info.tensors[info.inputs[0]]
    ref, micro = LiteRT(data, reference=True), TFLM(data)
    for x in _xs(16, 4):
        q = quantize_input(x[None], np.int8, tin.scale[0], tin.zero_point[0])
        np.testing.assert_array_equal(ref.run(q)[0], micro.run(q)[0])
