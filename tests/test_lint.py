"""Quantization lint: each rule fires on a model built to have the problem, names the node and says what
to do; clean zoo models raise no warning."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

import edgepack
import zoo
from edgepack.calibration.lint import (CONCAT_RANGE_RATIO, OUTLIER_RATIO, SAMPLE_RULES, WEIGHT_SPREAD_RATIO,
                                       Finding, lint_graph)
from edgepack.errors import DataError
from edgepack.ir.torch_exec import run
from ir_build import make_graph, rand

CONV = dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
CONV1X1 = dict(CONV, pads=[0, 0, 0, 0])
STATIC_RULES = {"constant-pad", "input-normalisation", "large-maxpool", "swish-negative-lobe",
                "weight-channel-spread", "softmax-not-output"}


def only(findings, rule):
    return [f for f in findings if f.rule == rule]


def one(findings, rule) -> Finding:
    hits = only(findings, rule)
    assert len(hits) == 1, [str(f) for f in findings]
    return hits[0]


# ---- data rules -----------------------------------------------------------------------------------------
def outlier_graph():
    w = np.eye(4, dtype=np.float32).reshape(4, 4, 1, 1) + 0.1 * rand(4, 4, 1, 1, seed=1)
    return make_graph({"x": (1, 4, 8, 8)}, [("Conv", ["x", "w"], "y", CONV1X1, "mix")], {"w": w})


def test_outlier_range_names_the_layer_and_suggests_another_calibration():
    g = outlier_graph()
    x = rand(64, 4, 8, 8, seed=2)
    assert not only(lint_graph(g, x), "outlier-range")  # Gaussian data: max/p99.9 is about 1.3
    x[3, 1, 2, 2] = 200.0  # one activation in 16k, 60x the typical magnitude
    f = next(f for f in lint_graph(g, x) if f.rule == "outlier-range" and f.tensor == "y")
    assert f.severity == "warn" and f.node == "mix" and f.value > OUTLIER_RATIO
    assert "--calibration percentile" in f.suggestion and "--calibration mse" in f.suggestion
    assert "of the 256 int8 codes" in f.message


def test_concat_of_mismatched_ranges_needs_samples_and_names_the_narrow_input():
    g = make_graph({"x": (1, 2, 6, 6)},
                   [("Conv", ["x", "wa"], "a", CONV, "wide"), ("Conv", ["x", "wb"], "b", CONV, "narrow"),
                    ("Concat", ["a", "b"], "y", dict(axis=1), "cat")],
                   {"wa": rand(3, 2, 3, 3, seed=1), "wb": rand(3, 2, 3, 3, seed=2, scale=0.02)})
    static = lint_graph(g)
    assert not only(static, "concat-range-mismatch")
    skipped = one(static, "needs-samples")
    assert all(rule in skipped.message for rule in SAMPLE_RULES)
    f = one(lint_graph(g, rand(32, 2, 6, 6, seed=3)), "concat-range-mismatch")
    assert f.node == "cat" and f.tensor == "b" and f.value > CONCAT_RANGE_RATIO
    assert "higher precision" in f.suggestion and "'b'" in f.message
    assert not only(lint_graph(g, rand(32, 2, 6, 6, seed=3)), "needs-samples")


# ---- static rules ---------------------------------------------------------------------------------------
def pad_graph(value):
    return make_graph({"x": (1, 2, 6, 6)},
                      [("Pad", ["x"], "p", dict(pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant", value=value), "pad"),
                       ("MaxPool", ["p"], "y", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[0, 0, 0, 0]))])


def test_constant_pad_with_large_value_warns_and_suggests_folding_into_the_pool():
    f = one(lint_graph(pad_graph(-1e4)), "constant-pad")
    assert f.severity == "warn" and f.node == "pad" and f.value == -1e4
    assert "MaxPool's pads" in f.suggestion
    f = one(lint_graph(pad_graph(-1e4), rand(8, 2, 6, 6)), "constant-pad")
    assert f.severity == "warn" and "widens the observed range" in f.message
    # a pad value inside the data's own range stretches nothing: info only
    assert one(lint_graph(pad_graph(0.5), rand(8, 2, 6, 6)), "constant-pad").severity == "info"
    assert not only(lint_graph(pad_graph(0.0)), "constant-pad")


class Normalised(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.conv((x - self.mean) / self.std)


def test_normalisation_on_the_input_is_flagged_with_the_whole_chain():
    g = edgepack.load(Normalised().eval(), input_shape=(1, 3, 8, 8))
    f = one(lint_graph(g), "input-normalisation")
    first = g.consumers(g.inputs[0])[0]
    assert f.node == first.name and first.op == "Sub" and f.tensor == g.inputs[0] and f.value == 2
    assert "Div" in f.message and "--mean/--std" in f.suggestion and "first Conv" in f.suggestion


def test_batchnorm_at_the_input_is_flagged_folded_or_not():
    bn = {"g": np.ones(2, np.float32), "b": np.zeros(2, np.float32), "m": np.full(2, 0.5, np.float32),
          "v": np.full(2, 0.1, np.float32), "w": rand(3, 2, 3, 3)}
    g = make_graph({"x": (1, 2, 6, 6)}, [("BatchNormalization", ["x", "g", "b", "m", "v"], "n", {}, "in_bn"),
                                         ("Conv", ["n", "w"], "y", CONV)], bn)
    assert one(lint_graph(g), "input-normalisation").node == "in_bn"
    # before a padded conv load() lowers it to Mul + Add (the Add cannot fold: the padding would see it)
    model = nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3, padding=1)).eval()
    lowered = edgepack.load(model, input_shape=(1, 2, 6, 6))
    f = one(lint_graph(lowered), "input-normalisation")
    assert "Mul" in f.message and "Add" in f.message
    # before an unpadded conv the cleanup folds it into the conv: nothing left to flag
    folded = edgepack.load(nn.Sequential(nn.BatchNorm2d(2), nn.Conv2d(2, 3, 3)).eval(), input_shape=(1, 2, 6, 6))
    assert [n.op for n in folded.nodes] == ["Conv"] and not only(lint_graph(folded), "input-normalisation")


def test_large_maxpool_suggests_an_exact_cascade_of_3x3_pools():
    pool = dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    g = make_graph({"x": (1, 2, 9, 9)}, [("MaxPool", ["x"], "y", pool, "spp")])
    f = one(lint_graph(g), "large-maxpool")
    assert f.severity == "warn" and f.node == "spp" and f.value == 25
    assert "2 chained 3x3 stride-1 max pools" in f.suggestion
    # the suggestion is exact: two 3x3 pools (padding 1) equal the 5x5 pool
    small = dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    cascade = make_graph({"x": (1, 2, 9, 9)}, [("MaxPool", ["x"], "m", small), ("MaxPool", ["m"], "y", small)])
    x = rand(1, 2, 9, 9, seed=4)
    np.testing.assert_array_equal(run(cascade, [x])["y"], run(g, [x])["y"])
    assert not only(lint_graph(cascade), "large-maxpool")


def test_silu_and_hardswish_are_info_with_the_observed_range():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.SiLU(), nn.Conv2d(4, 4, 3), nn.Hardswish()).eval()
    g = edgepack.load(model, input_shape=(1, 1, 8, 8))
    static = only(lint_graph(g), "swish-negative-lobe")
    assert [f.node for f in static] == [n.name for n in g.nodes if n.op in ("Mul", "HardSwish")]
    assert [f.value for f in static] == [-0.2785, -0.375] and all(f.severity == "info" for f in static)
    found = only(lint_graph(g, rand(16, 1, 8, 8, seed=5)), "swish-negative-lobe")
    silu, hswish = found
    assert "SiLU" in silu.message and "observed range" in silu.message
    lo = run(g, [rand(16, 1, 8, 8, seed=5)], keep="all")[silu.tensor].min()
    assert -0.2785 <= lo < 0 and f"[{lo:.3g}," in silu.message and 0 < silu.value < 256


def test_weight_channel_spread_is_a_warning_only_for_per_tensor_weights():
    w = rand(6, 5, seed=6) * np.logspace(-2, 1, 6, dtype=np.float32)[:, None]
    g = make_graph({"x": (1, 5)}, [("Gemm", ["x", "w"], "y", {}, "fc")], {"w": w})
    f = one(lint_graph(g), "weight-channel-spread")
    assert f.severity == "warn" and f.node == "fc" and f.tensor == "w" and f.value > WEIGHT_SPREAD_RATIO
    assert "--equalize" in f.suggestion and "per-channel" in f.suggestion
    assert one(lint_graph(g, per_channel_gemm=True), "weight-channel-spread").severity == "info"
    conv = make_graph({"x": (1, 2, 6, 6)}, [("Conv", ["x", "w"], "y", CONV, "conv")],
                      {"w": rand(4, 2, 3, 3) * np.float32([1e-3, 1, 1, 1]).reshape(4, 1, 1, 1)})
    assert one(lint_graph(conv), "weight-channel-spread").severity == "info"  # per-channel by default
    assert one(lint_graph(conv, per_channel_conv=False), "weight-channel-spread").severity == "warn"
    even = make_graph({"x": (1, 5)}, [("Gemm", ["x", "w"], "y", {})], {"w": rand(6, 5, seed=6)})
    assert not only(lint_graph(even), "weight-channel-spread")


def test_softmax_is_flagged_only_when_layers_follow_it():
    inner = make_graph({"x": (1, 4)}, [("Softmax", ["x"], "p", dict(axis=1), "sm"),
                                       ("Gemm", ["p", "w"], "y", {})], {"w": rand(3, 4)})
    f = one(lint_graph(inner), "softmax-not-output")
    assert f.node == "sm" and f.severity == "info" and "1/256" in f.message
    last = make_graph({"x": (1, 4)}, [("Softmax", ["x"], "p", dict(axis=1)),
                                      ("Reshape", ["p"], "y", dict(shape=[1, 2, 2]))])
    assert not only(lint_graph(last), "softmax-not-output")


# ---- clean models, inputs, output ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet", "mobilenet_v3", "squeezenet"])
def test_clean_zoo_models_raise_no_static_warning(name):
    g = zoo.loaded(name)
    findings = lint_graph(g)
    assert {f.rule for f in findings} <= STATIC_RULES | {"needs-samples"}
    assert [str(f) for f in findings if f.severity == "warn"] == []


def test_resnet_with_random_inputs_raises_no_warning():
    g = zoo.loaded("resnet")
    x = rand(64, *g.tensors[g.inputs[0]].shape[1:], seed=7)
    assert [str(f) for f in lint_graph(g, x) if f.severity == "warn"] == []


def test_samples_must_fit_the_input():
    g = outlier_graph()
    with pytest.raises(DataError, match=r"do not fit the model input 'x'"):
        lint_graph(g, rand(4, 3, 8, 8))
    bad = rand(2, 4, 8, 8)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        lint_graph(g, bad)
    assert lint_graph(g, rand(4, 8, 8)) is not None  # one sample without batch dim is accepted


def test_findings_serialise_to_json_and_one_line():
    f = one(lint_graph(pad_graph(-1e4)), "constant-pad")
    data = json.loads(json.dumps(f.to_json()))
    assert data == {"rule": "constant-pad", "severity": "warn", "node": "pad", "tensor": "x",
                    "message": f.message, "suggestion": f.suggestion, "value": -1e4}
    assert str(f).startswith("warn: constant-pad [pad]: ") and "\n" not in str(f)


def test_lint_cli_names_the_node_and_the_fix(capsys, tmp_path):
    import json

    from edgepack.cli import main

    class Normalised(torch.nn.Module):  # preprocessing inside the model + a 5x5 max pool
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.pool = torch.nn.MaxPool2d(5, 1, 2)

        def forward(self, x):
            return self.pool(self.conv((x - 0.5) / 0.25))

    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.trace(Normalised().eval(), torch.zeros(1, 1, 8, 8)), str(path))
    code = main(["lint", str(path), "--input-shape", "1,1,8,8", "--json"])
    findings = json.loads(capsys.readouterr().out)
    rules = {f["rule"]: f for f in findings}
    assert code == 0 and {"input-normalisation", "large-maxpool", "needs-samples"} <= set(rules)
    assert "--mean/--std" in rules["input-normalisation"]["suggestion"]
    assert main(["lint", str(path), "--input-shape", "1,1,8,8", "--fail-on-warn"]) == 1
    assert "large-maxpool" in capsys.readouterr().out
