"""ONNX frontend, shape / elementwise / Pad, Resize, ReduceMean ops: each round-trips ONNX -> IR -> ONNX
with the same numbers on onnxruntime, and the IR holds the normalised form ir/ops.py documents (shape
subgraphs folded, constant inputs turned into attributes)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_roundtrip import make_model, only, rand, roundtrip


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


# ---- relu6(x + 3) / 6: Keras's hard_sigmoid and hard_swish as tf2onnx writes them ----------------------
@pytest.mark.parametrize("divide, times_x, scale, want", [
    (False, True, 1 / 6, {"HardSwish": 1}),
    (True, True, 6.0, {"HardSwish": 1}),
    (False, False, 1 / 6, {"HardSigmoid": 1}),
    (False, True, 1 / 5, {"Add": 1, "Clip": 1, "Mul": 2}),  # not the pattern: left as it is
])
def test_hard_sigmoid_and_hard_swish_chains_become_one_node(divide, times_x, scale, want):
    nodes = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
             helper.make_node("Div" if divide else "Mul", ["c", "k"], ["h" if times_x else "y"])]
    if times_x:
        nodes.append(helper.make_node("Mul", ["x", "h"], ["y"]))
    inits = {"three": np.float32(3), "zero": np.float32(0), "six": np.float32(6), "k": np.float32(scale)}
    g = roundtrip(make_model(nodes, {"x": (1, 4, 5, 5)}, ["y"], inits))
    assert g.op_counts() == want
    if "HardSigmoid" in want:
        assert only(g, "HardSigmoid").attrs == {"alpha": pytest.approx(1 / 6), "beta": 0.5}
