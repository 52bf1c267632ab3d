"""What running TFLite Micro and LiteRT in a child process costs.

1. Wall time of a full `export` of the demo's digits CNN (300 calibration images, 359 validation
   images, validated on every runtime), for a microcontroller target (TFLM + LiteRT reference) and a
   phone target (LiteRT + latency measurement). Uses the `edgepack` on PYTHONPATH, so the same script
   times two checkouts (run them alternately: these machines are shared and noisy).
2. With a checkout that has edgepack/targets/isolated.py: one artifact run (359 samples) in the child
   against the same run in-process, rounds interleaved, and the child's start-up time.

    PYTHONPATH=/path/to/checkout .venv/bin/python benchmarks/bench_isolation.py [--repeats 5] [--label NAME]

Results: benchmarks/results/isolation.json (one entry per label).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
RESULTS = Path(__file__).resolve().parent / "results" / "isolation.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--label", default="this checkout")
    args = ap.parse_args(argv)

    import torch

    import edgepack
    from edgepack.demo import digits_cnn, digits_split

    torch.manual_seed(0)
    model = digits_cnn().eval()  # untrained: the runtimes' work does not depend on the weights' values
    x_train, _, x_test, y_test = digits_split()
    times: dict[str, list[float]] = {"stm32l4r5": [], "phone-arm64": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for target in times:  # interleaved: the machine's load drifts
                t = time.perf_counter()
                edgepack.export(model, calib=x_train[:300], out=Path(tmp) / target, val=x_test, val_labels=y_test,
                                input_shape=(1, 1, 8, 8), target=target, force=True)
                times[target].append(time.perf_counter() - t)
        try:
            overhead = _overhead((Path(tmp) / "stm32l4r5" / "model.int8.tflite").read_bytes(), x_test,
                                 args.repeats * 4)
        except ImportError:  # a checkout without the child process
            overhead = {}
    result = {f"export {t}": {"median_s": round(statistics.median(v), 3), "runs_s": [round(s, 3) for s in v]}
              for t, v in times.items()}
    result.update(overhead)
    print(json.dumps({args.label: result}, indent=1))
    RESULTS.parent.mkdir(exist_ok=True)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    old[args.label] = {**result, "edgepack": str(Path(edgepack.__file__).parent), "python": sys.version.split()[0]}
    RESULTS.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    return 0


def _overhead(data: bytes, x, repeats: int) -> dict:
    """Median seconds of one artifact run in the child vs in-process, and of starting the child."""
    from edgepack.targets import isolated
    from edgepack.targets.runtime_jobs import run_tflite

    out = {}
    for runtime in ("tflm", "litert-ref"):
        child, here = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            isolated.run_tflite(data, runtime, x)
            child.append(time.perf_counter() - t)
            t = time.perf_counter()
            run_tflite(data, runtime, x)
            here.append(time.perf_counter() - t)
        out[f"one {runtime} run of {len(x)} samples"] = {
            "child_median_s": round(statistics.median(child), 4),
            "in_process_median_s": round(statistics.median(here), 4)}
    starts = []
    for _ in range(repeats):
        isolated.shutdown()
        t = time.perf_counter()
        isolated.tflm_loads(data, 1 << 20)
        starts.append(time.perf_counter() - t)
    out["child start-up + first probe"] = {"median_s": round(statistics.median(starts), 4)}
    return out


if __name__ == "__main__":
    sys.exit(main())
