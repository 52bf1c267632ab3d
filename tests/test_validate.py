"""`edgepack validate`, the target verdict and the report: real runtimes, real numbers."""
import json

import numpy as np
import pytest
import torch

import edgepack
import zoo
from edgepack.cli import main
from edgepack.targets.metrics import compare, sqnr_db
from test_tflite_zoo import digits_like


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_metrics_on_known_numbers():
    ref = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    assert compare(ref, ref)["sqnr_db"] == float("inf")
    noisy = ref + np.array([[0.1, -0.1, 0.1], [0.1, -0.1, 0.1]])
    m = compare(ref, noisy, labels=np.array([2, 0]))
    assert m["rmse"] == pytest.approx(0.1)
    assert m["mae"] == pytest.approx(0.1)
    assert m["sqnr_db"] == pytest.approx(10 * np.log10(15 / 0.06))
    assert m["top1_agreement"] == 1.0 and m["accuracy"] == 0.5
    assert sqnr_db([1, 1], [1, 0]) == pytest.approx(10 * np.log10(2))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every zoo model exported once with validation off (validate is what these tests exercise)."""
    out = {}
    for name in zoo.ZOO_NAMES:
        model, shape = zoo.build(name)
        d = tmp_path_factory.mktemp(name)
        x = digits_like(shape, 80)
        np.save(d / "calib.npy", x[:64])
        np.save(d / "val.npy", x[64:])
        edgepack.export(model, calib=d / "calib.npy", out=d, input_shape=shape, validate=False)
        out[name] = d
    return out


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_validate_tflm_agrees_with_litert_reference(capsys, exported, name):
    d = exported[name]
    args = ["validate", str(d / "model.int8.tflite"), str(d / "model.int8.onnx"),
            "--reference", str(d / "model.float.onnx"), "--data", str(d / "val.npy"), "--json"]
    code, out, err = _run(capsys, *args)
    assert code == 0
    report = json.loads(out)
    if name in zoo.LITERT_ONLY:  # TFLM has no kernel for one of its ops: LiteRT runs it, the report names it
        op = zoo.LITERT_ONLY[name]
        assert any(f"no {op} kernel" in n for n in report["notes"])
        assert report["validation"]["model.int8.tflite@tflm"]["missing_op"] == op
        assert report["validation"]["model.int8.tflite@litert-ref"]["cosine"] > 0.95
        assert [u["op"] for u in report["compatibility"]["unsupported"]] == [op]
        assert not report["verdict"]["fits"] and any(f"unsupported op {op} at '" in m
                                                      for m in report["verdict"]["messages"])
        assert "arena_measured_tflm" not in report["memory"]
        return
    tflm = report["validation"]["model.int8.tflite@tflm"]["vs_litert_reference"]
    model, _ = zoo.build(name)
    has_fc = any(isinstance(m, torch.nn.Linear) for m in model.modules())
    if has_fc:  # FULLY_CONNECTED: TFLM rounds twice, LiteRT once (see test_tflite_zoo)
        assert tflm["max_lsb"] <= 1
    else:
        assert tflm["bit_exact"], tflm
    for run, metrics in report["validation"].items():
        assert metrics["cosine"] > 0.95, (run, metrics)
    assert report["per_layer"] == {} or report["per_layer"]["layers"]
    assert report["memory"]["arena_estimate"] >= report["memory"]["arena_measured_tflm"]


def test_per_layer_sqnr_names_the_worst_layers(capsys, exported):
    d = exported["resnet"]
    code, out, _ = _run(capsys, "validate", str(d / "model.int8.tflite"), str(d / "model.float.tflite"),
                        "--data", str(d / "val.npy"), "--json")
    report = json.loads(out)
    layers = report["per_layer"]["layers"]
    assert len(layers) >= 8 and all(np.isfinite(r["sqnr_db"]) for r in layers[1:])
    worst = report["per_layer"]["worst"]
    assert worst[0]["sqnr_db"] == min(r["sqnr_db"] for r in layers if r["op"] not in ("INPUT",)
                                      and r["sqnr_db"] == r["sqnr_db"])


def test_a_model_that_does_not_fit_gets_a_clear_verdict(capsys, tmp_path):
    torch.manual_seed(0)
    big = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024),
                              torch.nn.ReLU(), torch.nn.Linear(1024, 10))
    path = tmp_path / "big.pt"
    torch.jit.save(torch.jit.trace(big, torch.zeros(1, 256)), str(path))
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).random((16, 256), np.float32))
    code, out, err = _run(capsys, "export", str(path), "--input-shape", "1,256", "--calib",
                          str(tmp_path / "calib.npy"), "--target", "ra6m4", "--out", str(tmp_path / "o"),
                          "--fail-on-budget")
    assert code == 3
    assert "does not fit ra6m4" in err and "flash" in err and "over by" in err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["verdict"]["fits"] is False and report["verdict"]["overflows"] == ["flash"]
    over = report["memory"]["flash_bytes"] - report["memory"]["flash_budget"]
    assert f"over by {over / 1024:.1f} KiB" in " ".join(report["verdict"]["messages"])


def test_targets_lists_every_profile_with_aliases(capsys):
    code, out, _ = _run(capsys, "targets", "--json")
    assert code == 0
    names = {p["name"]: p for p in json.loads(out)}
    assert {"stm32l4r5", "ra6m4", "stm32h7a3", "ra8d1", "esp32-s3", "phone-arm64", "host"} <= set(names)
    assert "cortex-m4" in names["stm32l4r5"]["aliases"] and "cortex-m85" in names["ra8d1"]["aliases"]


def test_unknown_target_is_one_line(capsys, exported):
    d = exported["mlp"]
    code, _, err = _run(capsys, "validate", str(d / "model.int8.tflite"), "--data", str(d / "val.npy"),
                        "--target", "cortex-m99")
    assert code == 2 and "cortex-m99" in err and "stm32l4r5" in err and len(err.strip().splitlines()) == 1


def test_phone_target_measures_litert_latency_here(capsys, exported):
    d = exported["mobilenet_v2"]
    code, out, _ = _run(capsys, "validate", str(d / "model.int8.tflite"), "--data", str(d / "val.npy"),
                        "--target", "phone-arm64", "--json")
    report = json.loads(out)
    assert code == 0 and report["latency"]["measured_here_ms"] > 0
    assert set(report["validation"]) == {"model.int8.tflite@litert", "model.int8.tflite@litert-ref",
                                         "model.int8.tflite@litert-aarch64"}  # run, or not_run and why
    arm = report["validation"]["model.int8.tflite@litert-aarch64"]
    assert ("vs_litert_x86" in arm) != ("not_run" in arm)


def test_phone_report_names_ops_xnnpack_does_not_take(capsys, exported):
    d = exported["mobilenet_v3"]
    code, out, _ = _run(capsys, "validate", str(d / "model.int8.tflite"), "--data", str(d / "val.npy"),
                        "--target", "phone-arm64", "--json")
    left = json.loads(out)["latency"]["not_taken_by_xnnpack"]
    assert code == 0 and {"HARD_SWISH"} <= {r["op"] for r in left}
    assert all(r["node"] for r in left)
    d = exported["mlp"]
    _, out, _ = _run(capsys, "validate", str(d / "model.int8.tflite"), "--data", str(d / "val.npy"),
                     "--target", "phone-arm64", "--json")
    assert json.loads(out)["latency"]["not_taken_by_xnnpack"] == []


def test_limit_cuts_labels_too_and_bare_tflite_gets_a_latency_estimate(capsys, exported, tmp_path):
    d = exported["plain_cnn"]
    x = np.load(d / "val.npy")
    np.save(tmp_path / "y.npy", np.arange(len(x)) % 10)
    code, out, err = _run(capsys, "validate", str(d / "model.int8.tflite"), "--data", str(d / "val.npy"),
                          "--labels", str(tmp_path / "y.npy"), "--limit", "5", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["validation"]["model.int8.tflite@tflm"]["samples"] == 5
    assert report["latency"]["total_ms"] > 0 and report["latency"]["target"] == "stm32l4r5"
    np.save(tmp_path / "few.npy", np.arange(3))
    code, _, err = _run(capsys, "validate", str(d / "model.int8.tflite"), "--data", str(d / "val.npy"),
                        "--labels", str(tmp_path / "few.npy"))
    assert code == 2 and "3 labels" in err
