"""Export with validation of a 320x320 detector-like conv net: peak memory and wall time, before vs after.

The model is the project's own: a fully convolutional net (10 convs, 16-64 channels, BatchNorm + ReLU,
stride-16 features upsampled to a 1-channel sigmoid map at 1/8 resolution, 0.26 GMAC), exported from ONNX for the microcontroller target (TFLM + LiteRT
reference kernels + onnxruntime + per-layer SQNR), the case of issue 16 (a 320x320 text detector: 837 s and
12 GB). Each export runs in its own process; a sampler adds up the resident memory of that process and all
its descendants (the runtime child process included) every 50 ms, and the peak of that sum is reported.

Contenders, interleaved round by round (the machine is shared):
- ``before``: the checkout given by --before (default /work/main), its default validation;
- ``fast`` / ``full``: this checkout with ``--validate fast`` (the default) and ``--validate full``;
- ``off``: this checkout with ``--no-validate`` (what the export costs without validation).
Calibration is minmax without bias correction for all: the auto calibration's cost is not measured here.

    .venv/bin/python benchmarks/bench_validation.py [--samples 64] [--rounds 1] [--before /work/main]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import REPO, machine, md_table, median, write_results

SIDE = 320
GOAL_BYTES, GOAL_SECONDS = 2 << 30, 90.0


def detector():
    """A text-detector-like fully convolutional net: stride-4 feature map, a sigmoid score map."""
    import torch
    import torch.nn as nn

    def cbr(cin, cout, s=1):
        return [nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    torch.manual_seed(0)
    layers = (cbr(3, 16, 2) + cbr(16, 32, 2) + cbr(32, 32) + cbr(32, 64, 2) + cbr(64, 64) + cbr(64, 64, 2)
              + cbr(64, 64) + [nn.Upsample(scale_factor=2)] + cbr(64, 32) + cbr(32, 16)
              + [nn.Conv2d(16, 1, 1), nn.Sigmoid()])
    model = nn.Sequential(*layers).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # trained-looking BatchNorm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def samples(n: int) -> np.ndarray:
    """Smooth images (blurred noise) in [0, 1], NCHW."""
    rng = np.random.default_rng(0)
    coarse = rng.random((n, 3, SIDE // 16, SIDE // 16)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 16, axis=2), 16, axis=3) * 0.8 + 0.2 * rng.random(
        (n, 3, SIDE, SIDE)).astype(np.float32)


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every descendant (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def run_export(checkout: str, args: list[str]) -> dict:
    """Wall seconds and peak resident bytes (process tree) of one `edgepack export`."""
    env = dict(os.environ, PYTHONPATH=checkout, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    code = "import sys; from edgepack.cli import main; sys.exit(main())"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, "export", *args], env=env, cwd=checkout,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - t0
    sampler.join()
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"export failed ({proc.returncode}):\n{out[-3000:]}")
    return {"seconds": seconds, "peak_bytes": peak[0], "progress_lines": [
        line for line in out.splitlines() if "%" in line or "samples" in line][-8:]}


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--before", default="/work/main")
    ap.add_argument("--quick", action="store_true", help="8 samples, no results files")
    args = ap.parse_args(argv)
    n = 8 if args.quick else args.samples
    with tempfile.TemporaryDirectory() as tmp:
        model_path, data_path = Path(tmp) / "detector.onnx", Path(tmp) / "images.npy"
        torch.onnx.export(detector(), torch.zeros(1, 3, SIDE, SIDE), str(model_path), dynamo=False,
                          input_names=["image"], output_names=["score"])
        np.save(data_path, samples(n))
        # minmax calibration: the calibration stage's own cost (auto ranges, bias correction) is not what
        # this measures; "off" (no validation) shows what the rest of the export costs
        common = [str(model_path), "--calib", str(data_path), "--target", "stm32h7a3", "--force",
                  "--calibration", "minmax", "--bias-correction", "off"]
        contenders = {"before": (args.before, [*common, "--out", f"{tmp}/before"]),
                      "fast": (str(REPO), [*common, "--out", f"{tmp}/fast", "--validate", "fast"]),
                      "full": (str(REPO), [*common, "--out", f"{tmp}/full", "--validate", "full"]),
                      "off": (str(REPO), [*common, "--out", f"{tmp}/off", "--no-validate"])}
        runs: dict[str, list[dict]] = {k: [] for k in contenders}
        for r in range(args.rounds):
            names = list(contenders)
            for name in names[r % len(names):] + names[:r % len(names)]:
                print(f"round {r + 1}: {name} ...", flush=True)
                runs[name].append(run_export(*contenders[name]))
                print(f"  {runs[name][-1]['seconds']:.1f} s, {runs[name][-1]['peak_bytes'] / 2**20:.0f} MiB",
                      flush=True)
    rows, summary = [], {}
    for name, rs in runs.items():
        sec, peak = median([r["seconds"] for r in rs]), max(r["peak_bytes"] for r in rs)
        summary[name] = {"median_s": round(sec, 2), "peak_mib": round(peak / 2**20, 1),
                         "meets_goal": bool(sec < GOAL_SECONDS and peak < GOAL_BYTES)}
        rows.append([name, f"{sec:.1f}", f"{peak / 2**20:.0f}", f"{sec / median([r['seconds'] for r in runs['before']]):.2f}",
                     f"{peak / max(r['peak_bytes'] for r in runs['before']):.2f}",
                     "yes" if summary[name]["meets_goal"] else "no"])
    table = md_table(["validation", "export s (median)", "peak RSS MiB (tree)", "time vs before",
                      "memory vs before", f"< {GOAL_BYTES >> 30} GB and < {GOAL_SECONDS:.0f} s"], rows)
    print(table)
    if args.quick:
        return 0
    text = (f"# Validation that scales: a {SIDE}x{SIDE} conv net\n\nExport (ONNX in, target stm32h7a3: onnxruntime, "
            f"LiteRT reference kernels, TFLite Micro, per-layer SQNR) of `detector()` in "
            f"`benchmarks/bench_validation.py` on {n} samples (validated on the calibration samples), "
            f"{args.rounds} round(s), contenders interleaved; peak RSS is the sum over the export process and "
            f"its children (runtime child process included), sampled every 50 ms.\n\n{table}\n\n"
            f"`before` is {args.before} (its default validation); `fast` is the new default.\n\n"
            "    .venv/bin/python benchmarks/bench_validation.py --samples "
            f"{n} --rounds {args.rounds}\n")
    write_results("validation", {"machine": machine(), "samples": n, "side": SIDE, "summary": summary,
                                 "runs": runs}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
