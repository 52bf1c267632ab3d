"""Float ONNX emitter: fused activations, opset-dependent forms, determinism, checker, names."""
from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgepack import ir
from edgepack.errors import ConfigError
from edgepack.exporter.emit_onnx import EmitContext, to_onnx, write_node


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def conv_gemm_graph(conv_act=None, gemm_act=None) -> ir.Graph:
    """x(1,2,6,6) -> Conv 3x3 pad 1 (4 ch) -> GlobalAveragePool -> Reshape (1,4) -> Gemm (3)."""
    rng = np.random.default_rng(0)
    g = ir.Graph(name="conv_gemm")
    g.add_tensor(ir.Tensor("x", (1, 2, 6, 6)))
    g.add_const("w", rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    g.add_const("b", rng.standard_normal(4).astype(np.float32) * 3)
    g.add_const("fw", rng.standard_normal((3, 4)).astype(np.float32))
    g.add_const("fb", rng.standard_normal(3).astype(np.float32))
    for name, shape in (("c", (1, 4, 6, 6)), ("p", (1, 4, 1, 1)), ("f", (1, 4)), ("y", (1, 3))):
        g.add_tensor(ir.Tensor(name, shape))
    g.nodes = [
        ir.Node("conv", "Conv", ["x", "w", "b"], ["c"], {"strides": [1, 1], "pads": [1, 1, 1, 1],
                "dilations": [1, 1], "group": 1, "activation": conv_act}),
        ir.Node("gap", "GlobalAveragePool", ["c"], ["p"]),
        ir.Node("flat", "Reshape", ["p"], ["f"], {"shape": [1, 4]}),
        ir.Node("fc", "Gemm", ["f", "fw", "fb"], ["y"], {"activation": gemm_act}),
    ]
    g.inputs, g.outputs = ["x"], ["y"]
    ir.verify(g)
    return g


def reference(x: np.ndarray, g: ir.Graph, conv_act, gemm_act) -> np.ndarray:
    """The graph computed in numpy, to check the emitted model against something independent."""
    w, b, fw, fb = (g.tensors[k].data for k in ("w", "b", "fw", "fb"))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    c = np.zeros((1, 4, 6, 6), np.float64)
    for i in range(6):
        for j in range(6):
            c[0, :, i, j] = np.tensordot(w, xp[0, :, i:i + 3, j:j + 3], axes=3)
    c += b[None, :, None, None]
    acts = {None: lambda v: v, "Relu": lambda v: np.maximum(v, 0), "Relu6": lambda v: np.clip(v, 0, 6)}
    c = acts[conv_act](c)
    y = c.mean(axis=(2, 3)) @ fw.T + fb
    return acts[gemm_act](y)


@pytest.mark.parametrize("conv_act, gemm_act", [(None, None), ("Relu", None), ("Relu6", "Relu"),
                                                (None, "Relu6")])
def test_fused_activations_are_written_as_nodes(conv_act, gemm_act):
    g = conv_gemm_graph(conv_act, gemm_act)
    model = to_onnx(g)
    ops = [n.op_type for n in model.graph.node]
    expected = ["Conv"] + {None: [], "Relu": ["Relu"], "Relu6": ["Clip"]}[conv_act]
    expected += ["GlobalAveragePool", "Reshape", "Gemm"] + {None: [], "Relu": ["Relu"], "Relu6": ["Clip"]}[gemm_act]
    assert ops == expected
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6)).astype(np.float32) * 2
    got = run(model, {"x": x})[0]
    want = reference(x.astype(np.float64), g, conv_act, gemm_act)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(np.ptp(want), 1.0))
    # the activation node writes the IR tensor name, so consumers and outputs keep their names
    assert [o.name for o in model.graph.output] == ["y"]
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert producers["c"] == {None: "Conv", "Relu": "Relu", "Relu6": "Clip"}[conv_act]


def test_model_metadata_checker_and_determinism():
    g = conv_gemm_graph("Relu6", "Relu")
    a, b = to_onnx(g), to_onnx(g.copy())
    assert a.SerializeToString() == b.SerializeToString()
    onnx.checker.check_model(a, full_check=True)
    assert a.producer_name == "edgepack" and [(o.domain, o.version) for o in a.opset_import] == [("", 17)]
    names = [t.name for t in a.graph.initializer]
    assert names == sorted(names) and {"w", "b", "fw", "fb"} <= set(names)
    assert [i.name for i in a.graph.input] == ["x"]
    assert [d.dim_value for d in a.graph.input[0].type.tensor_type.shape.dim] == [1, 2, 6, 6]


def unary_graph(op: str, attrs: dict, shape=(2, 3, 4, 5), out_shape=None) -> ir.Graph:
    g = ir.Graph(name=op)
    g.add_tensor(ir.Tensor("x", shape))
    g.add_tensor(ir.Tensor("y", out_shape or shape))
    g.nodes = [ir.Node(op.lower(), op, ["x"], ["y"], attrs)]
    g.inputs, g.outputs = ["x"], ["y"]
    ir.verify(g)
    return g


@pytest.mark.parametrize("opset", [11, 13, 17, 18, 21])
def test_opset_dependent_forms_agree(opset):
    """ReduceMean (axes attr vs input), HardSwish (composite before 14), Clip, Resize, Pad per opset."""
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32) * 4
    cases = [
        (unary_graph("ReduceMean", {"axes": [1, 3], "keepdims": 0}, out_shape=(2, 4)), x.mean(axis=(1, 3))),
        (unary_graph("HardSwish", {}), x * np.clip(x / 6 + 0.5, 0, 1)),
        (unary_graph("Clip", {"min": -math.inf, "max": 1.0}), np.minimum(x, 1.0)),
        (unary_graph("Resize", {"mode": "nearest", "size": [8, 10], "coordinate_transformation_mode":
                                "asymmetric", "nearest_mode": "floor"}, out_shape=(2, 3, 8, 10)),
         x.repeat(2, axis=2).repeat(2, axis=3)),
        (unary_graph("Pad", {"pads": [0, 0, 1, 0, 0, 0, 0, 2], "mode": "constant", "value": 7.0},
                     out_shape=(2, 3, 5, 7)),
         np.pad(x, ((0, 0), (0, 0), (1, 0), (0, 2)), constant_values=7.0)),
    ]
    for g, want in cases:
        model = to_onnx(g, opset=opset)
        assert model.opset_import[0].version == opset
        np.testing.assert_allclose(run(model, {"x": x})[0], want, rtol=0, atol=1e-5 * np.ptp(want))
    ops = [n.op_type for n in to_onnx(cases[1][0], opset=opset).graph.node]
    assert ops == (["HardSwish"] if opset >= 14 else ["HardSigmoid", "Mul"])


def test_softmax_inner_axis_needs_opset13():
    g = unary_graph("Softmax", {"axis": 1})
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5)).astype(np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(run(to_onnx(g, opset=13), {"x": x})[0], e / e.sum(axis=1, keepdims=True),
                               atol=1e-6)
    with pytest.raises(ConfigError, match="opset >= 13"):
        to_onnx(g, opset=11)


@pytest.mark.parametrize("opset", [10, 22])
def test_opset_outside_range(opset):
    with pytest.raises(ConfigError, match=r"opset .* not supported \(allowed: 11, .*21\)"):
        to_onnx(conv_gemm_graph(), opset=opset)


def test_write_node_respects_renamed_inputs():
    """What the QDQ emitter relies on: inputs read through ctx.rename, outputs keep IR names."""
    g = conv_gemm_graph("Relu", None)
    ctx = EmitContext(g, 17, rename={"x": "x/dequantized", "w": "w/dequantized"})
    protos = write_node(ctx, g.nodes[0])
    assert [p.op_type for p in protos] == ["Conv", "Relu"]
    assert list(protos[0].input) == ["x/dequantized", "w/dequantized", "b"]
    assert list(protos[1].output) == ["c"] and protos[0].output[0] == protos[1].input[0] != "c"
