"""Structured pruning: zoo models shrink, still run (torch_exec and onnxruntime), and the right channels go."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import zoo
from edgepack.errors import ConfigError
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.passes import run_passes
from edgepack.exporter.passes.channel_groups import find_channel_groups
from edgepack.exporter.passes.prune import PrunePass, apply_pruning, plan_pruning, round_keep
from edgepack.ir import verify
from edgepack.ir.summary import summarize
from edgepack.ir.torch_exec import run
from ir_build import make_graph, rand

CONV = dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
ZOO = ["resnet", "squeezenet", "mobilenet_v2", "mobilenet_v3", "plain_cnn"]
graph = zoo.loaded


def ort_run(g, x):
    sess = ort.InferenceSession(to_onnx(g).SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_prune_half_runs_smaller_everywhere(name):
    g = graph(name)
    plan = plan_pruning(g, 0.5, round_to=4)
    pruned = apply_pruning(g, plan)
    verify(pruned)
    before, after = summarize(g)["totals"], summarize(pruned)["totals"]
    assert after["macs"] < 0.75 * before["macs"] and after["params"] < 0.75 * before["params"]
    assert (before["macs"], after["macs"]) == (plan.before["totals"]["macs"], plan.after["totals"]["macs"])
    # Every pruned group's producers have exactly `keep` output channels now; consumers lost the columns.
    groups = {grp.key: grp for grp in find_channel_groups(g)}
    for gp in plan.groups:
        for ref in groups[gp.key].producers:
            assert pruned.tensors[ref.tensor].shape[0] == gp.keep
        for ref in groups[gp.key].consumers:
            lost = len(ref.indices(gp.removed))
            assert g.tensors[ref.tensor].shape[1] - pruned.tensors[ref.tensor].shape[1] >= lost
    assert sum(gp.keep < gp.channels for gp in plan.groups) >= 2
    assert g.tensors[g.outputs[0]].shape == pruned.tensors[pruned.outputs[0]].shape
    x = np.random.default_rng(0).standard_normal(g.tensors[g.inputs[0]].shape).astype(np.float32)
    want = run(pruned, [x])[pruned.outputs[0]]
    got = ort_run(pruned, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_expected_shapes_after_pruning_resnet():
    g = graph("resnet")
    pruned = apply_pruning(g, plan_pruning(g, 0.5))
    t = pruned.tensors
    assert t["blocks.0.c1.0.weight"].shape == (8, 16, 3, 3)  # stem group protected (first layer)
    assert t["blocks.0.c2.0.weight"].shape == (16, 8, 3, 3)
    assert t["blocks.1.c1.0.weight"].shape == (16, 16, 3, 3)
    assert t["blocks.1.c2.0.weight"].shape == (16, 16, 3, 3)
    assert t["blocks.1.skip.0.weight"].shape == (16, 16, 1, 1)  # coupled with c2 through the Add
    assert t["fc.weight"].shape == (10, 16)
    assert summarize(pruned)["totals"]["macs"] == 938144 and summarize(g)["totals"]["macs"] == 2134336


def test_flatten_gemm_and_depthwise_attrs_follow():
    g = graph("plain_cnn")
    pruned = apply_pruning(g, plan_pruning(g, 0.5, protect_first_last=False, round_to=4))
    flatten = pruned.node("/head/head.0/Flatten")
    assert flatten.attrs["shape"] == [1, 16 * 4]  # 32 -> 16 channels of 2x2
    assert pruned.tensors["head.1.weight"].shape == (10, 64)
    v2 = graph("mobilenet_v2")
    pruned = apply_pruning(v2, plan_pruning(v2, 0.5))
    dw = pruned.node("/blocks/blocks.1/body/body.1/body.1.0/Conv")
    assert dw.attrs["group"] == 24 and pruned.tensors["blocks.1.body.1.0.weight"].shape == (24, 1, 3, 3)


@pytest.mark.parametrize("round_to", [4, 8])
@pytest.mark.parametrize("scope", ["uniform", "global"])
def test_keep_counts_are_multiples_of_round_to(round_to, scope):
    g = graph("mobilenet_v3")
    plan = plan_pruning(g, 0.5, round_to=round_to, scope=scope)
    pruned = [gp for gp in plan.groups if gp.removed]
    assert pruned
    for gp in pruned:
        assert gp.keep % round_to == 0 and gp.keep >= round_to
    assert all(not gp.removed for gp in plan.groups if gp.protected)
    assert round_keep(5, 10, 8) == 8 and round_keep(12, 48, 8) == 16 and round_keep(1, 6, 8) == 6


def _two_conv_graph(w1, b1):
    return make_graph({"x": (1, 3, 6, 6)},
                      [("Conv", ["x", "w1", "b1"], "a", dict(CONV, activation="Relu"), "c1"),
                       ("Conv", ["a", "w2"], "b", CONV, "c2"), ("Relu", ["b"], "y", {}, "relu")],
                      {"w1": w1, "b1": b1, "w2": rand(4, 8, 3, 3, seed=2)})


def test_l1_removes_the_lowest_norm_channels_and_zero_channels_change_nothing():
    w1 = rand(8, 3, 3, 3, seed=1)
    small = [1, 4, 5, 6]
    w1[small] *= np.array([0.0, 0.01, 0.02, 0.0], np.float32)[:, None, None, None]
    b1 = rand(8, seed=3)
    b1[small] = 0.0
    g = _two_conv_graph(w1, b1)
    plan = plan_pruning(g, 0.5, round_to=4, protect_first_last=False)
    assert plan.groups[0].key == ("c1",) and plan.groups[0].removed == small
    # Channels 1 and 6 are exactly zero; 4 and 5 nearly: the output hardly moves.
    x = rand(1, 3, 6, 6, seed=7)
    before, after = run(g, [x])["y"], run(apply_pruning(g, plan), [x])["y"]
    np.testing.assert_allclose(after, before, atol=0.05 * float(np.abs(before).max()))


def test_l2_and_l1_disagree_on_a_spiky_channel():
    w1 = np.full((8, 3, 3, 3), 0.1, np.float32)
    w1[0] = 0.0
    w1[0, 0, 0, 0] = 1.5  # L1 = 1.5 < 2.7 for the others, L2 = 1.5 > 0.52
    w1[1:4] *= 2.0
    g = _two_conv_graph(w1, np.zeros(8, np.float32))
    l1 = plan_pruning(g, 0.5, importance="l1", round_to=4, protect_first_last=False).groups[0].removed
    l2 = plan_pruning(g, 0.5, importance="l2", round_to=4, protect_first_last=False).groups[0].removed
    assert 0 in l1 and 0 not in l2
    assert l2 == [4, 5, 6, 7]


def test_taylor_removes_channels_that_never_fire():
    w1 = rand(8, 3, 3, 3, seed=1) * 3.0  # large weights: L1 keeps them all equally
    b1 = np.zeros(8, np.float32)
    dead = [0, 2, 3, 7]
    b1[dead] = -1e4  # Relu output always 0: no effect on the loss
    g = _two_conv_graph(w1, b1)
    samples = rand(32, 3, 6, 6, seed=5)
    plan = plan_pruning(g, 0.5, importance="taylor", round_to=4, samples=samples, protect_first_last=False)
    assert plan.groups[0].removed == dead
    before, after = run(g, [samples])["y"], run(apply_pruning(g, plan), [samples])["y"]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="taylor importance needs sample data"):
        plan_pruning(g, 0.5, importance="taylor")


def test_global_scope_prunes_unimportant_groups_harder():
    w1 = rand(16, 3, 3, 3, seed=1)
    w1[8:] *= 1e-3  # half of group 1 is almost nothing
    g = make_graph({"x": (1, 3, 6, 6)},
                   [("Conv", ["x", "w1"], "a", dict(CONV, activation="Relu"), "c1"),
                    ("Conv", ["a", "w2"], "b", dict(CONV, activation="Relu"), "c2"),
                    ("Conv", ["b", "w3"], "y", CONV, "c3")],
                   {"w1": w1, "w2": np.abs(rand(16, 16, 3, 3, seed=2)) + 1.0, "w3": rand(2, 16, 3, 3, seed=3)})
    uniform = plan_pruning(g, 0.25, round_to=4, protect_first_last=False)
    glob = plan_pruning(g, 0.25, round_to=4, scope="global", protect_first_last=False)
    assert [gp.keep for gp in uniform.groups[:2]] == [12, 12]
    assert [gp.keep for gp in glob.groups[:2]] == [8, 16]
    assert glob.groups[0].removed == list(range(8, 16))


def test_plan_json_has_params_and_macs_before_and_after():
    g = graph("squeezenet")
    plan = plan_pruning(g, 0.5)
    data = json.loads(json.dumps(plan.to_json()))
    totals = data["totals"]
    assert totals["macs_before"] == summarize(g)["totals"]["macs"] == 245760
    assert totals["macs_after"] == summarize(apply_pruning(g, plan))["totals"]["macs"] == 145408
    assert totals["params_after"] < totals["params_before"]
    layers = {row["name"]: row for row in data["layers"]}
    e3 = layers["/features/features.3/e3/e3.0/Conv"]
    assert (e3["params_before"], e3["params_after"]) == (16 * 8 * 9 + 16, 8 * 8 * 9 + 8)
    assert e3["macs_after"] == e3["macs_before"] // 2 and e3["output_shape_after"] == [1, 8, 8, 8]
    removed = {tuple(gr["producers"]): gr for gr in data["groups"]}
    assert len(removed[("/features/features.3/e1/e1.0/Conv",)]["removed"]) == 8
    assert removed[("/features/features.0/Conv",)]["protected"]
    assert data["settings"] == {"ratio": 0.5, "importance": "l1", "round_to": 8, "scope": "uniform",
                                "protect_first_last": True}


def test_prune_pass_in_the_pass_list_and_bad_settings():
    g = graph("plain_cnn")
    prune = PrunePass(0.5)
    out = run_passes(g, [prune])
    assert prune.plan is not None and prune.plan.removed_channels == 8 + 16
    assert summarize(out)["totals"]["macs"] == prune.plan.after["totals"]["macs"]
    assert PrunePass(0.0)(g.copy())[1] is False
    with pytest.raises(ConfigError, match="allowed: l1, l2, taylor"):
        plan_pruning(g, 0.5, importance="l3")
    with pytest.raises(ConfigError, match="out of range"):
        plan_pruning(g, 1.0)
    with pytest.raises(ConfigError, match="does not match the graph"):
        apply_pruning(graph("resnet"), prune.plan)
