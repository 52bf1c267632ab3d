"""The TFLite layout plan: NHWC activations, vanishing Transposes, flatten-to-Gemm without a
TRANSPOSE, axis remapping and the padding/resize geometry choices."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from tflite_helpers import GraphBuilder, op_names, run_litert, run_reference

from edgepack.errors import UnsupportedOpError
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.exporter.layout import (NHWC, build_layout, file_transpose_perm, identity, inverse,
                                      padding_plan, plan_layout, resize_flags, same_bytes,
                                      stored_axis)
from edgepack.ir import Node


def _conv_head():
    gb = GraphBuilder()
    x = gb.input("x", (1, 3, 8, 8))
    y = gb.conv(x, 4, 3, stride=2)
    f = gb.node("Reshape", [y], out="flat", shape=[1, 4 * 4 * 4])
    return gb.build(gb.gemm(f, 5)), y


def test_rank4_activations_are_nhwc_and_the_plan_is_plain_data():
    g, conv_out = _conv_head()
    perms = plan_layout(g)
    assert perms["x"] == NHWC and perms[conv_out] == NHWC
    assert perms["flat"] == (0, 1) and perms[g.outputs[0]] == (0, 1)
    assert all(isinstance(p, tuple) and all(isinstance(i, int) for i in p) for p in perms.values())


def test_flatten_to_gemm_is_stored_as_the_nhwc_flattening():
    g, conv_out = _conv_head()
    plan = build_layout(g)
    assert plan.flattened["flat"] == ((1, 4, 4, 4), NHWC)
    ir = np.arange(64, dtype=np.float32).reshape(1, 64)
    stored = plan.to_stored("flat", ir)
    np.testing.assert_array_equal(stored, ir.reshape(1, 4, 4, 4).transpose(0, 2, 3, 1).reshape(1, 64))
    np.testing.assert_array_equal(plan.from_stored("flat", stored), ir)
    assert "TRANSPOSE" not in op_names(to_tflite(g, int8=False))


def test_reshape_that_mixes_channels_and_space_costs_one_transpose():
    gb = GraphBuilder()
    x = gb.input("x", (1, 4, 3, 3))
    y = gb.conv(x, 4, 3)
    r = gb.node("Reshape", [y], shape=[1, 4, 9])  # not read by a Gemm: the NCHW order is needed somewhere
    g = gb.build(gb.node("Relu", [r]))
    plan = build_layout(g)
    # The reshape keeps the NHWC bytes ((1, 9, 4) stored); the rank-3 output goes back to the IR order.
    assert r not in plan.flattened and plan.perms[r] == (0, 2, 1)
    data = to_tflite(g, int8=False)
    assert op_names(data).count("TRANSPOSE") == 1  # the one the reshape semantics require
    xs = np.random.default_rng(0).standard_normal((1, 4, 3, 3)).astype(np.float32)
    got = run_litert(data, [plan.to_stored("x", xs)])[0]
    np.testing.assert_allclose(got, run_reference(g, {"x": xs})[g.outputs[0]], atol=1e-5)


def test_keras_style_transposes_vanish_and_io_keeps_nhwc():
    gb = GraphBuilder()
    x = gb.input("x", (1, 8, 8, 3))
    t = gb.node("Transpose", [x], perm=[0, 3, 1, 2])
    y = gb.conv(t, 4, 3)
    g = gb.build(gb.node("Transpose", [y], out="out", perm=[0, 2, 3, 1]))
    plan = build_layout(g)
    assert plan.perms["x"] == (0, 1, 2, 3) and plan.perms["out"] == (0, 1, 2, 3)
    assert plan.vanished == {g.nodes[0].name, g.nodes[2].name}
    assert op_names(to_tflite(g, int8=False)) == ["CONV_2D"]


@pytest.mark.parametrize("ir_perm", list(itertools.permutations(range(4)))[::5])
def test_file_transpose_perm_implements_the_ir_transpose(ir_perm):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5))
    y = x.transpose(ir_perm)
    for p_in, p_out in [(NHWC, NHWC), (identity(4), NHWC), (NHWC, (0, 3, 1, 2))]:
        q = file_transpose_perm(p_in, ir_perm, p_out)
        np.testing.assert_array_equal(x.transpose(p_in).transpose(q), y.transpose(p_out))


def test_axis_helpers():
    assert stored_axis(NHWC, 1) == 3 and stored_axis(NHWC, -1) == 2
    assert stored_axis((1, 2, 3, 0), 0) == 3  # depthwise OIHW -> 1HWO: output channels last
    assert stored_axis((0, 2, 3, 1), 0) == 0  # conv OIHW -> OHWI
    assert inverse(NHWC) == (0, 3, 1, 2)
    assert same_bytes((1, 8, 1, 1), NHWC) and not same_bytes((1, 8, 2, 2), NHWC)


def test_softmax_axis_and_reduce_without_keepdims():
    gb = GraphBuilder()
    x = gb.input("x", (1, 5, 7))
    s = gb.node("Softmax", [x], axis=1)
    gb2 = GraphBuilder()
    x2 = gb2.input("x", (1, 4, 6, 6))
    m = gb2.node("ReduceMean", [x2], axes=[3], keepdims=0)
    assert build_layout(gb.build(s)).perms[s] == (0, 2, 1)  # softmax axis stored last
    assert build_layout(gb2.build(m)).perms[m] == (0, 2, 1)  # (N,C,H) stored (N,H,C)


@pytest.mark.parametrize("in_hw,k,s,pads,expect", [
    ((16, 16), 3, 1, (1, 1, 1, 1), ("SAME", None)),
    ((8, 8), 3, 2, (1, 1, 1, 1), ("VALID", [(1, 0), (1, 0)])),  # the end pad is never read
    ((8, 8), 3, 2, (0, 0, 1, 1), ("SAME", None)),
    ((8, 8), 2, 1, (0, 0, 1, 1), ("SAME", None)),
    ((9, 9), 3, 1, (0, 0, 0, 0), ("VALID", None)),
    ((6, 6), 3, 1, (1, 0, 2, 1), ("VALID", [(1, 2), (0, 1)])),
])
def test_padding_plan(in_hw, k, s, pads, expect):
    out_hw = tuple((i + pads[d] + pads[d + 2] - k) // s + 1 for d, i in enumerate(in_hw))
    assert padding_plan(in_hw, out_hw, (k, k), (s, s), (1, 1), pads) == expect


def test_padding_plan_without_same_for_averages_that_count_padding():
    assert padding_plan((8, 8), (8, 8), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), allow_same=False) == \
        ("VALID", [(1, 1), (1, 1)])


def _resize(mode, cotm, nearest_mode="round_prefer_floor"):
    return Node("r", "Resize", ["x"], ["y"], {"mode": mode, "coordinate_transformation_mode": cotm,
                                               "nearest_mode": nearest_mode})


def test_resize_flags():
    assert resize_flags(_resize("nearest", "asymmetric", "floor"), (4, 4), (8, 8)) == (False, False)
    assert resize_flags(_resize("nearest", "half_pixel"), (4, 4), (8, 8)) == (False, True)
    assert resize_flags(_resize("linear", "half_pixel"), (4, 4), (8, 8)) == (False, True)
    assert resize_flags(_resize("linear", "align_corners"), (4, 4), (7, 7)) == (True, False)
    with pytest.raises(UnsupportedOpError, match="Resize"):
        resize_flags(_resize("nearest", "asymmetric", "ceil"), (4, 4), (7, 7))


def test_nhwc_flatten_of_a_tf2onnx_head_needs_no_transpose():
    """conv -> Transpose(0,2,3,1) -> Flatten -> Gemm (how tf2onnx writes a Keras head)."""
    gb = GraphBuilder(seed=3)
    x = gb.input("x", (1, 3, 6, 6))
    y = gb.conv(x, 4, 3, stride=2)
    t = gb.node("Transpose", [y], perm=[0, 2, 3, 1])
    f = gb.node("Reshape", [t], shape=[1, 36])
    g = gb.build(gb.gemm(f, 3))
    plan = build_layout(g)
    assert plan.perms[t] == (0, 1, 2, 3) and g.nodes[1].name in plan.vanished
    assert f not in plan.flattened  # the bytes already are in H, W, C order
    data = to_tflite(g, int8=False)
    assert op_names(data) == ["PAD", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    xs = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    got = run_litert(data, [plan.to_stored("x", xs)])[0]
    np.testing.assert_allclose(got, run_reference(g, {"x": xs})[g.outputs[0]], atol=1e-5)
