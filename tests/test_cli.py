"""The CLI: one line and exit code 2 for every error a user can cause, no traceback."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgepack.cli import main

import zoo


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "cnn.onnx"
    model, shape = zoo.build("plain_cnn")
    torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17)
    return path


def test_missing_path(capsys, tmp_path):
    code, _, err = _run(capsys, "inspect", str(tmp_path / "nope.onnx"))
    _assert_one_line_error(code, err, "nope.onnx", "not found")


def test_truncated_onnx(capsys, tmp_path, cnn_onnx):
    bad = tmp_path / "cut.onnx"
    data = cnn_onnx.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    code, _, err = _run(capsys, "inspect", str(bad))
    _assert_one_line_error(code, err, "cut.onnx", "ONNX")


def test_text_file_named_onnx(capsys, tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a model\n")
    code, _, err = _run(capsys, "export", str(bad), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "notes.onnx")
    assert not (tmp_path / "o" / "model.float.onnx").exists()


def test_op_outside_table_names_op_node_and_supported(capsys, tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    g = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 4, 4, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="decoder/grid")
    model = helper.make_model(helper.make_graph([node], "g", [x, g], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "grid.onnx"
    onnx.save(model, str(path))
    code, _, err = _run(capsys, "inspect", str(path))
    _assert_one_line_error(code, err, "'GridSample'", "'decoder/grid'", "Conv", "Softmax")


def test_malformed_input_shape(capsys, cnn_onnx):
    code, _, err = _run(capsys, "inspect", str(cnn_onnx), "--input-shape", "1,x,3")
    _assert_one_line_error(code, err, "1,x,3")


def test_input_shape_that_does_not_fit_torchscript(capsys, tmp_path):
    model, shape = zoo.build("plain_cnn")
    path = tmp_path / "cnn.pt"
    torch.jit.save(torch.jit.trace(model, torch.zeros(shape)), str(path))
    code, _, err = _run(capsys, "inspect", str(path), "--input-shape", "1,3,16,16")
    _assert_one_line_error(code, err, "1x3x16x16")


def test_unknown_suffix(capsys, tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\0" * 16)
    code, _, err = _run(capsys, "inspect", str(path))
    _assert_one_line_error(code, err, ".bin", ".onnx")


def test_pickled_module_needs_trust(capsys, tmp_path):
    model, shape = zoo.build("mlp")
    path = tmp_path / "whole.pt"
    torch.save(model, str(path))
    code, _, err = _run(capsys, "inspect", str(path), "--input-shape", "1,64")
    _assert_one_line_error(code, err, "--trust-pickle")
    code, out, _ = _run(capsys, "inspect", str(path), "--input-shape", "1,64", "--trust-pickle", "--json")
    assert code == 0 and '"Gemm"' in out


def test_export_refuses_to_overwrite_without_force(capsys, tmp_path, cnn_onnx):
    out = tmp_path / "o"
    assert _run(capsys, "export", str(cnn_onnx), "--out", str(out))[0] == 0
    before = (out / "model.float.onnx").stat().st_mtime_ns
    code, _, err = _run(capsys, "export", str(cnn_onnx), "--out", str(out))
    _assert_one_line_error(code, err, "--force")
    assert (out / "model.float.onnx").stat().st_mtime_ns == before
    assert _run(capsys, "export", str(cnn_onnx), "--out", str(out), "--force")[0] == 0


def test_inspect_json_totals(capsys, cnn_onnx):
    import json
    code, out, _ = _run(capsys, "inspect", str(cnn_onnx), "--json")
    assert code == 0
    data = json.loads(out)
    model, _ = zoo.build("plain_cnn")
    # BatchNorm is folded into conv biases: params = conv weights + new biases + linear.
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    expected = sum(c.weight.numel() + c.out_channels for c in convs) + 32 * 4 * 10 + 10
    assert data["totals"]["params"] == expected
    assert data["totals"]["macs"] > 0


def test_console_script_exit_code_and_no_traceback(tmp_path):
    exe = Path(sys.executable).with_name("edgepack")
    proc = subprocess.run([str(exe), "inspect", str(tmp_path / "missing.onnx")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_export_with_calibration_writes_every_artifact(capsys, tmp_path, cnn_onnx):
    import json
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((20, 1, 16, 16), np.float32))
    out = tmp_path / "o"
    code, stdout, _ = _run(capsys, "export", str(cnn_onnx), "--calib", str(calib), "--out", str(out),
                           "--calibration", "percentile", "--percentile", "99.9")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["calibration.json", "model.float.onnx",
                                                     "model.float.tflite", "model.int8.onnx",
                                                     "model.int8.tflite", "report.html", "report.json"]
    cal = json.loads((out / "calibration.json").read_text())
    assert cal["method"] == "percentile" and all(t["scale"] > 0 for t in cal["tensors"].values())
    assert json.loads((out / "report.json").read_text())["calibration"]["samples"] == 20


def test_calibration_data_of_the_wrong_shape_is_refused(capsys, tmp_path, cnn_onnx):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((5, 3, 8, 8), np.float32))
    code, _, err = _run(capsys, "export", str(cnn_onnx), "--calib", str(calib), "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "3, 8, 8", "1, 16, 16")
    assert not (tmp_path / "o").exists()


def test_nan_in_calibration_data_is_refused(capsys, tmp_path, cnn_onnx):
    x = np.zeros((10, 1, 16, 16), np.float32)
    x[2, 0, 0, 0] = np.nan
    x[7, 0, 1, 1] = np.inf
    np.save(tmp_path / "c.npy", x)
    code, _, err = _run(capsys, "export", str(cnn_onnx), "--calib", str(tmp_path / "c.npy"),
                        "--out", str(tmp_path / "o"))
    _assert_one_line_error(code, err, "2 of 10")


def test_inspect_reads_tflite(capsys, tmp_path, cnn_onnx):
    import json
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((10, 1, 16, 16), np.float32))
    assert _run(capsys, "export", str(cnn_onnx), "--calib", str(calib), "--out", str(tmp_path / "o"))[0] == 0
    code, out, _ = _run(capsys, "inspect", str(tmp_path / "o" / "model.int8.tflite"), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["totals"]["op_counts"]["CONV_2D"] == 3 and data["totals"]["op_counts"]["FULLY_CONNECTED"] == 1
    assert all(r["dtype"] == "int8" and r["scale"] > 0 for r in data["nodes"])
    code, _, err = _run(capsys, "inspect", str(cnn_onnx.with_suffix(".tflite")))
    _assert_one_line_error(code, err, "not found")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage!" * 10)
    code, _, err = _run(capsys, "inspect", str(bad))
    _assert_one_line_error(code, err, "not a TFLite model")


def test_torch_export_pt2_and_torchscript_files_load(capsys, tmp_path):
    import json
    model, shape = zoo.build("resnet")
    x = torch.randn(shape)
    pt2 = tmp_path / "resnet.pt2"
    torch.export.save(torch.export.export(model, (x,)), str(pt2))
    ts = tmp_path / "resnet.pt"
    torch.jit.save(torch.jit.trace(model, x), str(ts))
    totals = []
    for path in (pt2, ts):
        code, out, err = _run(capsys, "inspect", str(path), "--input-shape", "1,1,16,16", "--json")
        assert code == 0, err
        totals.append(json.loads(out)["totals"])
    assert totals[0]["params"] == totals[1]["params"] and totals[0]["macs"] == totals[1]["macs"]
    code, out, err = _run(capsys, "inspect", str(pt2), "--json")  # the .pt2 knows its own input shape
    assert code == 0 and json.loads(out)["inputs"] and json.loads(out)["totals"]["macs"] == totals[0]["macs"]


def test_the_readme_names_every_flag_of_every_command():
    """The README's command-line reference cannot fall behind the parser."""
    from pathlib import Path

    from edgepack.cli import build_parser

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    reference = readme.split("## Command-line reference", 1)[1].split("\n## ", 1)[0]
    sub = next(a for a in build_parser()._actions if a.choices and "export" in a.choices)
    missing = {f"{name} {flag}" for name, p in sub.choices.items() for a in p._actions for flag in a.option_strings
               if flag.startswith("--") and flag != "--help" and f"`{flag}" not in reference}
    assert not missing and all(f"`{name}" in reference for name in sub.choices), sorted(missing)
