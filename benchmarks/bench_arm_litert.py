"""The phone target's real ARM kernels: each zoo model's int8 .tflite on the aarch64 build of LiteRT (XNNPACK,
under qemu-user) against the x86 build (XNNPACK and the reference kernels), output by output in int8 LSBs.
The aarch64 runtime comes from tools/install_arm_runtime.sh; without it the benchmark says so and stops.

    .venv/bin/python benchmarks/bench_arm_litert.py [--quick] [--samples N]

The time columns are wall seconds of one whole run (all samples, the child's start-up excluded: a warm-up
run goes first); x86 and aarch64 alternate per model. qemu's time is emulation, not a phone's.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, md_table, write_results

RUNTIMES = ("litert", "litert-ref", "litert-aarch64")


def _export(name: str, tmp: Path):
    import edgepack
    import zoo

    model, shape = zoo.build(name)
    x = zoo.digits_like(shape, 64).astype(np.float32)
    report = edgepack.export(model, calib=x, input_shape=shape, out=tmp / name, force=True, validate=False,
                             calibration="minmax", target="phone-arm64")
    return Path(report.artifacts["int8_tflite"]["path"]).read_bytes(), x


def lsb(a: np.ndarray, b: np.ndarray) -> dict:
    """How two runtimes' integer outputs differ, in LSBs."""
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return {"identical_fraction": float(np.mean(d == 0)), "max_lsb": int(d.max(initial=0)),
            "mean_lsb": float(d.mean()) if d.size else 0.0}


def _runs(data: bytes, x: np.ndarray) -> tuple[dict, dict]:
    from edgepack.targets import isolated

    raws, secs = {}, {}
    for runtime in RUNTIMES:
        isolated.run_tflite(data, runtime, x[:1])  # the child is up, the model's kernels are warm
        t0 = time.perf_counter()
        raws[runtime] = isolated.run_tflite(data, runtime, x)[1]
        secs[runtime] = time.perf_counter() - t0
    return raws, secs


def main(argv=None) -> int:
    import zoo
    from edgepack.targets import aarch64

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="three models")
    ap.add_argument("--samples", type=int, default=64)
    args = ap.parse_args(argv)
    why = aarch64.missing()
    if why:
        print(f"skipped: the aarch64 LiteRT runtime is not here: {why}")
        return 0
    names = ["plain_cnn", "mobilenet_v2", "mlp"] if args.quick else zoo.ZOO_NAMES
    rows, table = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            data, x = _export(name, Path(tmp))
            raws, secs = _runs(data, x[:args.samples])
            if raws["litert"] is None:
                rows.append({"model": name, "skipped": "float output"})
                continue
            vs_x86, vs_ref = lsb(raws["litert-aarch64"], raws["litert"]), lsb(raws["litert-aarch64"], raws["litert-ref"])
            x86_vs_ref = lsb(raws["litert"], raws["litert-ref"])
            rows.append({"model": name, "outputs": int(raws["litert"].size), "aarch64_vs_x86": vs_x86,
                         "aarch64_vs_x86_reference": vs_ref, "x86_vs_x86_reference": x86_vs_ref,
                         "seconds": secs})
            table.append([name, raws["litert"].size, f"{vs_x86['identical_fraction']:.2%}", vs_x86["max_lsb"],
                          vs_x86["mean_lsb"], f"{vs_ref['identical_fraction']:.2%}", vs_ref["max_lsb"],
                          f"{x86_vs_ref['identical_fraction']:.2%}", x86_vs_ref["max_lsb"],
                          round(secs["litert-aarch64"] / secs["litert"], 1)])
            print(table[-1], flush=True)
    data = {"machine": machine(), "samples": args.samples, "aarch64_litert": aarch64.litert_version(),
            "command": "benchmarks/bench_arm_litert.py " + " ".join(argv or sys.argv[1:]), "models": rows}
    md = ("# LiteRT aarch64 (qemu-user) vs x86: int8 outputs in LSBs\n\n"
          f"Each zoo model's int8 .tflite (minmax calibration, target phone-arm64), {args.samples} samples of "
          f"digits, raw int8 outputs compared element by element. aarch64: ai-edge-litert "
          f"{aarch64.litert_version()} (XNNPACK) under qemu-user; x86: the same version, XNNPACK (`litert`) and "
          "the reference kernels (`litert-ref`). `qemu x` = aarch64 wall time / x86 XNNPACK wall time "
          "(emulation, not a phone).\n\n"
          + md_table(["model", "outputs", "aarch64 = x86", "max LSB", "mean LSB", "aarch64 = x86 ref",
                      "max LSB vs ref", "x86 = x86 ref", "x86 max LSB vs ref", "qemu x"], table)
          + f"\n\n`{data['command'].strip()}`\n")
    write_results("arm_litert", data, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
