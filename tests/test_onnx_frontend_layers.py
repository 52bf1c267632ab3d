"""ONNX frontend, layers: Conv (pads, auto_pad, depthwise), pools, BatchNorm, Gemm and MatMul forms
round-trip ONNX -> IR -> ONNX with the same numbers on onnxruntime, in the normalised form ir/ops.py
documents (Gemm's W is (out, in), MatMul + Add becomes Gemm with a bias)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from onnx_roundtrip import make_model, only, rand, roundtrip


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
