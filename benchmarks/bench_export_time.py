"""Export time: edgepack against the tools a user would otherwise run, in one process, interleaved repeats.

- Keras conv nets: `edgepack.export(keras_model)` against `tf.lite.TFLiteConverter` (full int8, the same
  calibration samples as representative dataset); edgepack writes four files, the converter one.
- ONNX input: `edgepack.export(model.onnx)` against onnxruntime's `quantize_static` (QDQ, per-channel,
  MinMax, the samples one at a time as its docs do) on the file after `quant_pre_process` (not timed).
- PyTorch input: `edgepack.export(nn.Module)` against `torch.onnx.export` + `quantize_static` + the
  converter on the model's Keras twin (weights copied), the three a user runs to get both files.

Validation is off (`validate=False`: the converter and quantize_static do not run the files); edgepack's
other defaults are kept (`--calibration auto`, bias correction auto, lint on). Every model is untrained
(seeded weights; BatchNorm statistics randomised for the PyTorch ones): export time does not depend on
training. Each round runs every contender of a model once, the order rotated round by round; the ratio
is of the medians. edgepack's time is split by stage (report.timing) in a second table.

    .venv/bin/python benchmarks/bench_export_time.py               # ~20 min on a busy 2-core machine
    .venv/bin/python benchmarks/bench_export_time.py --quick       # smoke run: one model of each kind, 1 round
    # what a cheaper default would cost:
    .venv/bin/python benchmarks/bench_export_time.py --calibration minmax --bias-correction off --out export_time_minmax
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # before TensorFlow is imported anywhere

import numpy as np

import common
from common import md_table, median

CALIB_SAMPLES = 300


# ---------------------------------------------------------------- the models

def keras_model(name: str):
    """(model, calibration samples NHWC): accuracy_models' nets, seeded, on digits resized for them."""
    import keras

    import accuracy_models as am

    keras.utils.set_random_seed(0)
    build = {"resnet8": am.resnet8, "mobilenet_v1_025_96": am.mobilenet_dead, "ds_cnn": am.ds_cnn}[name]
    x = am.data({"mobilenet_v1_025_96": "mobilenet_dead"}.get(name, name))[0][:CALIB_SAMPLES]
    return build(), np.ascontiguousarray(x, np.float32)


def torch_model(name: str):
    """(nn.Module, input shape NCHW, calibration samples NCHW)."""
    import torch
    from zoo import MobileNetV2Tiny, digits_like, randomise_bn

    from bench_tflite_converter import cnn32

    torch.manual_seed(0)
    build, shape = {"cnn32_dw": (cnn32, (1, 1, 32, 32)), "mobilenet_v2_64": (MobileNetV2Tiny, (1, 1, 64, 64))}[name]
    return randomise_bn(build()), shape, np.ascontiguousarray(digits_like(shape, CALIB_SAMPLES), np.float32)


KERAS = ("resnet8", "mobilenet_v1_025_96", "ds_cnn")
ONNX = ("mobilenet_v2_64",)
TORCH = ("cnn32_dw",)


# ---------------------------------------------------------------- the contenders

def edgepack_export(model, x, out: Path, timings: list, **kwargs):
    import edgepack

    def run():
        report = edgepack.export(model, calib=x, out=out, force=True, validate=False, **kwargs)
        timings.append(report.timing)
    return run


def converter(model, x_nhwc):
    from bench_tflite_converter import convert_with_tflite_converter

    return lambda: convert_with_tflite_converter(model, x_nhwc)


def ort_static(float_path: Path, x, out: Path):
    from ort_quantize import ort_quantizer

    return ort_quantizer(float_path, out, x, "minmax", 99.99)


def torch_to_onnx(module, shape, path: Path) -> None:
    import torch

    with common.quiet():
        torch.onnx.export(module, torch.zeros(shape), str(path), dynamo=False, opset_version=17)


def contenders(kind: str, name: str, work: Path, timings: list, kwargs: dict) -> dict:
    """{contender: callable} for one model; the first is edgepack, the second its baseline."""
    if kind == "keras":
        model, x = keras_model(name)
        return {"edgepack": edgepack_export(model, x, work / "ep", timings, **kwargs),
                "converter": converter(model, x)}
    module, shape, x = torch_model(name)
    if kind == "onnx":
        from onnxruntime.quantization.shape_inference import quant_pre_process

        float_path, pre = work / f"{name}.onnx", work / f"{name}.pre.onnx"
        torch_to_onnx(module, shape, float_path)
        with common.quiet():
            quant_pre_process(str(float_path), str(pre))
        return {"edgepack": edgepack_export(float_path, x, work / "ep", timings, **kwargs),
                "quantize_static": ort_static(pre, x, work / "ort.onnx")}
    from keras_models import keras_twin

    twin = keras_twin(module, shape[-1])
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    float_path = work / f"{name}.onnx"
    to_tflite = converter(twin, x_nhwc)

    def both():  # what a user runs for the two files edgepack writes from the one module
        torch_to_onnx(module, shape, float_path)
        ort_static(float_path, x, work / "ort.onnx")()
        to_tflite()
    return {"edgepack": edgepack_export(module, x, work / "ep", timings, input_shape=shape, **kwargs),
            "onnx_export+quantize_static+converter": both}


def cpu_seconds() -> float:
    """User + system seconds of this process and its finished children (edgepack's scoring pool)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_rounds(calls: dict, rounds: int) -> tuple[dict, dict]:
    """({contender: wall seconds per round}, {contender: CPU seconds per round}), order rotated per round."""
    names = list(calls)
    wall, cpu = {n: [] for n in names}, {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            c0, t0 = cpu_seconds(), time.perf_counter()
            calls[n]()
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(cpu_seconds() - c0)
    return wall, cpu


def bench_model(kind: str, name: str, rounds: int, kwargs: dict) -> dict:
    timings: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        calls = contenders(kind, name, Path(tmp), timings, kwargs)
        wall, cpu = timed_rounds(calls, rounds)
    ep, base = list(calls)
    stages = sorted({k for t in timings for k in t})
    return {"kind": kind, "baseline": base, "rounds": rounds, "wall_s": wall, "cpu_s": cpu,
            "ratio_wall": median(wall[ep]) / median(wall[base]), "ratio_cpu": median(cpu[ep]) / median(cpu[base]),
            "stages_median_s": {k: median([t.get(k, 0.0) for t in timings]) for k in stages}}


# ---------------------------------------------------------------- report

LIMITS = {"keras": 0.7, "onnx": 1.0, "torch": 1.0}  # issue 16: edgepack / baseline at most this


def tables(results: dict) -> str:
    rows = []
    for name, r in results.items():
        ep, base = median(r["wall_s"]["edgepack"]), median(r["wall_s"][r["baseline"]])
        rows.append([name, r["kind"], r["baseline"], round(ep, 1), round(base, 1), round(r["ratio_wall"], 2),
                     round(r["ratio_cpu"], 2), LIMITS[r["kind"]],
                     "yes" if r["ratio_wall"] <= LIMITS[r["kind"]] else "no"])
    main = md_table(["model", "input", "baseline", "edgepack s", "baseline s", "ratio (wall)", "ratio (CPU)",
                     "goal", "met"], rows)
    stages = sorted({k for r in results.values() for k in r["stages_median_s"]},
                    key=lambda k: (k.split(".")[0] not in STAGE_ORDER, STAGE_ORDER.index(k.split(".")[0])
                                   if k.split(".")[0] in STAGE_ORDER else 0, k))
    srows = [[name] + [round(r["stages_median_s"].get(k, 0.0), 2) for k in stages] for name, r in results.items()]
    return main + "\n\nedgepack's seconds per stage (median over rounds, report.timing):\n\n" + md_table(
        ["model"] + stages, srows)


STAGE_ORDER = ["load", "passes", "shrink", "calibrate", "fix", "emit", "prove"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one model of each kind, one round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calibration", default=None, help="edgepack's --calibration (default: its own default)")
    ap.add_argument("--workers", type=int, default=None, help="edgepack's --workers (default: its own default)")
    ap.add_argument("--bias-correction", default=None, help="edgepack's --bias-correction (default: its own)")
    ap.add_argument("--only", default=None, help="comma-separated model names")
    ap.add_argument("--out", default="export_time", help="results file stem in benchmarks/results/")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    kwargs = {k: v for k, v in (("calibration", args.calibration), ("workers", args.workers),
                                ("bias_correction", args.bias_correction)) if v is not None}
    models = [("keras", n) for n in KERAS] + [("onnx", n) for n in ONNX] + [("torch", n) for n in TORCH]
    if args.quick:
        models, args.rounds = [models[0], ("onnx", ONNX[0]), ("torch", TORCH[0])], 1
    if args.only:
        models = [m for m in models if m[1] in args.only.split(",")]
    results = {}
    for kind, name in models:  # the files are written after each model: a long run leaves what it measured
        results[name] = bench_model(kind, name, args.rounds, kwargs)
        print(name, {k: round(v, 2) for k, v in results[name].items() if k.startswith("ratio")}, flush=True)
        text = tables(results)
        data = {"machine": common.machine(), "settings": kwargs, "calib_samples": CALIB_SAMPLES, "models": results}
        md = (f"# Export time: edgepack vs the converter / quantize_static\n\n{__doc__.split(chr(10), 1)[1]}\n"
              f"Settings: {kwargs or 'edgepack defaults'}; {CALIB_SAMPLES} calibration samples; {args.rounds} "
              f"round(s).\n\n{text}\n")
        common.write_results(args.out, data, md)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
