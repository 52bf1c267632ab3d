"""Validation that scales: per-layer error summed as tensors are produced, runs sent in batches, and
`--validate fast` (repeat runs and per-layer error on a bounded set of samples)."""
import numpy as np
import pytest

import edgepack
import zoo
from edgepack.targets import isolated
from edgepack.targets.diagnose import clipping
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtime_jobs import LayerSums
from edgepack.targets.validate import FAST_SAMPLES, validate
from test_tflite_zoo import digits_like


def test_running_sums_give_the_figures_of_the_concatenated_samples():
    rng = np.random.default_rng(0)
    scale, zp = 0.02, -10
    refs = [rng.normal(0, 1.5, 300) for _ in range(5)]  # some values beyond the int8 range [-2.36, 2.74]
    gots = [r + rng.normal(0, 0.01, r.size) for r in refs]
    sums = LayerSums(scale, zp)
    for r, g in zip(refs, gots):
        sums.add(r, g)
    ref, got = np.concatenate(refs), np.concatenate(gots)
    expected = {"sqnr_db": sqnr_db(ref, got), **clipping(ref, scale, zp)}
    assert expected["clipped_fraction"] > 0.01  # the case exercises clipping
    assert sums.result() == pytest.approx(expected, rel=1e-9)


def test_runs_are_sent_in_batches_and_give_the_same_outputs(tmp_path, monkeypatch):
    model, shape = zoo.build("plain_cnn")
    x = digits_like(shape, 40)
    edgepack.export(model, calib=x[:32], out=tmp_path, input_shape=shape, validate=False)
    data = (tmp_path / "model.int8.tflite").read_bytes()
    whole, whole_raw = isolated.run_tflite(data, "litert-ref", x)
    monkeypatch.setattr(isolated, "BATCH_BYTES", x[0].nbytes * 7)  # 6 batches of 7, the last of 5
    assert len(list(isolated.batches(x))) == 6
    seen = []
    parts, raw = isolated.run_tflite(data, "litert-ref", x, progress=lambda rt, n, total: seen.append(n))
    assert np.array_equal(parts, whole) and np.array_equal(raw, whole_raw)
    assert sum(seen) == len(x)  # progress covers every sample, the last partial batch included


def test_fast_runs_the_int8_file_on_the_target_runtime_on_every_sample_and_repeats_on_a_bounded_set(tmp_path):
    model, shape = zoo.build("resnet")
    x = digits_like(shape, FAST_SAMPLES + 24)
    edgepack.export(model, calib=x[:32], out=tmp_path, input_shape=shape, validate=False)
    from edgepack.prove import reference_outputs

    ref = reference_outputs(tmp_path / "model.float.onnx", x)
    files = {k: str(tmp_path / f"model.{k.replace('_', '.')}") for k in ("int8_tflite", "int8_onnx", "float_tflite")}
    fast = validate(files, x, reference=ref, target_runtime="tflm", mode="fast")
    full = validate(files, x, reference=ref, target_runtime="tflm", mode="full")
    n = {k: v["samples"] for k, v in fast.items()}
    assert n == {"int8_tflite@tflm": len(x), "int8_onnx@onnxruntime": len(x),
                 "int8_tflite@litert-ref": FAST_SAMPLES, "float_tflite@tflm": FAST_SAMPLES,
                 "float_tflite@litert-ref": FAST_SAMPLES, "int8_onnx@onnxruntime-ref": FAST_SAMPLES}
    assert all(v["samples"] == len(x) for v in full.values())
    assert fast["int8_tflite@tflm"]["vs_litert_reference"]["max_lsb"] <= 1  # on the bounded set (FC: 1 LSB)
    for key in ("int8_tflite@tflm", "int8_onnx@onnxruntime"):  # the same runs on every sample
        assert fast[key]["sqnr_db"] == full[key]["sqnr_db"]


def test_validate_flag_takes_on_off_fast_full(tmp_path):
    from edgepack.cli import _config, build_parser
    from edgepack.config import ExportConfig
    from edgepack.errors import ConfigError

    modes = [_config(build_parser().parse_args(["export", "m.onnx", *flag])).validation
             for flag in ([], ["--validate"], ["--validate", "full"], ["--validate", "fast"], ["--no-validate"])]
    assert modes == ["full", "full", "full", "fast", None]
    (tmp_path / "c.toml").write_text('validate = "full"\n')
    assert ExportConfig.from_toml(tmp_path / "c.toml").validation == "full"
    with pytest.raises(ConfigError, match="allowed: fast, full"):
        ExportConfig(validate="quick")
    with pytest.raises(ConfigError):
        ExportConfig(validate=1)
