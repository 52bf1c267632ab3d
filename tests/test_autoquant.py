"""--calibration auto (per-tensor range by measured error), collapse flags, bias correction.

Output SQNR is measured on held-out samples (not the calibration ones), fake-quantized in torch as the
emitters write the parameters (rewrite_check.quantized_output_sqnr)."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import edgepack
import zoo
from edgepack.calibration import load_samples
from edgepack.calibration.auto import COLLAPSE_ENERGY, GroupScorer, score_group
from edgepack.calibration.calibrate import calibrate
from edgepack.calibration.fc_weights import choose_fc_weights
from edgepack.calibration.quantize import QuantRules, quantize_graph
from edgepack.calibration.output_error import quantized_output_sqnr
from edgepack.config import ExportConfig

METHODS = ("minmax", "percentile", "mse", "entropy")
# Spreads below: benchmarks/results/threshold_spread.md (autoquant group), 5 seeds x one thread and seed 0 x
# {ONEDNN AVX2, two threads}. auto minus the best single method: outlier_mlp -0.006 to 0, spiky_mlp -0.213 to 0 dB
# (was 0.2: seed 1 missed it); margin ~0.3 dB.
TOLERANCE_DB = 0.5


def outlier_mlp(seed=0):
    """One hidden neuron fires rarely and hugely; the next layer barely reads it: minmax spends the int8
    range of the whole tensor on it (the issue's recognizer/detector rows, where minmax is far off)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Linear(64, 33), nn.ReLU(), nn.Linear(33, 10)).eval()
    with torch.no_grad():
        m[0].weight.copy_(torch.randn(33, 64, generator=g) * 0.15)
        m[0].bias.zero_()
        v = torch.randn(64, generator=g)
        m[0].weight[32] = 300 * v / v.norm()
        m[0].bias[32] = -600.0
        m[2].weight.copy_(torch.randn(10, 33, generator=g) * 0.3)
        m[2].weight[:, 32] *= 0.001
    x = np.random.default_rng(seed).normal(0, 1, (800, 64)).astype(np.float32)
    return m, (1, 64), x


def spiky_mlp(seed=0):
    """Spike-coded inputs (most entries near zero, rare large ones carry the signal): entropy fits the
    bulk and clips the spikes away (the issue's MobileNet row, 14 dB with entropy)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    with torch.no_grad():
        m[0].weight.copy_(torch.eye(64) + 0.01 * torch.randn(64, 64, generator=g))
        m[0].bias.zero_()
    x = rng.normal(0, 0.02, (800, 64)).astype(np.float32)
    mask = rng.random(x.shape) < 0.01
    x[mask] = rng.exponential(3.0, mask.sum())
    return m, (1, 64), x


def sqnr_by_method(model, shape, x_cal, x_val, bias_correction="off"):
    graph = edgepack.load(model, input_shape=shape)
    samples = load_samples(x_cal, shape, input_name=graph.inputs[0])
    rules = QuantRules(per_channel_nodes=choose_fc_weights(graph, x_cal[:64]).per_channel)
    out, cals = {}, {}
    for m in METHODS + ("auto",):
        cals[m] = calibrate(graph, samples, m, rules=rules, bias_correction=bias_correction)
        out[m] = quantized_output_sqnr(graph, cals[m].qgraph, x_val)
    return out, cals


@pytest.mark.parametrize("build", [outlier_mlp, spiky_mlp])
def test_auto_is_near_the_best_method_and_never_below_minmax_on_issue_like_models(build):
    model, shape, x = build()
    sqnr, cals = sqnr_by_method(model, shape, x[:300], x[300:])
    best = max(sqnr[m] for m in METHODS)
    assert sqnr["auto"] >= best - TOLERANCE_DB, sqnr
    assert sqnr["auto"] >= sqnr["minmax"], sqnr


def test_auto_beats_minmax_where_an_outlier_wastes_the_range():
    model, shape, x = outlier_mlp()
    sqnr, cals = sqnr_by_method(model, shape, x[:300], x[300:])
    assert sqnr["auto"] > sqnr["minmax"] + 3.0, sqnr  # measured +4.2 to +11.2 dB (seed 0: +6.7)
    hidden = cals["auto"].section["auto"]["tensors"]["/1/Relu_output_0"]
    assert hidden["method"] != "minmax"


def test_a_forced_method_that_clips_the_signal_is_flagged_and_auto_does_not_use_it():
    model, shape, x = spiky_mlp()
    sqnr, cals = sqnr_by_method(model, shape, x[:300], x[300:])
    flagged = {c["tensor"] for c in cals["entropy"].section["clipping"]}
    assert "input" in flagged and any("entropy clips" in n for n in cals["entropy"].notes)
    assert sqnr["entropy"] < sqnr["minmax"] - 10  # the flag is deserved: measured -16.9 to -23.7 dB
    assert "clipping" not in cals["minmax"].section
    assert all(cals["auto"].methods[t] != "entropy" for t in flagged)


def test_a_collapsing_candidate_is_never_scored():
    """A tensor whose energy sits in rare huge values: a range that clips them collapses it."""
    model, shape, x = spiky_mlp()
    x = x.copy()
    x[:, 0] = 0.0
    x[::50, 0] = 500.0  # 2% of samples, one entry: most of the input's energy
    graph = edgepack.load(model, input_shape=shape)
    from edgepack.calibration.auto import candidate_ranges
    from edgepack.calibration.calibrate import collect_ranges

    _, obs = collect_ranges(graph, [x[:300]], "mse")
    cands = {t: candidate_ranges(obs[t]) for t in graph.activations()}
    assert obs["input"].clipped_energy(*cands["input"]["percentile:99.9"]) > COLLAPSE_ENERGY
    scorer = GroupScorer(graph, quantize_graph(graph, {t: c["minmax"] for t, c in cands.items()}), x[:64])
    ranked, record = score_group(scorer, ["input"], obs, cands)
    assert "percentile:99.9" in record["collapsed"] and "percentile:99.9" not in ranked


def zoo_sqnr_by_method(name: str, seed: int = 0):
    """sqnr_by_method on a zoo model trained as in test_zoo_coverage (300 calibration, 200 held-out digits)."""
    from test_zoo_coverage import trained

    model, shape = trained(name, seed)
    x = zoo.digits_like(shape, 1500)
    return (*sqnr_by_method(model, shape, x[1000:1300], x[1300:1500]), model, shape)


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet", "gap_head"])
def test_auto_is_never_below_minmax_on_trained_zoo_models(name):
    sqnr, cals, model, shape = zoo_sqnr_by_method(name)
    assert sqnr["auto"] >= sqnr["minmax"] - 0.05, sqnr  # measured 0 to +2.3 dB
    section = cals["auto"].section["auto"]
    assert section["scored_on_samples"] == 256  # of the 300 calibration samples (SCORING_SAMPLES)
    assert set(cals["auto"].methods) == set(edgepack.load(model, input_shape=shape).activations())


def bias_correction_sqnr(name: str, seed: int = 0):
    """(held-out output SQNR without, with bias correction (dB), the bias_correction section) for minmax."""
    from test_zoo_coverage import trained

    model, shape = trained(name, seed)
    graph = edgepack.load(model, input_shape=shape)
    x = zoo.digits_like(shape, 1500)
    samples = load_samples(x[1000:1300], shape, input_name=graph.inputs[0])
    off = calibrate(graph, samples, "minmax")
    on = calibrate(graph, samples, "minmax", bias_correction="auto")
    held_out = x[1300:1500]
    return (quantized_output_sqnr(graph, off.qgraph, held_out), quantized_output_sqnr(graph, on.qgraph, held_out),
            on.section["bias_correction"])


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3"])
def test_bias_correction_lowers_the_error_of_depthwise_models(name):
    off, on, bc = bias_correction_sqnr(name)
    assert bc["kept"] and bc["layers_corrected"] >= 1
    assert all(r["error_db_after"] >= r["error_db_before"] for r in bc["layers"] if r["kept"])
    # measured on these held-out digits: mobilenet_v2 +0.33 (seed 0, two threads) to +4.5 dB, mobilenet_v3 +0.63
    # to +2.5 dB (seed 0, one thread: +2.2 / +1.6; was > +0.5). A correction that does nothing or hurts fails.
    assert on > off + 0.1


def test_export_defaults_to_auto_and_says_why_in_report_and_calibration_json(tmp_path, digits):
    assert ExportConfig().calibration == "auto" and ExportConfig().bias_correction == "auto"
    model, shape = zoo.build("plain_cnn")
    x = zoo.digits_like(shape, 120)
    rep = edgepack.export(model, calib=x, out=tmp_path, input_shape=shape, validate=False)
    section = rep.calibration
    assert section["method"] == "auto" and "auto" in section and "bias_correction" in section
    cal = json.loads((tmp_path / "calibration.json").read_text())
    chosen = {t["method"] for t in cal["tensors"].values()}
    assert cal["method"] == "auto" and chosen <= {"minmax", "percentile:99.9", "percentile:99.99",
                                                  "percentile:99.999", "mse", "entropy", "fixed"}
    for name, record in section["auto"]["tensors"].items():
        assert record["method"] == cal["tensors"][name]["method"] and "minmax" in record["local_error_db"]


def test_bias_correction_off_and_unknown_values():
    from edgepack.errors import ConfigError

    assert ExportConfig(bias_correction="off").bias_correction == "off"
    with pytest.raises(ConfigError, match="bias_correction"):
        ExportConfig(bias_correction="always")


def test_the_start_is_the_least_clipping_method_of_those_tied_with_the_best():
    """Scoring samples are calibration samples: an in-sample gain below noise says nothing about unseen data,
    so of the methods within noise of the best, the one clipping least starts the choice."""
    from edgepack.calibration.auto_rules import least_clipping_of_the_best

    rng = np.random.default_rng(0)
    base = rng.uniform(1.0, 2.0, (256, 1)) * 1e-3
    jitter = rng.normal(0, 2e-4, (256, 1))
    noises = {"minmax": base * 1.5, "percentile:99.99": base, "percentile:99.999": base + jitter}
    clipped = {"minmax": 0.0, "percentile:99.99": 0.02, "percentile:99.999": 0.005}
    assert least_clipping_of_the_best(noises, clipped) == "percentile:99.999"  # tied with the best, clips less
    noises["percentile:99.999"] = base * 1.3  # now beaten beyond noise (1.1 dB, every sample)
    assert least_clipping_of_the_best(noises, clipped) == "percentile:99.99"
    assert least_clipping_of_the_best({"minmax": base, "mse": base}, {"minmax": 0.0, "mse": 0.01}) == "minmax"
