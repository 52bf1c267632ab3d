"""Per-layer settings (config `layers`): resolution node > op type > global, from Python, TOML and the CLI,
refused when unknown; a per-node setting fixes a low-SQNR layer, measured on LiteRT by the report."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import edgepack
from edgepack.cli import build_parser, main
from edgepack.config import ExportConfig
from edgepack.errors import ConfigError

import zoo


class OutlierNet(nn.Module):
    """conv1's second channel fires (x50) only on an all-bright 3x3 patch: one bright calibration sample
    stretches conv1's minmax range and every ordinary activation loses resolution."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 4, 1)
        self.fc = nn.Linear(4 * 8 * 8, 10)
        with torch.no_grad():
            self.conv1.weight[0] = torch.randn(1, 3, 3) * 0.3
            self.conv1.bias[0] = 0.5
            self.conv1.weight[1] = 50.0
            self.conv1.bias[1] = -50.0 * 8

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


@pytest.fixture(scope="module")
def outlier_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("outlier")
    rng = np.random.default_rng(0)
    calib = rng.random((64, 1, 8, 8), np.float32)
    calib[0] = 1.0  # the one bright sample
    np.save(d / "calib.npy", calib)
    np.save(d / "val.npy", rng.random((32, 1, 8, 8), np.float32))
    torch.onnx.export(OutlierNet().eval(), (torch.zeros(1, 1, 8, 8),), str(d / "net.onnx"), dynamo=False,
                      opset_version=17)
    return d


def _conv1_row(report):
    return next(r for r in report.per_layer["layers"] if r["op"] == "CONV_2D")


def test_a_per_node_setting_raises_that_layers_sqnr(outlier_case, capsys):
    d = outlier_case
    before = edgepack.export(d / "net.onnx", calib=d / "calib.npy", val=d / "val.npy", out=d / "minmax")
    row = _conv1_row(before)
    assert row["sqnr_db"] < 25  # minmax on conv1: the low layer the report points at
    # The name the report's row shows is the key; on the CLI, as NAME:KEY=VALUE.
    code = main(["export", str(d / "net.onnx"), "--calib", str(d / "calib.npy"), "--val", str(d / "val.npy"),
                 "--out", str(d / "fixed"), "--layer", f"{row['tensor']}:calibration=percentile",
                 "--layer", f"{row['tensor']}:percentile=99"])
    assert code == 0, capsys.readouterr().err
    import json

    after = json.loads((d / "fixed" / "report.json").read_text())
    fixed = next(r for r in after["per_layer"]["layers"] if r["tensor"] == row["tensor"])
    assert fixed["sqnr_db"] > row["sqnr_db"] + 10, (row["sqnr_db"], fixed["sqnr_db"])
    node = edgepack.load(d / "net.onnx").producer(row["tensor"]).name
    assert after["calibration"]["layers"] == {node: {"calibration": "percentile", "percentile": 99.0}}
    # The other layers keep the global method: the input's row is unchanged.
    assert after["per_layer"]["layers"][0]["sqnr_db"] == pytest.approx(before.per_layer["layers"][0]["sqnr_db"])


def test_resolution_node_over_op_type_over_global():
    cfg = ExportConfig(calibration="mse", layers={"op:Conv": {"calibration": "percentile", "percentile": 99.5},
                                                  "c2": {"calibration": "minmax", "per_channel": "false"}})
    assert cfg.layer("c1", "Conv").calibration == "percentile" and cfg.layer("c1", "Conv").percentile == 99.5
    assert cfg.layer("c2", "Conv").calibration == "minmax" and cfg.layer("c2", "Conv").per_channel is False
    assert cfg.layer("c2", "Conv").percentile == 99.5  # not set on the node: the op type's
    assert cfg.layer("fc", "Gemm").calibration == "mse" and cfg.layer("fc", "Gemm").per_channel is None


@pytest.mark.parametrize("layers, needles", [
    ({"c1": {"precision": "int4"}}, ["'int4'", "'c1'", "unknown", "allowed: int8, int16, float"]),
    ({"c1": {"method": "mse"}}, ["unknown key 'method'", "calibration, percentile, per_channel"]),
    ({"op:Cnv": {"prune": False}}, ["'Cnv'", "Conv"]),
    ({"c1": {"calibration": "best"}}, ["'best'", "minmax"]),
    ({"c1": {"percentile": 20}}, ["percentile", "(50, 100]"]),
    ({"c1": {"per_channel": "maybe"}}, ["'maybe'", "true or false"]),
    (["c1=percentile"], ["NAME:KEY=VALUE"]),
])
def test_unknown_or_unsupported_settings_are_refused(layers, needles):
    with pytest.raises(ConfigError) as exc:
        ExportConfig(layers=layers)
    for needle in needles:
        assert needle in str(exc.value), str(exc.value)
    assert "\n" not in str(exc.value)


def test_a_node_that_is_not_in_the_model_is_one_line_with_close_matches(outlier_case, capsys):
    d = outlier_case
    code = main(["export", str(d / "net.onnx"), "--calib", str(d / "calib.npy"), "--out", str(d / "bad"),
                 "--no-validate", "--layer", "/conv1/Con:calibration=mse"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "'/conv1/Con'" in err and "close matches: /conv1/Conv" in err
    assert not (d / "bad").exists()


def test_toml_layers_and_cli_flags_merge_key_by_key(tmp_path):
    from edgepack.cli import _config

    (tmp_path / "c.toml").write_text('calibration = "mse"\n[layers."op:Gemm"]\nper_channel = true\n'
                                     '[layers."conv1"]\ncalibration = "percentile"\npercentile = 99.9\n')
    args = build_parser().parse_args(["export", "m.onnx", "--config", str(tmp_path / "c.toml"),
                                      "--layer", "conv1:percentile=99", "--layer", "op:Conv:prune=false"])
    cfg = _config(args)
    assert cfg.calibration == "mse"
    assert cfg.layers["conv1"].given() == {"calibration": "percentile", "percentile": 99.0}
    assert cfg.layers["op:Gemm"].per_channel is True and cfg.layers["op:Conv"].prune is False


def test_per_channel_settings_reach_the_weights():
    from edgepack.calibration import calibrate_graph, load_samples
    from edgepack.export_stages import layer_rules

    model, shape = zoo.build("plain_cnn")
    g = edgepack.load(model, input_shape=shape)
    conv = next(n for n in g.nodes if n.op == "Conv")
    fc = next(n for n in g.nodes if n.op == "Gemm")
    cfg = ExportConfig(layers={conv.name: {"per_channel": False}, "op:Gemm": {"per_channel": True}})
    _, rules = layer_rules(g, cfg, frozenset())
    q, _ = calibrate_graph(g, load_samples(zoo.digits_like(shape, 8), shape), rules=rules)
    assert q.tensors[conv.inputs[1]].quant.axis is None  # per-tensor on that node only
    assert all(q.tensors[n.inputs[1]].quant.axis == 0 for n in q.nodes if n.op == "Conv" and n.name != conv.name)
    assert q.tensors[fc.inputs[1]].quant.axis == 0 and len(q.tensors[fc.inputs[1]].quant.scale) == 10


def test_prune_false_keeps_that_layers_channels():
    from edgepack.exporter.passes import run_passes
    from edgepack.pipeline import build_pipeline, stage

    model, shape = zoo.build("plain_cnn")
    g = edgepack.load(model, input_shape=shape)
    convs = [n.name for n in g.nodes if n.op == "Conv"]
    out = {}
    for tag, layers in (("all", {}), ("kept", {convs[1]: {"prune": False}})):
        cfg = ExportConfig(prune=0.5, layers=layers)
        pruned = run_passes(g, stage(build_pipeline(cfg), "shrink"))
        out[tag] = {n.name: pruned.tensors[n.inputs[1]].shape[0] for n in pruned.nodes if n.op == "Conv"}
    assert out["all"][convs[1]] < g.tensors[g.node(convs[1]).inputs[1]].shape[0]
    assert out["kept"][convs[1]] == g.tensors[g.node(convs[1]).inputs[1]].shape[0]
    assert out["kept"][convs[2]] == out["all"][convs[2]]  # the others are still pruned
