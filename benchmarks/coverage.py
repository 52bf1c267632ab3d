"""Coverage corpus: every keras.applications family (random weights, small input) through int8 export.

Each architecture runs in its own child process with a timeout, one at a time: `edgepack.export` with minmax
calibration on 16 random samples and validation on 8 of them, on an MCU profile (TFLite Micro and LiteRT's
reference kernels); when the MCU run fails on memory the host profile (LiteRT) is tried. Per model: the
outcome, int8 op count, TRANSPOSE count, output SQNR (int8 vs the float model) on LiteRT and on TFLM, and the
one-line reason of a failure. Random weights are enough for coverage: the question is whether edgepack takes
the architecture and whether its int8 file computes what the float one does.

`transformers` models (MobileViT, ConvNext, ResNet, Wav2Vec2 front end built from configs) are left out:
`transformers` is not a dependency of edgepack and is not installed in its venv.

    nice .venv/bin/python benchmarks/coverage.py                 # ~15-30 min on 2 shared cores
    nice .venv/bin/python benchmarks/coverage.py --only MobileNetV2 --timeout 300
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

# keras.applications constructor -> input size (the smallest each family takes without complaint).
FAMILIES = {
    "MobileNet": 64, "MobileNetV2": 64, "MobileNetV3Small": 64, "MobileNetV3Large": 64,
    "EfficientNetB0": 64, "EfficientNetV2B0": 64, "NASNetMobile": 64, "DenseNet121": 64,
    "ResNet50": 64, "ResNet50V2": 64, "ConvNeXtTiny": 64, "Xception": 71, "InceptionV3": 75,
    "VGG16": 32,
}
CALIB, VAL = 8, 4  # samples; few, since the TFLM reference kernels are slow on 100+ layer models


def run_one(name: str, size: int, target: str) -> dict:
    """Export one architecture (in this process); the row of the table."""
    import keras
    import numpy as np

    import edgepack
    from edgepack.targets.tflite_file import read_tflite

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
    x = np.random.default_rng(0).uniform(0, 1, (CALIB, size, size, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as out:
        report = edgepack.export(model, x, out, target=target, calibration="minmax", val_limit=VAL, force=True)
        counts = read_tflite(Path(report.artifacts["int8_tflite"]["path"]).read_bytes()).op_counts()
    val = report.validation or {}
    sqnr = {rt: val.get(f"int8_tflite@{rt}", {}).get("sqnr_db") for rt in ("litert-ref", "litert", "tflm")}
    return {"model": name, "input": size, "target": target, "outcome": "exported", "samples": [CALIB, VAL],
            "ops": sum(counts.values()), "transpose": counts.get("TRANSPOSE", 0),
            "sqnr_litert_db": sqnr["litert-ref"] if sqnr["litert-ref"] is not None else sqnr["litert"],
            "sqnr_tflm_db": sqnr["tflm"],
            "tflm_not_run": val.get("int8_tflite@tflm", {}).get("not_run"),
            "params": int(model.count_params())}


def child(name: str, size: int, target: str) -> None:
    import logging

    logging.disable(logging.WARNING)
    try:
        row = run_one(name, size, target)
    except Exception as exc:  # the one-line reason is the result
        row = {"model": name, "input": size, "target": target, "outcome": "failed", "samples": [CALIB, VAL],
               "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
    print("ROW " + json.dumps(row))


def run_child(name: str, size: int, target: str, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--size", str(size), "--target", target]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}
    start = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": name, "input": size, "target": target, "outcome": "timeout",
                "reason": f"no result within {timeout} s", "seconds": timeout}
    rows = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    row = json.loads(rows[-1]) if rows else {
        "model": name, "input": size, "target": target, "outcome": "crashed",
        "reason": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:300]}
    row["seconds"] = round(time.time() - start, 1)
    return row


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def write(rows: list[dict], timeout: int) -> None:
    done = {r["model"] for r in rows}
    rows = rows + [{"model": n, "input": size, "target": "-", "outcome": "not run",
                    "reason": "not run yet (re-run with --merge --only NAME)"} for n, size in FAMILIES.items()
                   if n not in done]
    ok = sum(r["outcome"] == "exported" for r in rows)
    lines = ["# Coverage corpus: keras.applications through int8 export", "",
             f"{ok}/{len(rows)} architectures export int8 ({100 * ok / max(len(rows), 1):.0f}%); of the "
             f"{sum(r['outcome'] in ('exported', 'failed') for r in rows)} runs that finished, {ok} exported. "
             "Random weights, "
             f"minmax calibration on a few uniform [0, 1) samples (`samples`: calibration, validation), SQNR is the int8 "
             "output against the float model (ONNX on onnxruntime). MCU profile stm32h7a3 (TFLite Micro + "
             "LiteRT reference kernels); `host` where the MCU run ran out of memory. "
             f"Per-model timeout {timeout} s. `transformers` models are left out (not installed).", "",
             "Read the SQNR as \"the int8 file runs and computes what the float one does\", not as accuracy: "
             "in these random-weight networks the activations vanish with depth, so the softmax output is "
             "close to uniform (0.1 per class) and 36.1 dB is the int8 step of that output (1/256 on 0.1). "
             "Exports that took longer than the timeout on this shared 2-core machine (load average ~18 "
             "during the run) are `timeout`, not failures of edgepack.", "",
             "Command: `nice .venv/bin/python benchmarks/coverage.py` (then `--merge --only NAME ...` to re-run "
             "some)", "",
             "| architecture | input | target | outcome | int8 ops | TRANSPOSE | SQNR LiteRT dB | SQNR TFLM dB "
             "| samples | seconds | reason |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reason = r.get("reason") or (f"TFLM not run: {r['tflm_not_run']}" if r.get("tflm_not_run") else "")
        lines.append(f"| {r['model']} | {r['input']} | {r['target']} | {r['outcome']} | {_fmt(r.get('ops'))} | "
                     f"{_fmt(r.get('transpose'))} | {_fmt(r.get('sqnr_litert_db'))} | {_fmt(r.get('sqnr_tflm_db'))} "
                     f"| {'/'.join(map(str, r.get('samples', [16, 8]))) if r['outcome'] != 'not run' else '-'} | {_fmt(r.get('seconds'))} "
                     f"| {reason.replace('|', '/')} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "coverage.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "coverage.json").write_text(json.dumps([r for r in rows if r["outcome"] != "not run"], indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--target", default="stm32h7a3")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--merge", action="store_true", help="keep the rows of results/coverage.json not run again")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.size, args.target)
    kept = {}
    if args.merge and (RESULTS / "coverage.json").exists():
        kept = {r["model"]: r for r in json.loads((RESULTS / "coverage.json").read_text())}
    rows = []
    for name, size in FAMILIES.items():
        if args.only and name not in args.only:
            if name in kept:
                rows.append(kept[name])
            continue
        row = run_child(name, size, "stm32h7a3", args.timeout)
        if row["outcome"] != "exported" and any(w in row.get("reason", "").lower() for w in ("arena", "memory")):
            row = run_child(name, size, "host", args.timeout)
        print(json.dumps(row), flush=True)
        rows.append(row)
        if not args.only or args.merge:
            write(rows + [kept[n] for n in FAMILIES if n in kept and n not in {r["model"] for r in rows}
                          and (not args.only or n not in args.only)], args.timeout)


if __name__ == "__main__":
    main()
