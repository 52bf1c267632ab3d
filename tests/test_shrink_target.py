"""Shrinking for the target: the profile's round_to (channel tile) in pruning and in the latency model,
separable replacement and pruned groups kept only where the target's cost model says they are faster, and
the shrink budget reverting, layer by layer, the rewrites that lose too much accuracy."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgepack
from edgepack.config import ExportConfig
from edgepack.demo import digits_cnn, train_classifier
from edgepack.exporter.passes import run_passes
from edgepack.exporter.passes.prune import PrunePass
from edgepack.exporter.passes.separable import SeparablePass
from edgepack.ir.summary import summarize
from edgepack.pipeline import round_to, shrink_cost
from edgepack.shrink_budget import shrink_within_budget
from edgepack.targets.latency import estimate_latency
from edgepack.targets.profile import load_profile
from ir_build import make_graph, rand
from test_separable import low_rank_kernel

CONV = dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)


def test_round_to_comes_from_the_profile_and_the_flag_overrides():
    assert load_profile("phone-arm64").round_to == 16 and load_profile("stm32l4r5").round_to == 4
    assert round_to(ExportConfig(target="phone-arm64")) == 16
    assert round_to(ExportConfig(target="stm32l4r5")) == 4
    assert round_to(ExportConfig(target="phone-arm64", round_to=8)) == 8


def one_conv(cout: int):
    return make_graph({"x": (1, 32, 8, 8)}, [("Conv", ["x", "w"], "y", CONV, "conv")], {"w": rand(cout, 32, 3, 3)})


def test_latency_model_prices_whole_channel_tiles():
    phone, mcu = load_profile("phone-arm64"), load_profile("stm32l4r5")
    # XNNPACK computes 16 output channels at a time: 8 channels cost what 16 cost (benchmarks/results/shrink.md)
    def work(cout, profile):
        return estimate_latency(one_conv(cout), profile).nodes[0].macs

    assert work(8, phone) == work(16, phone) == 16 * 32 * 9 * 64 and work(24, phone) == work(32, phone)
    assert work(8, mcu) == 8 * 32 * 9 * 64 < work(16, mcu) and work(6, mcu) == work(8, mcu)


def narrow_then_wide():
    """A narrow 3x3 conv (16 -> 16), a 1x1 widening to 64, a wide 3x3 conv (64 -> 64), rank-1 kernels (the
    depthwise + pointwise pair is exact) at 8x8 pixels."""
    consts = {"w_small": low_rank_kernel(16, 16, 3, 1, seed=1), "w_widen": rand(64, 16, 1, 1, seed=2),
              "w_big": low_rank_kernel(64, 64, 3, 1, seed=3)}
    return make_graph({"x": (1, 16, 8, 8)}, [
        ("Conv", ["x", "w_small"], "a", dict(CONV, activation="Relu"), "small"),
        ("Conv", ["a", "w_widen"], "b", dict(CONV, pads=[0, 0, 0, 0]), "widen"),
        ("Conv", ["b", "w_big"], "y", CONV, "big")], consts)


@pytest.mark.parametrize("target, expected", [("phone-arm64", ["big"]), ("stm32l4r5", ["big", "small"])])
def test_separable_auto_replaces_only_the_convs_the_target_runs_faster(target, expected):
    # Phone: a depthwise MAC costs 10x a dense one and each op ~3 us, so the narrow conv stays dense.
    graph = narrow_then_wide()
    cost = shrink_cost(ExportConfig(target=target))
    sep = SeparablePass("auto", cost=cost)
    out = run_passes(graph, [sep])
    assert sorted(sep.replaced) == expected
    assert cost(out) < cost(graph)


def two_convs():
    return make_graph({"x": (1, 8, 6, 6)}, [
        ("Conv", ["x", "w1"], "h", dict(CONV, activation="Relu"), "c1"),
        ("Conv", ["h", "w2"], "y", CONV, "c2")], {"w1": rand(16, 8, 3, 3, seed=1), "w2": rand(8, 16, 3, 3, seed=2)})


def test_a_pruned_group_without_estimated_gain_keeps_its_channels():
    macs = PrunePass(0.5, round_to=4, protect_first_last=False, cost=lambda g: summarize(g)["totals"]["macs"])
    assert run_passes(two_convs(), [macs]).tensors["w1"].shape[0] == 8
    flat = PrunePass(0.5, round_to=4, protect_first_last=False, cost=lambda g: 1.0)
    assert run_passes(two_convs(), [flat]).tensors["w1"].shape[0] == 16
    assert flat.plan.removed_channels == 0 and "no estimated gain" in flat.plan.groups[0].reason


@pytest.fixture(scope="module")
def digits_graph(digits):
    torch.manual_seed(0)
    model = train_classifier(digits_cnn(), digits[0], digits[1], epochs=2, lr=5e-3, seed=0)
    return edgepack.load(model, input_shape=(1, 1, 8, 8))


def test_rewrites_over_the_budget_are_reverted_layer_by_layer(digits_graph, digits):
    x, y = digits[0], digits[1]
    passes = [PrunePass(0.75, round_to=4, protect_first_last=False)]
    student, rewrites, _, _, section = shrink_within_budget(
        digits_graph, ExportConfig(accuracy_budget="top1:100"), passes, x, y, None)
    assert section["within"] and not section["reverted"] and len(rewrites.pruned) == 3
    loose = summarize(student)["totals"]["macs"]

    passes = [PrunePass(0.75, round_to=4, protect_first_last=False)]
    student, rewrites, _, _, section = shrink_within_budget(
        digits_graph, ExportConfig(accuracy_budget="top1:0.5"), passes, x, y, None)
    assert section["within"] and section["after"]["top1_points_lost"] <= 0.5
    assert section["measured_on"] == round(0.2 * len(x))
    assert section["reverted"] and all("over the budget top1:0.5" in r["note"] for r in section["reverted"])
    assert summarize(student)["totals"]["macs"] > loose  # what was reverted is back
    kept = [g for g in passes[0].plan.groups if g.removed]
    assert len(kept) == 3 - len(section["reverted"])
    assert all("reverted" in g.reason for g in passes[0].plan.groups if g.reason and not g.protected)


def test_shrink_budget_default_and_bad_budget():
    from edgepack.errors import ConfigError
    from edgepack.shrink_budget import budget_of

    assert budget_of(ExportConfig()) == ("top1", 1.0, "the default shrink budget")
    assert budget_of(ExportConfig(accuracy_budget="sqnr:20"))[:2] == ("sqnr", 20.0)
    with pytest.raises(ConfigError, match="METRIC:NUMBER"):
        ExportConfig(accuracy_budget="top1:lots")
    assert np.isfinite(budget_of(ExportConfig(accuracy_budget="top1:0"))[1])
