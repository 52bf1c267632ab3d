"""`validate --target phone-arm64` also runs the int8 .tflite on LiteRT's aarch64 build under qemu-user
(targets/aarch64.py, installed by tools/install_arm_runtime.sh) and reports its int8 outputs against x86
LiteRT's in LSBs; without that runtime the run is "not run" with the reason, and the rest is unchanged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgepack
from edgepack.errors import ConfigError
from edgepack.targets import aarch64
from edgepack.targets.profile import load_profile, read_profile


@pytest.fixture(scope="module")
def plain_cnn_files(tmp_path_factory):
    """A tiny zoo CNN's int8 and float .tflite (minmax, no validation at export) and 16 digits samples."""
    import zoo

    model, shape = zoo.build("plain_cnn")
    x = zoo.digits_like(shape, 16).astype(np.float32)
    out = tmp_path_factory.mktemp("arm")
    edgepack.export(model, calib=x, input_shape=shape, out=out / "m", force=True, validate=False,
                    calibration="minmax", target="phone-arm64")
    np.save(out / "x.npy", x)
    return out / "m" / "model.int8.tflite", out / "m" / "model.float.tflite", out / "x.npy"


def test_phone_profile_names_its_arch_and_other_arches_are_refused(tmp_path):
    assert load_profile("phone-arm64").arch == "aarch64" and load_profile("host").arch == ""
    mine = tmp_path / "riscv-phone.toml"
    mine.write_text(Path(load_profile("phone-arm64").path).read_text().replace('arch = "aarch64"', 'arch = "riscv64"'))
    with pytest.raises(ConfigError, match=r"riscv-phone.toml: arch 'riscv64' is not known"):
        read_profile(mine)


def test_without_the_aarch64_runtime_the_run_is_not_run_with_the_reason(plain_cnn_files, monkeypatch, tmp_path):
    int8, float_file, x = plain_cnn_files
    monkeypatch.setenv("EDGEPACK_AARCH64_ROOT", str(tmp_path / "none"))
    if aarch64._qemu() is not None:
        assert aarch64.missing() == f"no aarch64 Python in {tmp_path / 'none'}/sysroot ({aarch64.INSTALL_HINT})"
    report = edgepack.validate([int8, float_file], str(x), target="phone-arm64")
    arm = report.validation["model.int8.tflite@litert-aarch64"]
    assert "install_arm_runtime.sh" in arm["not_run"] and "accuracy" not in arm and "sqnr_db" not in arm
    assert "sqnr_db" in report.validation["model.int8.tflite@litert"]  # the x86 runs are unchanged
    assert "model.float.tflite@litert-aarch64" not in report.validation  # float: nothing to compare in LSBs


@pytest.mark.skipif(aarch64.missing() is not None, reason=f"LiteRT aarch64 not here: {aarch64.missing()}")
def test_aarch64_litert_matches_x86_litert_bit_for_bit_on_a_small_cnn(plain_cnn_files):
    """XNNPACK's aarch64 int8 kernels (a Cortex-A76 under qemu: NEON dot product) against its x86 ones: the
    same int8 outputs on the zoo's plain CNN (benchmarks/results/arm_litert.md has the whole zoo)."""
    int8, float_file, x = plain_cnn_files
    report = edgepack.validate([int8, float_file], str(x), target="phone-arm64")
    arm = report.validation["model.int8.tflite@litert-aarch64"]["vs_litert_x86"]
    assert arm["samples"] == 16 and arm["max_lsb"] == 0 and arm["identical_fraction"] == 1.0 and arm["bit_exact"]
    assert arm["litert_aarch64"] == aarch64.litert_version() != "?"
    x86 = report.validation["model.int8.tflite@litert"]
    assert report.validation["model.int8.tflite@litert-aarch64"]["sqnr_db"] == pytest.approx(x86["sqnr_db"])
