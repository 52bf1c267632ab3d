"""Issue 17: iterative unstructured pruning (--sparsity), low-rank factorisation (--low-rank) and the
energy ranking of shrink options, on an FC-heavy model of our own trained on digits (tests/zoo.py)."""
import numpy as np
import pytest

import edgepack
from edgepack.config import ExportConfig
from edgepack.errors import ConfigError
from edgepack.exporter.passes import run_passes
from edgepack.exporter.passes.low_rank import LowRankPass, rank_for_energy
from edgepack.exporter.passes.sparsity import magnitude_mask, schedule
from edgepack.pipeline import shrink_cost

PER_TENSOR_FC = {"op:Gemm": {"per_channel": False}}  # per-channel FC scales would cost 12 kB of the 30 kB


# The exports of the FC-heavy model (sparsity 0.8 and low rank energy:0.8, with their accuracy, sizes, schedule
# and per-layer latencies) are asserted once, by tests/test_examples.py::test_sparse_and_low_rank.


def test_low_rank_follows_the_latency_model_not_macs_and_is_exact_at_full_rank(trained):
    graph = edgepack.load(trained("fc_heavy"), input_shape=(1, 64))
    cost = shrink_cost(ExportConfig())
    lr = LowRankPass(0.8, cost)
    small = run_passes(graph, [lr])
    assert len(lr.done) == 3  # on the MCU every layer's MACs dominate its cost
    # on the phone profile an op costs 8000 cycles of overhead, more than these layers' MAC savings
    phone = LowRankPass(0.8, shrink_cost(ExportConfig(target="phone-arm64")))
    assert run_passes(graph, [phone]) is not None and phone.done == []
    # an explicit rank per layer is the user's choice; the full rank is the same function
    full = LowRankPass(None, cost, lambda node, op: 64 if node == graph.nodes[0].name else None)
    exact = run_passes(graph, [full])
    from edgepack.ir.torch_exec import run

    x = np.random.default_rng(0).random((8, 64), np.float32)
    ref, got = run(graph, [x])[graph.outputs[0]], run(exact, [x])[exact.outputs[0]]
    assert len(exact.nodes) == len(graph.nodes) + 1 and np.abs(ref - got).max() < 1e-4
    assert sum(n.op == "Gemm" for n in small.nodes) > sum(n.op == "Gemm" for n in graph.nodes)


def test_energy_ranking_prefers_fewer_weight_bytes(trained):
    """On an MCU a weight byte read from flash costs ~60x a MAC: energy accepts every rank that cuts bytes"""
    graph = edgepack.load(trained("fc_heavy"), input_shape=(1, 64))
    by_energy = LowRankPass(0.9, shrink_cost(ExportConfig(shrink_cost="energy")))
    run_passes(graph, [by_energy])
    assert len(by_energy.done) == 3 and all(f.cost_after < f.cost_before for f in by_energy.done)
    # the first layer, 64 -> 256 on stm32l4r5: (16384 weight + 4 x 256 bias bytes) x 14 pJ
    # + (64 + 256 activation bytes) x 2.5 pJ + 16384 MACs x 0.23 pJ
    assert by_energy.done[0].cost_before == pytest.approx(17408 * 14.0 + 320 * 2.5 + 16384 * 0.23)


def test_magnitude_mask_and_rank_for_energy():
    w = np.array([[0.1, -3.0, 0.2], [2.0, -0.05, 1.0]])
    assert magnitude_mask(w, 0.5).tolist() == [[False, True, False], [True, False, True]]
    assert rank_for_energy(np.array([3.0, 2.0, 1.0]), 0.9) == 2 and rank_for_energy(np.array([1.0]), 0.5) == 1
    assert schedule(0.8)[-1] == pytest.approx(0.8) and schedule(0.8) == sorted(schedule(0.8))


@pytest.mark.parametrize("settings, key", [({"sparsity": 1.0}, "sparsity"), ({"low_rank": "rank:4"}, "low_rank"),
                                           ({"low_rank": "energy:1.5"}, "low_rank"),
                                           ({"layers": ["fc:rank=1.5"]}, "layers"),
                                           ({"layers": ["fc:sparsity=-0.1"]}, "layers"),
                                           ({"shrink_cost": "flops"}, "shrink_cost")])
def test_settings_are_checked(settings, key):
    with pytest.raises(ConfigError) as exc:
        ExportConfig(**settings)
    assert exc.value.key == key


def test_sparsity_then_clustering_keeps_the_zeros(trained):
    """Deep Compression's order, one cut without distillation: K shared values plus the pruned zeros"""
    from edgepack.shrink import shrink_stages

    graph = edgepack.load(trained("fc_heavy"), input_shape=(1, 64))
    student, section, stages = shrink_stages(graph, ExportConfig(sparsity=0.8, cluster=16), None, None)
    assert list(stages) == ["sparse", "clustered"] and "one cut" in section["sparsity"]["schedule"]
    for name in section["sparsity"]["layers"]:
        w = student.tensors[name].data
        assert np.mean(w == 0) >= 0.8 - 1e-3 and np.unique(w).size <= 17


def test_per_layer_sparsity_and_rank_override_the_global_settings(trained):
    from edgepack.shrink import shrink_stages

    graph = edgepack.load(trained("fc_heavy"), input_shape=(1, 64))
    first, head = graph.nodes[0].name, graph.nodes[-1].name
    cfg = ExportConfig(sparsity=0.8, layers=[f"{first}:sparsity=0.5", f"{head}:rank=0", "op:Gemm:rank=16"])
    _, section, _ = shrink_stages(graph, cfg, None, None)
    zeros = section["sparsity"]["layers"]  # the first layer's two factors take its own sparsity
    assert sorted(zeros.values()) == pytest.approx([0.5, 0.5, 0.8, 0.8, 0.8], abs=1e-3)
    assert zeros[graph.nodes[-1].inputs[1]] == pytest.approx(0.8, abs=1e-3)
    ranks = {node: layer["rank"] for node, layer in section["low_rank"]["layers"].items()}
    assert ranks == {n.name: 16 for n in graph.nodes if n.op == "Gemm" and n.name != head}


def test_separable_auto_ranked_by_energy():
    """--separable auto with --shrink-cost energy: the convs whose replacement lowers the target's energy,
    the biggest saving first (each saving checked on the whole graph)"""
    import zoo
    from edgepack.exporter.passes.separable import SeparablePass, apply_separable
    from edgepack.targets.energy import graph_energy_pj
    from edgepack.targets.profile import load_profile

    graph = zoo.loaded("resnet")
    sep = SeparablePass("auto", error_threshold=float("inf"), cost=shrink_cost(ExportConfig(shrink_cost="energy")))
    run_passes(graph, [sep])
    costs = load_profile("stm32l4r5").energy
    whole = graph_energy_pj(graph, costs)
    savings = [whole - graph_energy_pj(apply_separable(graph, [name]), costs) for name in sep.replaced]
    assert sep.replaced and all(s > 0 for s in savings) and savings == sorted(savings, reverse=True)


def test_low_rank_of_pointwise_convs_at_full_rank_is_exact():
    """resnet's 1x1 stride-2 shortcut conv: the stride goes to the first of the two convs"""
    import zoo
    from edgepack.ir.torch_exec import run

    graph = zoo.loaded("resnet")
    full = LowRankPass(None, shrink_cost(ExportConfig()), lambda node, op: 1000 if op == "Conv" else None)  # capped: min(out, in)
    exact = run_passes(graph, [full])
    pointwise = [n for n in graph.nodes if n.op == "Conv" and graph.tensors[n.inputs[1]].shape[2:] == (1, 1)]
    assert len(full.done) == len(pointwise) >= 1 and len(exact.nodes) == len(graph.nodes) + len(pointwise)
    x = zoo.digits_like((1, 1, 16, 16), 4)
    ref, got = run(graph, [x])[graph.outputs[0]], run(exact, [x])[exact.outputs[0]]
    assert np.abs(ref - got).max() < 1e-3 * max(1.0, np.abs(ref).max())
