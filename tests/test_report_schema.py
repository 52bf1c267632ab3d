"""report.json from real runs (an MCU export, a phone export, `edgepack validate`) matches report.schema.json,
and the schema checker rejects what it must."""
import json

import numpy as np
import pytest
import torch

import edgepack
from edgepack.cli import main
from edgepack.report import Report
from edgepack.report_schema import report_schema, schema_errors
from edgepack.report_sections import TYPED_SECTIONS, Latency, Memory, Verdict


def _small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 3)).eval()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("schema")
    x = np.random.default_rng(0).standard_normal((40, 1, 8, 8)).astype("float32")
    np.save(d / "calib.npy", x[:32])
    np.save(d / "val.npy", x[32:])
    out = {}
    for target in ("stm32l4r5", "phone-arm64"):
        edgepack.export(_small_model(), calib=d / "calib.npy", out=d / target, input_shape=(1, 1, 8, 8),
                        target=target, val=d / "val.npy")
        out[target] = json.loads((d / target / "report.json").read_text())
    return out, d


def test_export_reports_match_the_schema(reports):
    by_target, _ = reports
    for target, report in by_target.items():
        assert schema_errors(report) == [], target
        assert report["verdict"]["target"] == target and report["latency"]["cost_model"] in ("fitted", "derived", "rough")
    assert "arena_measured_tflm" in by_target["stm32l4r5"]["memory"]  # the optional keys are exercised
    assert "measured_here_ms" in by_target["phone-arm64"]["latency"]
    assert "vs_litert_reference" in by_target["stm32l4r5"]["validation"]["int8_tflite@tflm"]


def test_export_reports_time_every_stage(reports):
    timing = reports[0]["stm32l4r5"]["timing"]
    stages = ["load", "passes", "shrink", "calibrate", "fix", "emit", "prove"]
    parts = {"calibrate.pool_form", "calibrate.fc_weights", "calibrate.ranges", "calibrate.lint"}
    assert set(stages) | parts == set(timing)
    assert all(v >= 0 for v in timing.values())
    # the parts lie inside their stage; validation (prove) runs the files on three runtimes: never free
    assert sum(timing[p] for p in parts) <= timing["calibrate"] + 4e-3
    assert timing["prove"] > 0


def test_validate_report_matches_the_schema(reports, capsys):
    _, d = reports
    m = d / "stm32l4r5"
    capsys.readouterr()
    code = main(["validate", str(m / "model.int8.tflite"), str(m / "model.int8.onnx"), "--reference",
                 str(m / "model.float.onnx"), "--data", str(d / "val.npy"), "--target", "stm32l4r5", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert schema_errors(report) == []
    assert set(report["validation"]) == {"model.int8.onnx@onnxruntime", "model.int8.onnx@onnxruntime-ref", "model.int8.tflite@litert-ref",
                                         "model.int8.tflite@tflm"}


def test_an_empty_report_matches_the_schema():
    assert schema_errors(json.loads(Report(model="m").to_json())) == []


def test_the_schema_names_every_report_field():
    assert set(report_schema()["required"]) == set(Report.__dataclass_fields__)
    assert set(report_schema()["properties"]) == set(Report.__dataclass_fields__)


def test_checker_rejects_wrong_type_missing_key_unknown_key(reports):
    good = reports[0]["stm32l4r5"]

    def broken(edit):
        r = json.loads(json.dumps(good))
        edit(r)
        return schema_errors(r)

    assert broken(lambda r: r["memory"].update(flash_bytes="12 KiB")) == \
        ["report.memory: matches none of 2 shapes (report.memory: 7 keys, at most 0 allowed; "
         "report.memory.flash_bytes: str \"12 KiB\" is not integer)"]
    assert broken(lambda r: r["verdict"].update(fits=1))[0].endswith("report.verdict.fits: int 1 is not boolean)")
    assert broken(lambda r: r["artifacts"]["int8_tflite"].pop("bytes")) == \
        ["report.artifacts.int8_tflite: missing key 'bytes'"]
    assert broken(lambda r: r.pop("notes")) == ["report: missing key 'notes'"]
    assert broken(lambda r: r["validation"]["int8_onnx@onnxruntime"].update(sqnr=3.0)) == \
        ["report.validation.int8_onnx@onnxruntime: unknown key 'sqnr' (allowed: " + ", ".join(sorted(
            report_schema()["properties"]["validation"]["additionalProperties"]["properties"])) + ")"]
    assert broken(lambda r: r["latency"].update(cost_model="guessed"))[0].endswith(
        "report.latency.cost_model: 'guessed' is not one of ['fitted', 'derived', 'rough'])")
    assert broken(lambda r: r["notes"].append(3)) == ["report.notes[%d]: int 3 is not string" % len(good["notes"])]


@pytest.mark.parametrize("section", [
    Verdict(fits=False, overflows=["flash"], messages=["flash: 300.0 KiB does not fit in 256.0 KiB"], target="m4"),
    Memory(flash_bytes=9000, flash_budget=2**20, ram_bytes=3000, ram_budget=2**18, arena_estimate=3100,
           arena_lower_bound=2900, arena_measured_tflm=3000),
    Latency(target="m4", total_ms=1.5, cost_model="fitted", per_op_type_ms={"CONV_2D": 1.5}),
    Latency(target="phone", total_ms=0.2, cost_model="rough", per_op_type_ms={}, measured_here_ms=0.1,
            not_taken_by_xnnpack=[{"op": "GATHER"}]),
])
def test_each_typed_section_round_trips_to_the_schema(section):
    name = next(n for n, cls in TYPED_SECTIONS.items() if isinstance(section, cls))
    data = json.loads(json.dumps(section.to_json()))
    assert schema_errors(data, report_schema()["properties"][name], name) == []
    assert type(section)(**data) == section  # no key lost or renamed on the way to JSON
    assert None not in data.values()  # an unset optional key is left out, not written as null
    assert json.loads(Report(model="m", **{name: section}).to_json())[name] == data


def test_typed_sections_unset_are_empty_objects_and_break_the_schema_when_wrong():
    assert {json.loads(Report(model="m").to_json())[n] == {} for n in TYPED_SECTIONS} == {True}
    wrong = Verdict(fits=1, overflows=[], messages=[], target="m4").to_json()
    assert schema_errors(wrong, report_schema()["properties"]["verdict"], "verdict")[0].endswith(
        "verdict.fits: int 1 is not boolean)")
