"""A model using a builtin TFLite Micro has no kernel for (the zoo's transformer: GELU) still exports for a
microcontroller target: it is validated on LiteRT, and the report names the op TFLM lacks instead of
stopping."""
import json

import numpy as np
import pytest

import edgepack
import zoo
from edgepack.cli import main

NAME = "transformer"
OP = zoo.LITERT_ONLY[NAME]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    model, shape = zoo.build(NAME)
    d = tmp_path_factory.mktemp("mcu_missing")
    x = zoo.digits_like(shape, 96)
    np.save(d / "calib.npy", x[:64])
    np.save(d / "val.npy", x[64:])
    return model, shape, d


def test_export_for_an_mcu_runs_on_litert_and_names_the_missing_op(model_and_data):
    model, shape, d = model_and_data
    report = edgepack.export(model, calib=d / "calib.npy", val=d / "val.npy", out=d / "out", input_shape=shape,
                             target="stm32l4r5")
    tflm = report.validation["int8_tflite@tflm"]
    assert tflm["missing_op"] == OP and f"unsupported op '{OP}' at node '{tflm['node']}'" in tflm["not_run"]
    # Untrained, so its logits sit close together and top-1 flips on 1-2 of 32 samples: judge by SQNR
    # (measured 42.0 dB on LiteRT and 41.9 dB on onnxruntime with per-channel FC weights).
    assert report.validation["int8_tflite@litert-ref"]["sqnr_db"] >= 30
    assert report.validation["int8_onnx@onnxruntime-ref"]["sqnr_db"] >= 30
    assert report.compatibility["unsupported"] == [
        {"op": OP, "node": tflm["node"], "reason": "not in the stm32l4r5 op resolver (tflm)"}]
    assert not report.verdict.fits and report.verdict.overflows == []
    assert f"unsupported op {OP} at '{tflm['node']}'" in report.verdict.messages[-1]
    assert report.memory.arena_measured_tflm is None and report.memory.ram_bytes == report.memory.arena_estimate > 0
    html = (d / "out" / "report.html").read_text()
    assert f"no {OP} kernel" in html and html.count(tflm["node"]) >= 2  # validation table and target section
    saved = json.loads((d / "out" / "report.json").read_text())
    assert saved["compatibility"]["unsupported"][0]["op"] == OP


def test_fail_on_budget_exits_3_naming_the_op(model_and_data, tmp_path, capsys):
    model, shape, d = model_and_data
    onnx_path = tmp_path / "m.onnx"
    edgepack.export(model, out=tmp_path / "float", input_shape=shape)  # float only: the .onnx to feed the CLI
    (tmp_path / "float" / "model.float.onnx").rename(onnx_path)
    code = main(["export", str(onnx_path), "--calib", str(d / "calib.npy"), "--out", str(tmp_path / "o"),
                 "--target", "cortex-m4", "--fail-on-budget"])
    err = capsys.readouterr().err
    assert code == 3 and f"unsupported op {OP} at '" in err.strip().splitlines()[-1]
    assert (tmp_path / "o" / "model.int8.tflite").exists()  # the artifacts are written; only the budget failed
