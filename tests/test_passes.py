"""Graph passes: same outputs before and after (run with torch_exec), and the expected structure."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edgepack.exporter.passes import (DEFAULT_PASSES, fold_batchnorm, fuse_activations, remove_dead,
                                      remove_identity, run_passes)
from edgepack.ir import verify
from edgepack.ir.torch_exec import run
from ir_build import make_graph, rand

CONV = dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)


def bn_consts(prefix, c, seed):
    rng = np.random.default_rng(seed)
    return {f"{prefix}.g": rng.uniform(0.5, 2, c).astype(np.float32), f"{prefix}.b": rand(c, seed=seed),
            f"{prefix}.m": rand(c, seed=seed + 1), f"{prefix}.v": rng.uniform(0.2, 3, c).astype(np.float32)}


def bn_node(x, y, prefix):
    return ("BatchNormalization", [x, f"{prefix}.g", f"{prefix}.b", f"{prefix}.m", f"{prefix}.v"], y,
            dict(epsilon=1e-3), prefix)


def check_pass(graph_pass, g, seed=0):
    """Apply the pass to a copy, verify it, and assert the outputs equal within 1e-5 of their range."""
    inputs = [rand(*g.tensors[i].shape, seed=seed, scale=2.0) for i in g.inputs]
    before = run(g, inputs)
    new, changed = graph_pass(g.copy())
    verify(new)
    after = run(new, inputs)
    assert list(after) == list(before) == g.outputs
    for name in g.outputs:
        tol = 1e-5 * max(float(np.ptp(before[name])), 1.0)
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=tol)
    return new, changed


def ops(g):
    return [n.op for n in g.nodes]


# ---- cleanup ---------------------------------------------------------------------------------------------
def test_remove_identity_rewires_and_keeps_output_name():
    g = make_graph({"x": (1, 2, 4, 4)},
                   [("Identity", ["x"], "i0", {}), ("Conv", ["i0", "w"], "c", CONV),
                    ("Dropout", ["c"], "d", {}), ("Relu", ["d"], "r", {}), ("Identity", ["r"], "logits", {})],
                   {"w": rand(3, 2, 3, 3)})
    new, changed = check_pass(remove_identity, g)
    assert changed and ops(new) == ["Conv", "Relu"]
    assert new.outputs == ["logits"] and new.nodes[-1].outputs == ["logits"]
    assert new.nodes[0].inputs[0] == "x" and "r" not in new.tensors and "i0" not in new.tensors


def test_identity_between_graph_input_and_output_stays():
    g = make_graph({"x": (1, 3)}, [("Identity", ["x"], "y", {})])
    new, changed = check_pass(remove_identity, g)
    assert not changed and ops(new) == ["Identity"]


def test_remove_dead_drops_unread_nodes_and_tensors():
    g = make_graph({"x": (1, 2, 4, 4)},
                   [("Conv", ["x", "w"], "c", CONV), ("Sigmoid", ["c"], "unused", {}), ("Relu", ["c"], "y", {})],
                   {"w": rand(3, 2, 3, 3), "stale": rand(5)}, outputs=["y"])
    new, changed = check_pass(remove_dead, g)
    assert changed and ops(new) == ["Conv", "Relu"]
    assert "unused" not in new.tensors and "stale" not in new.tensors
    assert remove_dead(new)[1] is False


# ---- fold_batchnorm --------------------------------------------------------------------------------------
@pytest.mark.parametrize("group,bias", [(1, False), (1, True), (4, True), (2, False)])
def test_fold_batchnorm_into_conv(group, bias):
    consts = {"w": rand(4, 4 // group, 3, 3, seed=1), **bn_consts("bn", 4, 2)}
    inputs = ["x", "w"]
    if bias:
        consts["b"] = rand(4, seed=3)
        inputs.append("b")
    g = make_graph({"x": (2, 4, 5, 5)},
                   [("Conv", inputs, "c", dict(CONV, group=group), "conv"), bn_node("c", "y", "bn")], consts)
    new, changed = check_pass(fold_batchnorm, g)
    assert changed and ops(new) == ["Conv"]
    conv = new.nodes[0]
    assert conv.outputs == ["y"] and len(conv.inputs) == 3 and new.const(conv.inputs[2]).shape == (4,)
    assert not any(k.startswith("bn.") for k in new.tensors)


def test_fold_batchnorm_into_gemm_creates_bias():
    g = make_graph({"x": (3, 6)}, [("Gemm", ["x", "w"], "f", {}, "fc"), bn_node("f", "y", "bn")],
                   {"w": rand(5, 6, seed=4), **bn_consts("bn", 5, 5)})
    new, changed = check_pass(fold_batchnorm, g)
    assert changed and ops(new) == ["Gemm"] and new.const(new.nodes[0].inputs[2]).shape == (5,)


def test_batchnorm_that_cannot_fold_becomes_mul_add():
    consts = {"w": rand(3, 3, 3, 3, seed=6), **bn_consts("bn0", 3, 7), **bn_consts("bn1", 3, 8),
              **bn_consts("bn2", 3, 9)}
    nodes = [bn_node("x", "b0", "bn0"),                     # reads a graph input
             ("Conv", ["b0", "w"], "c", CONV), ("Sigmoid", ["c"], "s", {}),
             bn_node("c", "b1", "bn1"),                      # conv output has two readers
             ("Add", ["b1", "s"], "a", {}), ("GlobalAveragePool", ["a"], "p", {}),
             ("Reshape", ["p"], "r", dict(shape=[1, 3])), bn_node("r", "y", "bn2")]  # 2-D, after Reshape
    g = make_graph({"x": (1, 3, 6, 6)}, nodes, consts)
    new, changed = check_pass(fold_batchnorm, g)
    assert changed and "BatchNormalization" not in ops(new)
    assert ops(new).count("Mul") == 3 and ops(new).count("Add") == 4
    shapes = {n.name: new.tensors[n.inputs[1]].shape for n in new.nodes if n.op == "Mul"}
    assert shapes == {"bn0/mul": (1, 3, 1, 1), "bn1/mul": (1, 3, 1, 1), "bn2/mul": (1, 3)}


# ---- fuse_activations ------------------------------------------------------------------------------------
def test_fuse_activations_sets_attr_and_removes_node():
    nodes = [("Conv", ["x", "w"], "c", CONV, "conv"), ("Relu", ["c"], "r", {}),
             ("Add", ["r", "r"], "a", {}, "add"), ("Clip", ["a"], "k", dict(min=0.0, max=6.0)),
             ("GlobalAveragePool", ["k"], "p", {}), ("Reshape", ["p"], "q", dict(shape=[1, 3])),
             ("Gemm", ["q", "fw"], "f", {}, "fc"), ("Clip", ["f"], "y", dict(min=0.0, max=float("inf")))]
    g = make_graph({"x": (1, 2, 5, 5)}, nodes, {"w": rand(3, 2, 3, 3, seed=10), "fw": rand(4, 3, seed=11)})
    new, changed = check_pass(fuse_activations, g)
    assert changed and ops(new) == ["Conv", "Add", "GlobalAveragePool", "Reshape", "Gemm"]
    acts = {n.name: n.activation for n in new.nodes}
    assert acts["conv"] == "Relu" and acts["add"] == "Relu6" and acts["fc"] == "Relu"
    assert new.node("fc").outputs == ["y"] and new.outputs == ["y"]


def test_fuse_activations_leaves_what_it_must():
    nodes = [("Conv", ["x", "w"], "c", dict(CONV, activation="Relu")), ("Relu", ["c"], "r0", {}),  # has one
             ("Sigmoid", ["r0"], "s", {}), ("Relu", ["s"], "r1", {}),                    # not fusable
             ("Mul", ["r1", "r1"], "m", {}), ("Clip", ["m"], "r2", dict(min=0.0, max=5.0)),  # not Relu6
             ("Sub", ["r2", "r2"], "d", {}), ("Relu", ["d"], "r3", {}), ("Add", ["d", "r3"], "y0", {}),  # 2 readers
             ("Mul", ["y0", "y0"], "y1", {}), ("Relu", ["y1"], "y2", {})]                # graph output
    g = make_graph({"x": (1, 2, 4, 4)}, nodes, {"w": rand(3, 2, 3, 3, seed=12)}, outputs=["y1", "y2"])
    new, changed = check_pass(fuse_activations, g)
    assert not changed and ops(new) == ops(g)


# ---- the pipeline ----------------------------------------------------------------------------------------
def _net():
    consts = {"w1": rand(4, 3, 3, 3, seed=13), "w2": rand(4, 1, 3, 3, seed=14), "fw": rand(5, 4, seed=15),
              "fb": rand(5, seed=16), **bn_consts("bn1", 4, 17), **bn_consts("bn2", 4, 18)}
    nodes = [("Conv", ["x", "w1"], "c1", CONV, "conv1"), bn_node("c1", "b1", "bn1"), ("Relu", ["b1"], "r1", {}),
             ("Identity", ["r1"], "i1", {}), ("Conv", ["i1", "w2"], "c2", dict(CONV, group=4), "dw"),
             bn_node("c2", "b2", "bn2"), ("Clip", ["b2"], "r2", dict(min=0.0, max=6.0)),
             ("GlobalAveragePool", ["r2"], "p", {}), ("Reshape", ["p"], "q", dict(shape=[1, 4])),
             ("Gemm", ["q", "fw", "fb"], "f", {}, "fc"), ("Dropout", ["f"], "logits", {})]
    return make_graph({"x": (1, 3, 8, 8)}, nodes, consts)


def test_run_passes_default_pipeline(caplog):
    g = _net()
    original_ops = ops(g)
    x = rand(1, 3, 8, 8, seed=19)
    with caplog.at_level(logging.INFO, logger="edgepack.ir.passes"):
        new = run_passes(g)
    assert ops(g) == original_ops  # the caller's graph is untouched
    assert ops(new) == ["Conv", "Conv", "GlobalAveragePool", "Reshape", "Gemm"]
    assert [n.activation for n in new.nodes] == ["Relu", "Relu6", None, None, None]
    assert new.outputs == ["logits"] and not any(k.startswith("bn") for k in new.tensors)
    ref, got = run(g, [x])["logits"], run(new, [x])["logits"]
    np.testing.assert_allclose(got, ref, atol=1e-5 * float(np.ptp(ref)))
    assert "fold_batchnorm" in caplog.text and "fuse_activations" in caplog.text
    assert [p.__name__ for p in DEFAULT_PASSES][-1] == "remove_dead"
