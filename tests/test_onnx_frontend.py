"""ONNX frontend: each supported op and normalisation round-trips ONNX -> IR -> ONNX with the same
numbers on onnxruntime, and the IR holds the normalised form ir/ops.py documents."""
from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgepack import ir
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.frontends import load_onnx

RNG_SEED = 0


def make_model(nodes, inputs: dict, outputs, inits: dict | None = None, opset: int = 17,
               functions=()) -> onnx.ModelProto:
    """A checked model; ``outputs`` is a list of names (shapes left for inference)."""
    vis = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v)) for k, v in inputs.items()]
    outs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in outputs]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(nodes, "test", vis, outs, initializer=tensors)
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(f.domain, 1) for f in functions]
    model = helper.make_model(graph, opset_imports=opsets, functions=list(functions),
                              ir_version=helper.find_min_ir_version_for(opsets[:1]))
    model = onnx.shape_inference.infer_shapes(model)  # fills the output types
    onnx.checker.check_model(model)
    return model


def run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def feeds_for(graph: ir.Graph, seed: int = RNG_SEED) -> dict:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(graph.tensors[n].shape).astype(np.float32) for n in graph.inputs}


def roundtrip(model, input_shapes=None, batch_size=1, opset=17) -> ir.Graph:
    """Load, emit, and check the emitted model computes what the original does."""
    graph = load_onnx(model, input_shapes=input_shapes, batch_size=batch_size)
    ir.verify(graph)
    emitted = to_onnx(graph, opset=opset)
    feeds = feeds_for(graph)
    want, got = run(model, feeds), run(emitted, feeds)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert w.shape == g.shape
        tol = 1e-5 * float(np.ptp(w)) + 1e-7
        np.testing.assert_allclose(g, w, rtol=0, atol=tol)
    return graph


def rand(*shape, seed=RNG_SEED, scale=1.0):
    return (np.random.default_rng(seed + len(shape)).standard_normal(shape) * scale).astype(np.float32)


def only(graph: ir.Graph, op: str) -> ir.Node:
    nodes = [n for n in graph.nodes if n.op == op]
    assert len(nodes) == 1, graph.op_counts()
    return nodes[0]


# ---- convolution and pooling ----------------------------------------------------------------
@pytest.mark.parametrize("attrs, pads", [
    ({"pads": [1, 0, 2, 1]}, [1, 0, 2, 1]),
    ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [1, 0, 1, 1]),
    ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, [1, 1, 1, 0]),
    ({"auto_pad": "VALID", "dilations": [2, 2]}, [0, 0, 0, 0]),
    ({"auto_pad": "SAME_UPPER", "kernel_shape": [3, 3]}, [1, 1, 1, 1]),
])
def test_conv_pads(attrs, pads):
    m = make_model([helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], {"x": (1, 3, 9, 8)}, ["y"],
                   {"w": rand(4, 3, 3, 3), "b": rand(4)})
    g = roundtrip(m)
    assert only(g, "Conv").attrs["pads"] == pads


def test_depthwise_conv_without_bias():
    m = make_model([helper.make_node("Conv", ["x", "w"], ["y"], group=4, strides=[2, 1], pads=[1, 1, 1, 1])],
                   {"x": (1, 4, 7, 7)}, ["y"], {"w": rand(4, 1, 3, 3)})
    g = roundtrip(m)
    conv = only(g, "Conv")
    assert conv.attrs["group"] == 4 and conv.attrs["strides"] == [2, 1] and len(conv.inputs) == 2


@pytest.mark.parametrize("op, attrs", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
])
def test_pools(op, attrs):
    m = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (1, 2, 7, 7)}, ["y"])
    g = roundtrip(m)
    assert set(only(g, op).attrs) == {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad"}


def test_global_average_pool_and_batchnorm():
    c = 3
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "bb", "mu", "var"], ["n"], epsilon=1e-3),
             helper.make_node("GlobalAveragePool", ["n"], ["y"])]
    m = make_model(nodes, {"x": (2, c, 5, 5)}, ["y"],
                   {"s": rand(c), "bb": rand(c, seed=1), "mu": rand(c, seed=2),
                    "var": np.abs(rand(c, seed=3)) + 0.5})
    g = roundtrip(m)
    assert g.op_counts() == {"BatchNormalization": 1, "GlobalAveragePool": 1}
    assert only(g, "BatchNormalization").attrs["epsilon"] == pytest.approx(1e-3)


# ---- fully connected -----------------------------------------------------------------------
@pytest.mark.parametrize("attrs, bias", [
    ({"transB": 1}, (5,)),
    ({}, (5,)),
    ({"alpha": 0.5, "beta": 2.0, "transB": 1}, (1, 5)),
    ({"transA": 1}, ()),
    ({"beta": 0.0}, (5,)),
    ({}, (3, 5)),
    ({}, None),
])
def test_gemm_forms(attrs, bias):
    b_shape = (5, 4) if attrs.get("transB") else (4, 5)
    a_shape = (4, 3) if attrs.get("transA") else (3, 4)
    inits = {"B": rand(*b_shape)}
    inputs = ["a", "B"]
    if bias is not None:
        inits["C"] = rand(*bias, seed=7) if bias else np.float32(0.3)
        inputs.append("C")
    m = make_model([helper.make_node("Gemm", inputs, ["y"], **attrs)], {"a": a_shape}, ["y"], inits)
    g = roundtrip(m)
    gemm = only(g, "Gemm")
    assert g.tensors[gemm.inputs[1]].shape == (5, 4)  # W is (out, in)


def test_matmul_add_becomes_gemm_with_bias():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])]
    m = make_model(nodes, {"x": ("N", 6)}, ["y"], {"W": rand(6, 4), "b": rand(4, seed=3)})
    g = roundtrip(m, batch_size=3)
    assert g.op_counts() == {"Gemm": 1}
    gemm = g.nodes[0]
    assert gemm.outputs == ["y"] and len(gemm.inputs) == 3
    np.testing.assert_array_equal(g.tensors[gemm.inputs[1]].data, rand(6, 4).T)


def test_matmul_of_3d_activation_by_constant():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])]
    m = make_model(nodes, {"x": (2, 3, 6)}, ["y"], {"W": rand(6, 4), "b": rand(1, 1, 4, seed=3)})
    g = roundtrip(m)
    assert g.op_counts() == {"Gemm": 1, "Reshape": 2}
    assert len(only(g, "Gemm").inputs) == 3


def test_matmul_of_two_activations_stays_matmul():
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "xt"], ["y"])]
    m = make_model(nodes, {"x": (1, 3, 4)}, ["y"])
    g = roundtrip(m)
    assert g.op_counts() == {"MatMul": 1, "Transpose": 1}
    assert only(g, "Transpose").attrs["perm"] == [0, 2, 1]


# ---- shape ops -----------------------------------------------------------------------------
@pytest.mark.parametrize("axis, shape", [(1, [2, 60]), (2, [6, 20]), (0, [1, 120])])
def test_flatten_becomes_reshape(axis, shape):
    m = make_model([helper.make_node("Flatten", ["x"], ["y"], axis=axis)], {"x": ("N", 3, 4, 5)}, ["y"])
    g = roundtrip(m, batch_size=2)
    assert only(g, "Reshape").attrs == {"shape": shape}


@pytest.mark.parametrize("opset", [11, 13])
def test_squeeze_unsqueeze_become_reshape(opset):
    if opset >= 13:
        nodes = [helper.make_node("Squeeze", ["x", "ax"], ["s"]),
                 helper.make_node("Unsqueeze", ["s", "ax2"], ["y"])]
        inits = {"ax": np.array([2, 3], np.int64), "ax2": np.array([0], np.int64)}
    else:
        nodes = [helper.make_node("Squeeze", ["x"], ["s"], axes=[2, 3]),
                 helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0])]
        inits = {}
    m = make_model(nodes, {"x": (2, 3, 1, 1)}, ["y"], inits, opset=opset)
    g = roundtrip(m)
    assert [n.attrs["shape"] for n in g.nodes] == [[2, 3], [1, 2, 3]]
    assert "ax" not in g.tensors  # shape constants end up in attributes


def test_shape_subgraph_feeding_reshape_is_folded():
    """The Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain exporters write for x.view(N, -1)."""
    i64 = lambda *v: numpy_helper.from_array(np.array(v, np.int64))  # noqa: E731
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Shape", ["r"], ["s"]),
             helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Constant", [], ["ax"], value=i64(0)),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             helper.make_node("Constant", [], ["minus1"], value=i64(-1)),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Cast", ["shape"], ["shape64"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["r", "shape64"], ["y"])]
    m = make_model(nodes, {"x": ("batch", 2, 3, 4)}, ["y"], {"unused": rand(3)})
    g = roundtrip(m, batch_size=3)
    assert g.op_counts() == {"Relu": 1, "Reshape": 1}
    assert only(g, "Reshape").attrs["shape"] == [3, 24]
    assert "unused" not in g.tensors and g.tensors["y"].shape == (3, 24)


def test_reshape_with_zero_and_minus_one_is_resolved():
    m = make_model([helper.make_node("Reshape", ["x", "s"], ["y"])], {"x": (2, 3, 4)}, ["y"],
                   {"s": np.array([0, -1], np.int64)})
    assert only(roundtrip(m), "Reshape").attrs["shape"] == [2, 12]


def test_concat_transpose_with_constant_operand():
    nodes = [helper.make_node("Concat", ["x", "k"], ["c"], axis=-1),
             helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1])]
    m = make_model(nodes, {"x": (1, 2, 3, 4)}, ["y"], {"k": rand(1, 2, 3, 2)})
    g = roundtrip(m)
    assert only(g, "Concat").attrs["axis"] == 3 and g.tensors["k"].is_const


# ---- elementwise, activations ----------------------------------------------------------------
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_ops_keep_constant_operands(op):
    nodes = [helper.make_node(op, ["x", "k"], ["a"]), helper.make_node(op, ["k2", "a"], ["b"]),
             helper.make_node(op, ["a", "b"], ["y"])]
    m = make_model(nodes, {"x": (1, 3, 2, 2)}, ["y"],
                   {"k": rand(3, 1, 1) + 3.0, "k2": np.array(2.5, np.float32)})
    g = roundtrip(m)
    assert g.op_counts() == {op: 3}
    assert g.tensors["k"].is_const and g.tensors["k2"].is_const


@pytest.mark.parametrize("op, attrs", [
    ("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("LeakyRelu", {}), ("Sigmoid", {}), ("Tanh", {}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}), ("Identity", {}),
    ("Softmax", {"axis": 1}), ("Softmax", {}),
])
def test_unary_ops(op, attrs):
    m = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (2, 3, 4)}, ["y"])
    g = roundtrip(m)
    assert [n.op for n in g.nodes] == [op]
    if op == "LeakyRelu":
        assert g.nodes[0].attrs["alpha"] == pytest.approx(attrs.get("alpha", 0.01))
    if op == "Softmax":
        assert g.nodes[0].attrs["axis"] == attrs.get("axis", -1) % 3


def test_softmax_opset11_last_axis_and_trailing_ones():
    nodes = [helper.make_node("Softmax", ["x"], ["a"], axis=-1), helper.make_node("Softmax", ["x2"], ["b"])]
    m = make_model(nodes, {"x": (2, 5), "x2": (2, 6, 1, 1)}, ["a", "b"], opset=11)
    g = roundtrip(m)
    assert [n.attrs["axis"] for n in g.nodes] == [1, 1]


def test_dropout_keeps_only_first_output():
    nodes = [helper.make_node("Dropout", ["x", "ratio"], ["d", "mask"]), helper.make_node("Relu", ["d"], ["y"])]
    m = make_model(nodes, {"x": (2, 3)}, ["y"], {"ratio": np.array(0.3, np.float32)})
    g = roundtrip(m)
    drop = only(g, "Dropout")
    assert drop.outputs == ["d"] and drop.inputs == ["x"] and "mask" not in g.tensors


@pytest.mark.parametrize("lo, hi", [(0.0, 6.0), (None, 0.5), (-0.5, None), (None, None)])
def test_clip_inputs_become_attrs(lo, hi):
    inits, inputs = {}, ["x"]
    for name, value in (("lo", lo), ("hi", hi)):
        if value is None:
            inputs.append("")
        else:
            inits[name] = np.array(value, np.float32)
            inputs.append(name)
    m = make_model([helper.make_node("Clip", inputs, ["y"])], {"x": (2, 8)}, ["y"], inits)
    attrs = only(roundtrip(m), "Clip").attrs
    assert attrs == {"min": -math.inf if lo is None else lo, "max": math.inf if hi is None else hi}


# ---- Pad, Resize, ReduceMean ---------------------------------------------------------------
@pytest.mark.parametrize("mode, value", [("constant", 1.5), ("constant", None), ("reflect", None),
                                         ("edge", None)])
def test_pad(mode, value):
    pads = np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)
    inits = {"pads": pads}
    inputs = ["x", "pads"]
    if value is not None:
        inits["v"] = np.array(value, np.float32)
        inputs.append("v")
    m = make_model([helper.make_node("Pad", inputs, ["y"], mode=mode)], {"x": (1, 2, 4, 4)}, ["y"], inits)
    attrs = only(roundtrip(m), "Pad").attrs
    assert attrs == {"pads": pads.tolist(), "mode": mode, "value": value or 0.0}


def test_pad_opset18_axes_input():
    inits = {"pads": np.array([1, 2, 3, 0], np.int64), "axes": np.array([2, -1], np.int64)}
    m = make_model([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"])], {"x": (1, 2, 4, 4)}, ["y"],
                   inits, opset=18)
    assert only(roundtrip(m), "Pad").attrs["pads"] == [0, 0, 1, 2, 0, 0, 3, 0]


@pytest.mark.parametrize("opset, mode, ctm, use_sizes", [
    (13, "nearest", "asymmetric", False),
    (13, "nearest", "half_pixel", True),
    (13, "linear", "half_pixel", False),
    (13, "linear", "align_corners", True),
    (18, "linear", "pytorch_half_pixel", False),
    (11, "nearest", "asymmetric", False),
])
def test_resize(opset, mode, ctm, use_sizes):
    if use_sizes:
        inputs, inits = ["x", "", "", "sizes"], {"sizes": np.array([1, 2, 6, 10], np.int64)}
    else:
        inputs, inits = ["x", "", "scales"], {"scales": np.array([1, 1, 2, 2], np.float32)}
    if opset < 13:  # roi is required before opset 13
        inputs[1] = "roi"
        inits["roi"] = np.zeros(0, np.float32)
    node = helper.make_node("Resize", inputs, ["y"], mode=mode, coordinate_transformation_mode=ctm,
                            nearest_mode="floor")
    m = make_model([node], {"x": (1, 2, 3, 5)}, ["y"], inits, opset=opset)
    attrs = only(roundtrip(m, opset=opset), "Resize").attrs
    assert attrs["size"] == [6, 10] and attrs["mode"] == mode
    assert attrs["coordinate_transformation_mode"] == ctm and attrs["nearest_mode"] == "floor"


@pytest.mark.parametrize("opset, keepdims", [(13, 1), (13, 0), (18, 1), (18, 0)])
def test_reduce_mean_axes_attr_and_input(opset, keepdims):
    if opset >= 18:
        node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keepdims)
        inits = {"axes": np.array([-1, 1], np.int64)}
    else:
        node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1, 1], keepdims=keepdims)
        inits = {}
    m = make_model([node], {"x": (2, 3, 4, 5)}, ["y"], inits, opset=opset)
    attrs = only(roundtrip(m, opset=opset), "ReduceMean").attrs
    assert attrs == {"axes": [1, 3], "keepdims": keepdims}


@pytest.mark.parametrize("keepdims", [1, 0])
def test_spatial_reduce_mean_becomes_global_average_pool(keepdims):
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1, 2], keepdims=keepdims)
    m = make_model([node], {"x": (2, 3, 4, 5)}, ["y"], {}, opset=13)
    graph = roundtrip(m, opset=13)
    assert graph.op_counts() == ({"GlobalAveragePool": 1} if keepdims else
                                 {"GlobalAveragePool": 1, "Reshape": 1})


# ---- whole-model behaviour -----------------------------------------------------------------
def test_names_are_kept_and_generated():
    nodes = [helper.make_node("Relu", ["x"], ["act"]), helper.make_node("Sigmoid", ["act"], ["out"], name="dup"),
             helper.make_node("Tanh", ["out"], ["out2"], name="dup")]
    m = make_model(nodes, {"x": (1, 4)}, ["out2"])
    g = load_onnx(m)
    assert [n.name for n in g.nodes] == ["Relu_0", "dup", "dup_1"]
    assert g.inputs == ["x"] and g.outputs == ["out2"] and set(g.tensors) == {"x", "act", "out", "out2"}


def test_local_functions_are_inlined():
    fn = helper.make_function("local", "Swishish", ["a"], ["b"],
                              [helper.make_node("Sigmoid", ["a"], ["s"]), helper.make_node("Mul", ["a", "s"], ["b"])],
                              [helper.make_opsetid("", 17)])
    m = make_model([helper.make_node("Swishish", ["x"], ["y"], domain="local")], {"x": (2, 3)}, ["y"],
                   functions=[fn])
    g = roundtrip(m)
    assert g.op_counts() == {"Mul": 1, "Sigmoid": 1}


def test_input_shapes_fill_dynamic_dims():
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": ("N", 3, "H", "W")}, ["y"])
    g = roundtrip(m, input_shapes={"x": (2, 3, 5, 7)})
    assert g.tensors["y"].shape == (2, 3, 5, 7)


def test_path_and_bytes_inputs(tmp_path):
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (1, 3)}, ["y"])
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    for src in (path, str(path), m.SerializeToString()):
        assert load_onnx(src).op_counts() == {"Relu": 1}


# ---- real exporter output --------------------------------------------------------------------
@pytest.mark.parametrize("dynamo, opset", [(True, 18), (False, 13)])
def test_torch_cnn_export_round_trip(tmp_path, dynamo, opset):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.Hardswish(),
                nn.MaxPool2d(2), nn.Conv2d(8, 12, 1), nn.LeakyReLU(0.1))
            self.head = nn.Linear(12 * 2 * 2, 10)

        def forward(self, x):
            y = self.features(x)
            y = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
            y = nn.functional.avg_pool2d(y, 2)
            return torch.softmax(self.head(y.flatten(1)), dim=-1)

    torch.manual_seed(0)
    model = SmallCNN().eval()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), str(path), dynamo=dynamo, opset_version=opset,
                      input_names=["image"], output_names=["probs"],
                      dynamic_axes={"image": {0: "batch"}, "probs": {0: "batch"}})
    g = roundtrip(onnx.load(str(path)), batch_size=2)
    assert g.inputs == ["image"] and g.outputs == ["probs"] and g.tensors["probs"].shape == (2, 10)
    counts = g.op_counts()
    assert counts["Conv"] == 3 and counts["Gemm"] == 1 and counts["Softmax"] == 1
    assert not {"Shape", "Gather", "Constant"} & set(counts)
    with torch.no_grad():
        x = torch.randn(2, 1, 8, 8)
        want = model(x).numpy()
    got = run(to_onnx(g), {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
