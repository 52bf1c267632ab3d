"""Coverage corpus: every keras.applications family (random weights, small input) through int8 export.

Each architecture runs in its own child process with a timeout, one at a time: `edgepack.export` with minmax
calibration on 16 random samples and validation on 8 of them, on an MCU profile (TFLite Micro and LiteRT's
reference kernels); when the MCU run fails on memory the host profile (LiteRT) is tried. Per model: the
outcome, int8 op count, TRANSPOSE count, output SQNR (int8 vs the float model) on LiteRT and on TFLM, and the
one-line reason of a failure. Random weights are enough for coverage: the question is whether edgepack takes
the architecture and whether its int8 file computes what the float one does.

Also the project's own recurrent models (coverage_own.py) and `transformers` vision/audio models built from
small configs (coverage_hf.py). `transformers` is not a dependency of edgepack: coverage_hf.py runs in a venv
that has it (--hf-python) and writes ONNX files, which edgepack takes here; without it that part is skipped
with one line.

    nice .venv/bin/python benchmarks/coverage.py --hf-python /work/venv-hf/bin/python   # ~1-2 h, 2 shared cores
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coverage_hf import HF_INPUTS  # noqa: E402
from coverage_own import OWN, OWN_INPUT, ROWS_INPUT, TRAINED  # noqa: E402

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
OWN_CALIB, OWN_VAL = 64, 32  # the recurrent models are tiny: more samples cost seconds
SQNR_FLOOR_DB = 15.0  # int8 output vs float; the unrolled GRU's worst seed measured 15.0 dB (recurrent_forms)


def _build(name: str, size: int, hf_dir: str | None):
    """(model, calibration samples, parameter count) of one corpus entry."""
    import numpy as np

    rng = np.random.default_rng(0)
    if name in OWN:
        model, shape, calib = OWN[name]()
        params = model.count_params() if hasattr(model, "count_params") else sum(p.numel() for p in model.parameters())
        x = calib if calib is not None else rng.normal(0, 1, (OWN_CALIB, *shape[1:])).astype(np.float32)
        return model, x, int(params)
    if name.startswith("hf-"):
        meta = json.loads((Path(hf_dir) / "index.json").read_text())[name]
        if "reason" in meta:
            raise RuntimeError(f"transformers -> ONNX export failed: {meta['reason']}")
        x = rng.normal(0, 1, (CALIB, *meta["input"][1:])).astype(np.float32)
        return str(Path(hf_dir) / f"{name}.onnx"), x, int(meta["params"])
    import keras

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
    return model, rng.uniform(0, 1, (CALIB, size, size, 3)).astype(np.float32), int(model.count_params())


def run_one(name: str, size: int, target: str, hf_dir: str | None = None) -> dict:
    """Export one architecture (in this process); the row of the table."""
    import edgepack
    from edgepack.targets.tflite_file import read_tflite

    model, x, params = _build(name, size, hf_dir)
    with tempfile.TemporaryDirectory() as out:
        val_limit = OWN_VAL if name in OWN else VAL
        report = edgepack.export(model, x, out, target=target, calibration="minmax", val_limit=val_limit, force=True)
        counts = read_tflite(Path(report.artifacts["int8_tflite"]["path"]).read_bytes()).op_counts()
    val = report.validation or {}
    sqnr = {rt: val.get(f"int8_tflite@{rt}", {}).get("sqnr_db") for rt in ("litert-ref", "litert", "tflm")}
    lite = sqnr["litert-ref"] if sqnr["litert-ref"] is not None else sqnr["litert"]
    low = [rt for rt, v in (("LiteRT", lite), ("TFLM", sqnr["tflm"])) if v is not None and v < SQNR_FLOOR_DB]
    return {"model": name, "target": target, "samples": [len(x), val_limit],
            "outcome": "exported" if not low else f"below {SQNR_FLOOR_DB:.0f} dB on {'/'.join(low)}",
            "ops": sum(counts.values()), "transpose": counts.get("TRANSPOSE", 0),
            "sqnr_litert_db": lite, "sqnr_tflm_db": sqnr["tflm"],
            "tflm_not_run": val.get("int8_tflite@tflm", {}).get("not_run"), "params": params}


def _input(name: str, size: int) -> str:
    if name in FAMILIES:
        return f"{size}x{size}x3"
    shape = HF_INPUTS[name] if name in HF_INPUTS else ROWS_INPUT if name in TRAINED else OWN_INPUT
    return "x".join(map(str, shape[1:]))


def child(name: str, size: int, target: str, hf_dir: str | None) -> None:
    import logging

    logging.disable(logging.WARNING)
    try:
        row = run_one(name, size, target, hf_dir)
    except Exception as exc:  # the one-line reason is the result
        row = {"model": name, "target": target, "outcome": "failed", "samples": [CALIB, VAL],
               "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
    row["input"] = _input(name, size)
    print("ROW " + json.dumps(row))


def run_child(name: str, size: int, target: str, timeout: int, hf_dir: str) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--size", str(size), "--target", target, "--hf-dir", hf_dir]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}
    start = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": name, "input": _input(name, size), "target": target, "outcome": "timeout",
                "reason": f"no result within {timeout} s", "seconds": timeout}
    rows = [line[4:] for line in done.stdout.splitlines() if line.startswith("ROW ")]
    row = json.loads(rows[-1]) if rows else {
        "model": name, "input": _input(name, size), "target": target, "outcome": "crashed",
        "reason": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1][:300]}
    row["seconds"] = round(time.time() - start, 1)
    return row


def prepare_hf(hf_python: str, hf_dir: str) -> str | None:
    """Write the transformers models as ONNX (in the venv that has transformers); None, or why not."""
    try:
        failed = subprocess.run([hf_python, "-c", "import transformers, torch"], capture_output=True).returncode
    except OSError:
        failed = True
    if failed:
        return f"`transformers` part skipped: {hf_python} cannot import transformers (give --hf-python)"
    if not (Path(hf_dir) / "index.json").exists():
        subprocess.run([hf_python, str(Path(__file__).parent / "coverage_hf.py"), "--out", hf_dir], check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    return None


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def corpus(hf: bool) -> dict[str, int]:
    """name -> keras input size (0 for the others), in table order."""
    return {**FAMILIES, **dict.fromkeys(OWN, 0), **(dict.fromkeys(HF_INPUTS, 0) if hf else {})}


def write(rows: list[dict], timeout: int, names: dict[str, int], hf_note: str | None) -> None:
    done = {r["model"] for r in rows}
    rows = rows + [{"model": n, "input": _input(n, size), "target": "-", "outcome": "not run",
                    "reason": "not run yet (re-run with --merge --only NAME)"} for n, size in names.items()
                   if n not in done]
    ok = sum(r["outcome"] == "exported" for r in rows)
    lines = ["# Coverage corpus: real architectures through int8 export", "",
             f"{ok}/{len(rows)} architectures export int8 with output SQNR >= {SQNR_FLOOR_DB:.0f} dB on every "
             f"runtime that ran them ({100 * ok / max(len(rows), 1):.0f}%). Corpus: every keras.applications "
             "family at a small input, the project's own recurrent keyword spotters and LSTM autoencoder "
             "(`coverage_own.py`), and `transformers` vision/audio models built from small configs "
             "(`coverage_hf.py`, written to ONNX in a venv that has transformers, fed to edgepack as .onnx). "
             "Random weights (seeded), minmax calibration on a few random samples (`samples`: calibration, "
             "validation; uniform [0, 1) images, N(0, 1) otherwise), except the own LSTM/GRU keyword spotters "
             "(input 8x8): briefly trained on digits rows (seeded), calibrated and validated on training rows, "
             "as a user ships them. SQNR is the int8 output against the float "
             "model (ONNX on onnxruntime). MCU profile stm32h7a3 (TFLite Micro + LiteRT reference kernels); "
             f"`host` where the MCU run ran out of memory. Per-model timeout {timeout} s."
             + (f" {hf_note}." if hf_note else ""), "",
             "Read the SQNR as \"the int8 file runs and computes what the float one does\", not as accuracy: "
             "in the random-weight keras.applications networks the activations vanish with depth, so the "
             "softmax output is close to uniform (0.1 per class) and 36.1 dB is the int8 step of that output "
             "(1/256 on 0.1). A `-` under TFLM with a reason: TFLite Micro has no kernel for an op of the file "
             "(e.g. GELU), the other runtimes ran it.", "",
             "Command: `nice .venv/bin/python benchmarks/coverage.py --hf-python /work/venv-hf/bin/python "
             "--timeout 1500` (then `--merge --only NAME ...` to re-run some)", "",
             "| architecture | input | target | outcome | int8 ops | TRANSPOSE | SQNR LiteRT dB | SQNR TFLM dB "
             "| samples | seconds | reason |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        reason = r.get("reason") or (f"TFLM not run: {r['tflm_not_run']}" if r.get("tflm_not_run") else "")
        samples = "/".join(map(str, r.get("samples", [16, 8]))) if r["outcome"] != "not run" else "-"
        lines.append(f"| {r['model']} | {r['input']} | {r['target']} | {r['outcome']} | {_fmt(r.get('ops'))} | "
                     f"{_fmt(r.get('transpose'))} | {_fmt(r.get('sqnr_litert_db'))} | {_fmt(r.get('sqnr_tflm_db'))} "
                     f"| {samples} | {_fmt(r.get('seconds'))} | {reason.replace('|', '/')} |")
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
    ap.add_argument("--hf-python", default=os.environ.get("EDGEPACK_HF_PYTHON", sys.executable),
                    help="a python that has transformers and torch (they are not edgepack dependencies)")
    ap.add_argument("--hf-dir", default=str(Path(tempfile.gettempdir()) / "edgepack_coverage_hf"))
    ap.add_argument("--rows", nargs="*", default=[], help="JSON-lines logs of earlier runs to merge in first")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.size, args.target, args.hf_dir)
    hf_note = prepare_hf(args.hf_python, args.hf_dir)
    if hf_note:
        print(hf_note, flush=True)
    names = corpus(hf_note is None)
    kept = {}
    if args.merge and (RESULTS / "coverage.json").exists():
        kept = {r["model"]: r for r in json.loads((RESULTS / "coverage.json").read_text())}
    for log in args.rows:  # e.g. the stdout of a run that another run's write overtook
        lines = [line for line in Path(log).read_text().splitlines() if line.startswith('{"model"')]
        kept.update({r["model"]: r for r in map(json.loads, lines)})
    rows = []
    for name, size in names.items():
        if args.only and name not in args.only:
            if name in kept:
                rows.append(kept[name])
            continue
        row = run_child(name, size, "stm32h7a3", args.timeout, args.hf_dir)
        if row["outcome"] != "exported" and any(w in row.get("reason", "").lower() for w in ("arena", "memory")):
            row = run_child(name, size, "host", args.timeout, args.hf_dir)
        print(json.dumps(row), flush=True)
        rows.append(row)
        write(rows + [kept[n] for n in names if n in kept and n not in {r["model"] for r in rows}],
              args.timeout, names, hf_note)
    if not any(n in (args.only or names) for n in names):  # nothing ran (e.g. --only none): merge and write
        write([kept[n] for n in names if n in kept], args.timeout, names, hf_note)


if __name__ == "__main__":
    main()
