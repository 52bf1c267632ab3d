"""The demo is the product's front door: it must train, export, validate and write a readable report."""
import json
import re

from edgepack.demo import run_demo


def test_demo_writes_a_report_with_plots_and_a_verdict(tmp_path):
    summary, report = run_demo(tmp_path / "demo")
    out = tmp_path / "demo" / "export"
    assert {p.name for p in out.iterdir()} >= {"model.float.onnx", "model.int8.onnx", "model.float.tflite",
                                               "model.int8.tflite", "calibration.json", "report.json",
                                               "report.html"}
    data = json.loads((out / "report.json").read_text())
    assert data["verdict"]["fits"] is True and data["target"] == "stm32l4r5"
    tflm = data["validation"]["int8_tflite@tflm"]
    assert tflm["accuracy"] >= tflm["reference_accuracy"] - 0.01 and tflm["reference_accuracy"] > 0.9
    html = (out / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', html)) >= 3
    assert "fits" in html and "SQNR" in html
