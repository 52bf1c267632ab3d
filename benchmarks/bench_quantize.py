"""Post-training int8: edgepack versus onnxruntime.quantization.quantize_static, side by side in one run.

For CNNs trained on scikit-learn digits, per calibration method: top-1 accuracy on held-out digits (float,
edgepack int8, ORT int8) and the wall time of edgepack's load+calibrate+quantize+write versus ORT's
quantize_static (interleaved repeats, median of the paired ratios); then onnxruntime batch-1 latency of the
float and int8 files and the Conv/Gemm nodes ORT's optimizer leaves in float.

    .venv/bin/python benchmarks/bench_quantize.py            # a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_quantize.py --quick    # smoke run: small models, few repeats
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import common  # noqa: F401  (puts the checkout and tests/ on sys.path)
from common import interleaved, median, quiet
from ort_quantize import METHODS, latency, onnx_accuracy, optimized_op_counts, ort_quantizer

CALIB_SAMPLES = 300


def wide_cnn32():
    """A wider plain CNN for 32x32 digits (~38M MACs), so that latency is more than call overhead."""
    import torch.nn as nn
    from zoo import cbr

    return nn.Sequential(cbr(1, 32), cbr(32, 32), cbr(32, 64, s=2), cbr(64, 64), cbr(64, 128, s=2),
                         cbr(128, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def model_specs(quick: bool):
    """(name, builder, input size, epochs, lr)."""
    import zoo

    specs = [("mobilenet_v2", lambda: zoo.build("mobilenet_v2")[0], 8, 8, 5e-3),
             ("resnet", lambda: zoo.build("resnet")[0], 8, 8, 5e-3)]
    if not quick:
        specs.append(("wide_cnn32", wide_cnn32, 32, 4, 2e-3))
    return specs


# ---------------------------------------------------------------- edgepack contenders

def edgepack_quantizer(float_path, shape, x_calib, method: str, out_path: Path, percentile: float,
                       activations: str = "uint8", torch_threads: int | None = None):
    """A callable doing what quantize_static does, with the steps edgepack.export runs for its int8 ONNX:
    load the float file (passes included), calibrate, quantize, write the QDQ file. ``torch_threads``
    overrides torch's intra-op thread count (edgepack calibrates with torch) for the call."""
    import torch

    import edgepack
    from edgepack.calibration import calibrate_graph, load_samples
    from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq

    opts = {"percentile": percentile} if method == "percentile" else {}

    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(torch_threads or before)
        try:
            graph = edgepack.load(float_path, input_shape=shape)
            samples = load_samples(x_calib, shape, input_name=graph.inputs[0])
            qgraph, _ = calibrate_graph(graph, samples, method, **opts)
            out_path.write_bytes(to_onnx_qdq(qgraph, activations=activations).SerializeToString())
        finally:
            torch.set_num_threads(before)
    return run


def full_export(float_path, shape, x_calib, method: str, out: Path):
    """The public one-call export (every artifact edgepack writes, validation off): context, not a contender."""
    import edgepack

    extra = {"validate": False} if "validate" in edgepack.ExportConfig.keys() else {}

    def run():
        edgepack.export(float_path, calib=x_calib, out=out, input_shape=shape, calibration=method, force=True,
                        **extra)
    return run


# ---------------------------------------------------------------- one model

def bench_model(name, build, size, epochs, lr, data, work: Path, rounds: int, lat_rounds: int) -> dict:
    import torch
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import edgepack
    from edgepack.exporter.emit_onnx import to_onnx

    x_tr, y_tr, x_te, y_te = data
    t0 = time.perf_counter()
    model = common.train(build(), x_tr, y_tr, epochs=epochs, lr=lr)
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        torch_acc = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    shape = (1, 1, size, size)
    x_cal = np.ascontiguousarray(x_tr[:CALIB_SAMPLES])
    # Both tools start from the same float ONNX file (edgepack's, BatchNorm folded) and end with an
    # int8 ONNX file on disk.
    work.mkdir(parents=True, exist_ok=True)
    float_path = work / "model.float.onnx"
    float_path.write_bytes(to_onnx(edgepack.load(model, input_shape=shape)).SerializeToString())
    pre_path = work / "ort_pre.onnx"
    pre_times = []
    for _ in range(max(1, rounds)):
        t0 = time.perf_counter()
        with quiet():
            quant_pre_process(str(float_path), str(pre_path))
        pre_times.append(time.perf_counter() - t0)
    percentile = edgepack.ExportConfig().percentile

    res = {"input_shape": list(shape), "train_epochs": epochs, "train_s": round(train_s, 2),
           "float_acc_torch": torch_acc, "float_acc_onnx": onnx_accuracy(float_path, x_te, y_te),
           "ort_preprocess_s": median(pre_times), "methods": {}}
    files = {}
    for method in METHODS:
        ep_out, ort_out = work / f"ep_{method}.onnx", work / f"ort_{method}.onnx"
        contenders = {"edgepack": edgepack_quantizer(float_path, shape, x_cal, method, ep_out, percentile),
                      "edgepack_1t": edgepack_quantizer(float_path, shape, x_cal, method, ep_out, percentile,
                                                        torch_threads=1),
                      "ort": ort_quantizer(pre_path, ort_out, x_cal, method, percentile)}
        times = interleaved(contenders, rounds, warmup=1 if not files else 0)  # warm imports/caches once
        export_s = None
        try:  # once, for context; the public API is still moving and the comparison must not depend on it
            t0 = time.perf_counter()
            full_export(float_path, shape, x_cal, method, work / f"export_{method}")()
            export_s = time.perf_counter() - t0
        except Exception as exc:
            res.setdefault("export_error", f"{type(exc).__name__}: {exc}")
        ep_s, ort_s = median(times["edgepack"]), median(times["ort"])
        paired = [e / o for e, o in zip(times["edgepack"], times["ort"])]  # same round, same machine state
        paired_1t = [e / o for e, o in zip(times["edgepack_1t"], times["ort"])]
        res["methods"][method] = {
            "ort_method": METHODS[method],
            "edgepack_acc": onnx_accuracy(ep_out, x_te, y_te),
            "ort_acc": onnx_accuracy(ort_out, x_te, y_te),
            "edgepack_s": ep_s, "ort_s": ort_s, "ratio_edgepack_over_ort": median(paired),
            "ratio_range": [min(paired), max(paired)],
            "edgepack_1t_s": median(times["edgepack_1t"]), "ratio_edgepack_1t_over_ort": median(paired_1t),
            "ratio_1t_range": [min(paired_1t), max(paired_1t)],
            "ratio_edgepack_over_ort_with_preprocess": ep_s / (ort_s + res["ort_preprocess_s"]),
            "export_s": export_s,
            "times": times}
        files[method] = (ep_out, ort_out)

    # edgepack with int8 activations (what TFLite and ARM kernels use), same minmax calibration.
    s8_out = work / "ep_minmax_s8.onnx"
    edgepack_quantizer(float_path, shape, x_cal, "minmax", s8_out, percentile, activations="int8")()
    lat_files = {"float": float_path, "edgepack_u8": files["minmax"][0], "edgepack_s8": s8_out,
                 "ort_u8": files["minmax"][1]}
    res["edgepack_s8_acc"] = onnx_accuracy(s8_out, x_te, y_te)
    res["file_bytes"] = {k: p.stat().st_size for k, p in lat_files.items()}
    res["optimized_graph"] = {k: optimized_op_counts(p) for k, p in lat_files.items()}
    res["latency_s"] = {}
    for label, threads in (("1 thread", 1), ("default threads", 0)):
        lat = latency(lat_files, x_te[:1], threads, lat_rounds)
        res["latency_s"][label] = {k: {"median_s": v, "speedup_vs_float": lat["float"] / v} for k, v in lat.items()}
    return res


# ---------------------------------------------------------------- output

def tables(results: dict) -> tuple[str, str]:
    """(the compact text printed to the terminal, the markdown body of quantize.md)."""
    acc_rows, lat_rows, node_rows = [], [], []
    for name, r in results["models"].items():
        for method, m in r["methods"].items():
            acc_rows.append([name, f"{method} / {m['ort_method']}", f"{r['float_acc_onnx']:.3f}",
                             f"{m['edgepack_acc']:.3f}", f"{m['ort_acc']:.3f}", f"{m['edgepack_s']:.2f}",
                             f"{m['ort_s']:.2f}",
                             "{:.2f} ({:.2f}-{:.2f})".format(m['ratio_edgepack_over_ort'], *m['ratio_range']),
                             f"{m['ratio_edgepack_over_ort_with_preprocess']:.2f}",
                             "{:.2f} ({:.2f}-{:.2f})".format(m['ratio_edgepack_1t_over_ort'], *m['ratio_1t_range']),
                             "-" if m["export_s"] is None else f"{m['export_s']:.2f}"])
        for label, lat in r["latency_s"].items():
            lat_rows.append([name, label, f"{lat['float']['median_s'] * 1e6:.0f}"] +
                            [f"{lat[k]['median_s'] * 1e6:.0f} ({lat[k]['speedup_vs_float']:.2f}x)"
                             for k in ("edgepack_u8", "edgepack_s8", "ort_u8")])
        g = r["optimized_graph"]
        node_rows.append([name, f"{r['edgepack_s8_acc']:.3f}"] +
                         [f"{g[k]['float_conv_gemm']} / {g[k]['int8_conv_gemm']}"
                          for k in ("float", "edgepack_u8", "edgepack_s8", "ort_u8")] +
                         [f"{r['file_bytes']['edgepack_u8'] / r['file_bytes']['float']:.2f}",
                          f"{r['file_bytes']['ort_u8'] / r['file_bytes']['float']:.2f}"])
    acc_head = ["model", "method (edgepack / ORT)", "float acc", "edgepack int8", "ORT int8", "edgepack s",
                "ORT s", "edgepack/ORT (range)", "edgepack/(ORT+pre)", "edgepack 1 thread/ORT", "export() s"]
    lat_head = ["model", "threads", "float us", "edgepack u8 us", "edgepack s8 us", "ORT u8 us"]
    node_head = ["model", "edgepack s8 acc", "float", "edgepack u8", "edgepack s8", "ORT u8",
                 "edgepack/float bytes", "ORT/float bytes"]
    text = "\n\n".join(common.md_table(h, rows) for h, rows in
                       ((acc_head, acc_rows), (lat_head, lat_rows), (node_head, node_rows)))
    mc = results["machine"]
    pre = ", ".join(f"{n} {r['ort_preprocess_s']:.2f} s" for n, r in results["models"].items())
    errors = {r["export_error"] for r in results["models"].values() if "export_error" in r}
    err = f" edgepack.export failed here: {'; '.join(sorted(errors))}." if errors else ""
    md = f"""# int8 post-training quantization: edgepack vs onnxruntime

Measured {mc['date']} on {mc['cpu']} ({mc['cores']} cores, VNNI: {mc['vnni']}), onnxruntime
{mc['onnxruntime']}, torch {mc['torch']}. Regenerate with `.venv/bin/python benchmarks/bench_quantize.py`
(or `make bench`). Raw numbers, every repeat included: `quantize.json`.

Both tools start from the same float ONNX file (written by edgepack, BatchNorm folded) and the same
{CALIB_SAMPLES} calibration images; accuracy is top-1 on the {results['settings']['test_samples']} held-out
digits, run in onnxruntime at batch 1. ORT: `quantize_static`, QDQ, per-channel, QInt8 weights, QUInt8
activations, on the model from `quant_pre_process`; its percentile calibrator is made asymmetric at
edgepack's percentile ({results['settings']['percentile']}) to match. ORT has no MSE calibrator, so
edgepack's `mse` sits next to ORT's `Distribution`.

## Accuracy and quantization time

Times are medians of {results['settings']['rounds']} interleaved repeats; "edgepack/ORT" is the median of
the per-repeat ratios (each pair measured back to back), in brackets their range.

- "edgepack s": load + passes + calibrate + quantize + write of the int8 ONNX file (the steps
  `edgepack.export` runs for it), torch with its default threads ({mc.get('torch_threads')}).
- "ORT s": `quantize_static` alone; "edgepack/(ORT+pre)" also charges ORT its `quant_pre_process` step
  ({pre}).
- "edgepack 1 thread/ORT": the same edgepack work under `torch.set_num_threads(1)`, in the same repeats.
- "export() s" (one run, not interleaved): the public `edgepack.export` of the same file with validation
  off, which writes every artifact it makes (float and int8 ONNX, TFLite, calibration.json,
  report.json). Context, not part of the comparison.{err}

{common.md_table(acc_head, acc_rows)}

## Latency (onnxruntime CPU, batch 1, ORT_ENABLE_ALL)

Median of single timed calls, taken in {results['settings']['latency_rounds']} interleaved ~20 ms blocks
per file; in brackets the speed-up over the float file. u8 = uint8 activations (edgepack's default for
ONNX), s8 = int8 activations. All int8 files calibrated with minmax.

{common.md_table(lat_head, lat_rows)}

"default threads" is ORT's own choice (one per physical core). Load average during the run:
{results['settings'].get('loadavg')}; when other processes share the cores, multi-threaded runs pay
for it far more than single-threaded ones, so read the 1-thread rows first.

## What ORT's optimizer runs (ORT_ENABLE_EXTENDED): float / int8 Conv-Gemm nodes

{common.md_table(node_head, node_rows)}
{notes(results)}"""
    return text, md


def notes(results: dict) -> str:
    """Findings that follow from the numbers, stated only when the numbers show them."""
    out = []
    s8_float = {n: r["optimized_graph"]["edgepack_s8"]["float_conv_gemm"] for n, r in results["models"].items()}
    if any(s8_float.values()):
        out.append("- With int8 activations ORT leaves Conv/Gemm nodes in float ("
                   + ", ".join(f"{n}: {k}" for n, k in s8_float.items() if k) + "). x86 builds of ORT do not "
                   "fuse int8-activation QDQ groups (`QDQIsInt8Allowed()` is false off ARM); they only rewrite a "
                   "Q->DQ pair to uint8 when the Q feeds exactly one DQ (`QDQS8ToU8Transformer`), so a Conv whose "
                   "input or output tensor has several consumers (residual branches) keeps int8 on one side and "
                   "runs in float between Q/DQ nodes. ORT's own QInt8-activation output does the same. This is "
                   "why edgepack writes uint8 activations to ONNX by default.")
    bad = sorted({(n, m["ort_method"], m["ort_acc"]) for n, r in results["models"].items()
                  for m in r["methods"].values() if m["ort_acc"] < r["float_acc_onnx"] - 0.05})
    if bad:
        out.append("- ORT accuracy collapses with " + ", ".join(f"{meth} on {n} ({acc:.3f})" for n, meth, acc in bad)
                   + ". ORT's Distribution calibrator is meant for float8; it is here only because ORT has no "
                   "MSE calibrator.")
    slow = [(n, r["latency_s"]["1 thread"]["edgepack_u8"]["speedup_vs_float"]) for n, r in results["models"].items()
            if r["latency_s"]["1 thread"]["edgepack_u8"]["speedup_vs_float"] < 1]
    if slow:
        out.append("- int8 is slower than float on " + ", ".join(f"{n} ({x:.2f}x)" for n, x in slow)
                   + ": at 8x8 input a whole inference is tens of microseconds, so per-node overhead (the int8 "
                   "graph's extra Q/DQ at the edges, requantization) outweighs the arithmetic saved.")
    return ("\n## Notes\n\n" + "\n".join(out) + "\n") if out else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: skip the 32x32 model, fewer repeats, write no results files")
    parser.add_argument("--rounds", type=int, help="interleaved repeats of each quantization (default 5)")
    parser.add_argument("--latency-rounds", type=int, help="interleaved latency blocks (default 15)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rounds = args.rounds or (2 if args.quick else 5)
    lat_rounds = args.latency_rounds or (5 if args.quick else 15)

    import edgepack

    results = {"machine": common.machine(),
               "settings": {"calib_samples": CALIB_SAMPLES, "rounds": rounds, "latency_rounds": lat_rounds,
                            "percentile": edgepack.ExportConfig().percentile, "quick": args.quick},
               "models": {}}
    data = {}
    load0 = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_quantize_") as tmp:
        for name, build, size, epochs, lr in model_specs(args.quick):
            if size not in data:
                data[size] = common.digits(size)
            results["settings"]["test_samples"] = len(data[size][3])
            print(f"[{time.perf_counter() - start:5.0f}s] {name} ({size}x{size}) ...", flush=True)
            results["models"][name] = bench_model(name, build, size, epochs, lr, data[size], Path(tmp) / name,
                                                  rounds, lat_rounds)
    results["settings"]["wall_s"] = round(time.perf_counter() - start, 1)
    results["settings"]["loadavg"] = f"{load0} at start, {', '.join(f'{v:.1f}' for v in os.getloadavg())} at end"
    text, md = tables(results)
    print(text)
    if args.quick:  # a smoke run does not overwrite the published results
        print(f"\n{results['settings']['wall_s']}s (--quick: results files not written)")
        return 0
    json_path, md_path = common.write_results("quantize", results, md)
    print(f"\n{results['settings']['wall_s']}s; wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
