"""Depthwise-separable replacement: exact for rank-1 kernels, MACs fall as predicted, auto picks low-error convs."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

import edgepack
import zoo
from edgepack.errors import ConfigError
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.passes import run_passes
from edgepack.exporter.passes.separable import (AUTO_ERROR_THRESHOLD, SeparablePass, apply_separable, factorize,
                                                separable_candidates)
from edgepack.ir import verify
from edgepack.ir.summary import node_macs, summarize
from edgepack.ir.torch_exec import run
from ir_build import make_graph, rand

CONV = dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)


def low_rank_kernel(cout, cin, k, rank, seed=0):
    """W[:, c] = sum of `rank` outer products (Cout x K*K) for each input channel c."""
    rng = np.random.default_rng(seed)
    w = np.zeros((cout, cin, k * k))
    for c in range(cin):
        for _ in range(rank):
            w[:, c] += np.outer(rng.standard_normal(cout), rng.standard_normal(k * k))
    return w.reshape(cout, cin, k, k).astype(np.float32)


def conv_graph(w, attrs=None, bias=True):
    cin = w.shape[1]
    consts = {"w": w, "w_out": rand(3, w.shape[0], 1, 1, seed=4)}
    ins = ["x", "w"]
    if bias:
        consts["b"] = rand(w.shape[0], seed=3)
        ins.append("b")
    return make_graph({"x": (2, cin, 11, 11)},
                      [("Conv", ins, "h", dict(CONV, activation="Relu", **(attrs or {})), "conv"),
                       ("Conv", ["h", "w_out"], "y", dict(CONV, pads=[0, 0, 0, 0]), "head")], consts)


def test_rank1_kernel_is_replaced_exactly():
    w = low_rank_kernel(24, 6, 3, rank=1)
    g = conv_graph(w)
    (cand,) = [c for c in separable_candidates(g) if c.node == "conv"]
    assert cand.error < 1e-6
    new = apply_separable(g, ["conv"])
    verify(new)
    assert [n.op for n in new.nodes] == ["Conv", "Conv", "Conv"]
    x = rand(2, 6, 11, 11, seed=9)
    want, got = run(g, [x])["y"], run(new, [x])["y"]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("k,cout,attrs", [(3, 16, {}), (5, 32, dict(strides=[2, 2], pads=[2, 2, 2, 2])),
                                          (3, 8, dict(dilations=[2, 2], pads=[2, 1, 2, 1]))])
def test_macs_fall_and_attrs_land_on_the_right_conv(k, cout, attrs):
    w = rand(cout, 4, k, k, seed=1)
    g = conv_graph(w, attrs)
    new = apply_separable(g, ["conv"])
    dw, pw = new.nodes[0], new.nodes[1]
    assert dw.attrs["group"] == 4 and new.tensors[dw.inputs[1]].shape == (4, 1, k, k) and len(dw.inputs) == 2
    for key in ("strides", "pads", "dilations"):
        assert dw.attrs[key] == g.nodes[0].attrs[key]
    assert dw.attrs["activation"] is None and pw.attrs["activation"] == "Relu"
    assert pw.inputs[2] == "b" and pw.outputs == ["h"] and new.tensors[pw.inputs[1]].shape == (cout, 4, 1, 1)
    before = node_macs(g, g.nodes[0])
    after = node_macs(new, dw) + node_macs(new, pw)
    assert before / after >= 0.9 * (k * k * cout) / (k * k + cout)
    (cand,) = separable_candidates(g, error_threshold=float("inf"))
    assert (cand.macs_before, cand.macs_after) == (before, after)
    x = rand(2, 4, 11, 11, seed=2)
    assert run(new, [x], keep="h")["h"].shape == run(g, [x], keep="h")["h"].shape


def test_multiplier_m_is_exact_for_rank_m_and_error_is_the_frobenius_ratio():
    w = low_rank_kernel(12, 3, 3, rank=2, seed=5)
    dw1, pw1, err1 = factorize(w, 1)
    approx = np.einsum("ok,kij->okij", pw1[:, :, 0, 0], dw1[:, 0]).reshape(12, 3, 3, 3)
    assert err1 == pytest.approx(np.linalg.norm(w - approx) / np.linalg.norm(w), rel=1e-5)
    assert err1 > 0.05
    g = conv_graph(w)
    new = apply_separable(g, ["conv"], multiplier=2)
    assert new.tensors[new.nodes[0].inputs[1]].shape == (6, 1, 3, 3)
    x = rand(2, 3, 11, 11, seed=3)
    np.testing.assert_allclose(run(new, [x])["y"], run(g, [x])["y"], atol=1e-4)
    assert separable_candidates(g, multiplier=2)[0].error < 1e-6


def test_auto_picks_only_low_error_convs_biggest_saving_first():
    g = make_graph({"x": (1, 4, 8, 8)},
                   [("Conv", ["x", "w1"], "a", CONV, "random"), ("Conv", ["a", "w2"], "b", CONV, "low_rank_small"),
                    ("Conv", ["b", "w3"], "c", CONV, "low_rank_big"), ("Conv", ["c", "w4"], "y", dict(CONV, pads=[0, 0, 0, 0]), "pointwise")],
                   {"w1": rand(8, 4, 3, 3), "w2": low_rank_kernel(8, 8, 3, 1, seed=1),
                    "w3": low_rank_kernel(32, 8, 3, 1, seed=2) + 0.01 * rand(32, 8, 3, 3, seed=3),
                    "w4": rand(4, 32, 1, 1)})
    names = [c.node for c in separable_candidates(g)]
    assert names == ["low_rank_big", "low_rank_small"]  # the random conv errs far above the threshold
    everything = separable_candidates(g, error_threshold=float("inf"))
    assert {c.node for c in everything} == {"random", "low_rank_small", "low_rank_big"}
    assert [c.error > AUTO_ERROR_THRESHOLD for c in everything if c.node == "random"] == [True]
    sep = SeparablePass("auto")
    new = run_passes(g, [sep])
    assert sep.replaced == names and summarize(new)["totals"]["macs"] < summarize(g)["totals"]["macs"]
    assert run_passes(g, [SeparablePass("none")]).op_counts() == g.op_counts()
    with pytest.raises(ConfigError, match="cannot be made separable.*allowed: auto, none, random"):
        apply_separable(g, "pointwise")


def test_zoo_resnet_replacement_runs_on_onnxruntime():
    model, shape = zoo.build("resnet")
    g = edgepack.load(model, input_shape=shape)
    target = "/blocks/blocks.0/c1/c1.0/Conv"
    new = apply_separable(g, [target], multiplier=3)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sess = ort.InferenceSession(to_onnx(new).SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, run(new, [x])[new.outputs[0]], rtol=1e-4, atol=1e-4)
    assert summarize(new)["totals"]["macs"] < summarize(g)["totals"]["macs"]
