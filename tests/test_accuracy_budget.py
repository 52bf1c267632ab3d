"""--accuracy-budget: the ladder of fixes (budget.py) meets a budget the first int8 graph misses, records
each step with its gain, cost and the settings that reproduce it, and exits 3 naming the layers that stop
an impossible budget. Global average pooling is written as MEAN where its own scale lowers the error."""
import json

import numpy as np
import pytest
import torch

import edgepack
from edgepack.calibration.output_error import output_sqnr_db
from edgepack.calibration.pool_form import as_mean
from edgepack.cli import main
from edgepack.ir.torch_exec import run
from edgepack.targets.tflite_file import read_tflite

from int8_runs import calibrated, run_int8

SHAPE = (1, 1, 8, 8)


@pytest.fixture(scope="module")
def coarse_mlp(digits):
    """A digits MLP whose first layer has a weight of 100 on the corner pixel, which is 0 in every digit:
    exact in float, but each row's int8 step becomes 100/127 and the real weights round to a few levels.
    Only retraining through int8 rounding (QAT, with --train) recovers it."""
    from edgepack.demo import train_classifier

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = train_classifier(model, digits[0], digits[1], epochs=3, lr=1e-2, seed=0)
    with torch.no_grad():
        model[1].weight[:, 0] = 100.0
    assert float(np.abs(digits[0][:, 0, 0, 0]).max()) == 0.0
    return model


def _export(model, digits, out, **settings):
    x_train = digits[0]
    return edgepack.export(model, calib=x_train[:256], val=digits[2][:200], train=x_train[:512], out=out,
                           input_shape=SHAPE, validate=False, **settings)


def test_the_ladder_meets_a_top1_budget_the_first_int8_graph_misses(coarse_mlp, digits, tmp_path):
    report = _export(coarse_mlp, digits, tmp_path / "budget", accuracy_budget="top1:4")
    budget = report.budget
    steps = {r["step"]: r for r in budget["steps"]}
    assert steps["start"]["measured"]["top1_points_lost"] > 4  # measured 9.5 points lost with defaults
    assert budget["met"] and budget["measured"]["top1_points_lost"] <= 4  # measured 3.0
    assert steps["qat"]["kept"] and steps["qat"]["gain"]["top1_points"] > 0
    assert steps["qat"]["cost"]["flash_bytes"] > 0 and "latency_ms" in steps["qat"]["cost_delta"]
    assert not steps["per_channel_fc"]["kept"]  # tried and dropped: it did not help
    # int16 activations cannot fix int8 weights: no layer widened alone helps the output in the simulation,
    # so the step is not even rebuilt
    assert "moves the output SQNR" in steps["int16"]["skipped"]
    assert budget["reproduce"]["settings"] == {"qat_epochs": 15}
    assert "qat_epochs = 15" in budget["reproduce"]["toml"]
    # the recorded settings, without a budget, give the same int8 model
    again = _export(coarse_mlp, digits, tmp_path / "again", **budget["reproduce"]["settings"],
                    layers=budget["reproduce"]["layers"])
    assert again.budget == {}
    for name in ("model.int8.tflite", "model.int8.onnx"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "budget" / name).read_bytes()


def test_an_impossible_budget_exits_3_naming_the_layers(coarse_mlp, digits, tmp_path, capsys):
    torch.onnx.export(coarse_mlp, (torch.zeros(SHAPE),), str(tmp_path / "m.onnx"), dynamo=False, opset_version=17)
    np.save(tmp_path / "calib.npy", digits[0][:128])
    args = ["export", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "calib.npy"), "--no-validate"]
    code = main([*args, "--out", str(tmp_path / "o"), "--accuracy-budget", "sqnr:90", "--val-limit", "50"])
    err = capsys.readouterr().err
    assert code == 3 and "accuracy budget sqnr:90 not met" in err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    stopped = [r["node"] for r in report["budget"]["stopped_by"]]
    assert stopped and all(name in err for name in stopped) and any("Gemm" in n for n in stopped)
    # ranked by what keeping each one in float gives back at the output (simulation), most first
    gains = [r["output_db_if_float"] for r in report["budget"]["stopped_by"]]
    assert gains == sorted(gains, reverse=True) and gains[0] > 1.0, gains
    assert report["budget"]["met"] is False and report["budget"]["steps"][0]["step"] == "start"
    # measured on every calibration sample, not on --val-limit's share (that is the runtimes' validation)
    assert report["budget"]["measured_on"].startswith("128 samples of the calibration samples")
    code = main([*args, "--out", str(tmp_path / "t"), "--accuracy-budget", "sqnr:90", "--budget-time", "0.001"])
    steps = json.loads((tmp_path / "t" / "report.json").read_text())["budget"]["steps"]
    assert code == 3 and all("time limit" in r["skipped"] for r in steps[1:])  # no fix starts after the limit
    capsys.readouterr()
    code = main([*args, "--out", str(tmp_path / "bad"), "--accuracy-budget", "top5:1"])
    assert code == 2 and "top1:POINTS" in capsys.readouterr().err and not (tmp_path / "bad").exists()


class SparseGap(torch.nn.Module):
    """A conv whose ReLU fires on few pixels: the global average is far narrower than the map it averages,
    so AVERAGE_POOL_2D (the map's scale) quantizes it coarsely and MEAN (its own scale) does not."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 10)
        with torch.no_grad():
            self.conv.bias -= 2.0
            self.fc.bias.zero_()  # the logits carry only what the pool passes on

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_mean_is_written_where_it_beats_average_pool(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((96, 1, 16, 16), np.float32) * 3
    graph = edgepack.load(SparseGap().eval(), input_shape=(1, 1, 16, 16))
    pools = [n.name for n in graph.nodes if n.op == "GlobalAveragePool"]
    ref = run(graph, [x[64:]])[graph.outputs[0]]
    db = {}
    for form, g in (("average_pool", graph), ("mean", as_mean(graph, pools))):
        got = run_int8(calibrated(g, x[:64]), x[64:])  # LiteRT reference kernels, TFLM, onnxruntime
        db[form] = {k: output_sqnr_db({"y": ref}, {"y": v.reshape(ref.shape)}, ["y"]) for k, v in got.items()}
    for runtime in ("litert", "tflm"):
        assert db["mean"][runtime] > db["average_pool"][runtime] + 10.0, db  # measured 33.6 vs 10.2 dB
    # the MCU profile prefers AVERAGE_POOL_2D (CMSIS-NN) but takes MEAN here by the measured error;
    # the phone profile prefers MEAN (XNNPACK)
    for target in ("stm32l4r5", "phone"):
        report = edgepack.export(SparseGap().eval(), calib=x[:64], out=tmp_path / target, input_shape=(1, 1, 16, 16),
                                 target=target, validate=False)
        (record,) = report.calibration["global_pool"]
        assert record["form"] == "mean" and record["preferred"] == ("average_pool" if target == "stm32l4r5" else "mean")
        ops = [o.op for o in read_tflite((tmp_path / target / "model.int8.tflite").read_bytes()).ops]
        assert "MEAN" in ops and "AVERAGE_POOL_2D" not in ops


@pytest.fixture(scope="module")
def outlier_mlp(digits):
    """A digits MLP whose hidden layer has one neuron always near 300 that the output never reads: its int8
    range leaves the other neurons a few levels. The output layer loses most by per-layer SQNR, but the
    output is fixed by widening the hidden layer (and its reader)."""
    from edgepack.demo import train_classifier

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model = train_classifier(model, digits[0], digits[1], epochs=3, lr=1e-2, seed=0)
    with torch.no_grad():
        model[1].bias[0], model[3].weight[:, 0] = 300.0, 0.0
    return model


def test_the_int16_step_ranks_layers_by_their_measured_effect_on_the_output(outlier_mlp, digits):
    """Each layer is widened alone (with the layers reading it: else they read an int8 copy) in the
    simulation; the groups that help the output most are taken, as few as meet the budget."""
    from edgepack.budget import worst_layers
    from edgepack.budget_measure import Simulator
    from edgepack.budget_steps import StepContext, _int16
    from edgepack.config import ExportConfig
    from edgepack.targets.profile import load_profile

    graph = edgepack.load(outlier_mlp, input_shape=SHAPE)
    x = digits[0][:256]
    qgraph, sim = calibrated(graph, x[:64]), Simulator(graph, x, None, "top1")
    hidden, last = (n.name for n in graph.nodes if n.op == "Gemm")
    assert worst_layers(graph, qgraph, x)[0]["node"] == last  # by per-layer SQNR: measured 27.0 vs 11.8 dB lost

    def step(budget):
        ctx = StepContext(ExportConfig(), graph, None, load_profile("stm32l4r5"), False, lambda: [],
                          lambda marks, ranking=False: sim.measure(qgraph, marks, ranking), budget)
        return _int16(ctx)["layers"]

    layers = step(("top1", 1.0))
    assert list(layers) == [hidden, last]  # the hidden layer first, with its reader
    before, after = sim.measure(qgraph), sim.measure(qgraph, {n: "int16" for n in layers})
    assert before.top1_lost > 2 and after.top1_lost <= 1  # measured 4.7 -> 0.0 points
    assert after.sqnr_db > before.sqnr_db + 15  # measured 17.6 -> 42.9 dB
