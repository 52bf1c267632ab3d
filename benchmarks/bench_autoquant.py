"""--calibration auto and bias correction against every single method and onnxruntime's quantize_static.

Same calibration samples (300) and held-out samples (200) for every contender, per model: output SQNR
against float and top-1 agreement with float on the held-out samples, and calibration time (edgepack:
calibrate() alone; ORT: quantize_static). edgepack numbers are its fake-quantized int8 graph in torch
(rewrite_check.quantized_output_sqnr: the scales the emitters write); ORT's are its QDQ file on
onnxruntime. Models: trained zoo models (tests/test_zoo_coverage.trained) and the issue-like models of
tests/test_autoquant.py. Writes benchmarks/results/autoquant.md and .json.

    PYTHONPATH=. python benchmarks/bench_autoquant.py [model ...]
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS

ZOO = ("plain_cnn", "resnet", "mobilenet_v2", "mobilenet_v3", "gap_head")
ISSUE_LIKE = ("outlier_mlp", "spiky_mlp")
EDGEPACK = ("minmax", "percentile", "mse", "entropy", "auto")


def load_model(name):
    import test_autoquant
    import zoo
    from test_zoo_coverage import trained

    if name in ISSUE_LIKE:
        model, shape, x = getattr(test_autoquant, name)()
        return model, shape, x[:300], x[300:500]
    model, shape = trained(name)
    x = zoo.digits_like(shape, 1500)
    return model, shape, x[1000:1300], x[1300:1500]


def metrics(ref: np.ndarray, got: np.ndarray) -> dict:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64).reshape(ref.shape)
    noise = float(np.sum((ref - got) ** 2))
    sqnr = 10 * np.log10(float(np.sum(ref * ref)) / noise) if noise > 0 else float("inf")
    agree = float(np.mean(ref.argmax(-1) == got.argmax(-1))) if ref.ndim == 2 and ref.shape[1] > 1 else None
    return {"sqnr_db": round(sqnr, 2), "top1_agreement": agree}


def bench_edgepack(graph, shape, x_cal, x_val) -> dict:
    import torch

    from edgepack.calibration import load_samples
    from edgepack.calibration.calibrate import calibrate
    from edgepack.calibration.fc_weights import choose_fc_weights
    from edgepack.calibration.quantize import QuantRules
    from edgepack.ir.torch_exec import run

    torch.set_num_threads(1)
    samples = load_samples(x_cal, shape, input_name=graph.inputs[0])
    rules = QuantRules(per_channel_nodes=choose_fc_weights(graph, x_cal[:64]).per_channel)
    out_name = graph.outputs[0]
    ref = run(graph, [x_val])[out_name]
    rows = {}
    for method in EDGEPACK:
        for bc in (("off", "auto") if method in ("minmax", "auto") else ("off",)):
            t0 = time.perf_counter()
            cal = calibrate(graph, samples, method, rules=rules, bias_correction=bc)
            seconds = time.perf_counter() - t0
            got = run(cal.qgraph, [x_val], fake_quant=True)[out_name]
            label = method + (" + bias correction" if bc == "auto" else "")
            rows[f"edgepack {label}"] = {**metrics(ref, got), "calib_seconds": round(seconds, 2)}
    return rows


def bench_ort(graph, x_cal, x_val) -> dict:
    from ort_quantize import ort_quantizer, session

    from edgepack.exporter.emit_onnx import to_onnx

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp = Path(tmp) / "float.onnx"
        fp.write_bytes(to_onnx(graph).SerializeToString())
        sess = session(fp)
        name = sess.get_inputs()[0].name
        ref = np.concatenate([sess.run(None, {name: x[None]})[0] for x in x_val])
        for method in ("minmax", "percentile", "entropy"):
            qp = Path(tmp) / f"{method}.onnx"
            quantize = ort_quantizer(fp, qp, x_cal.astype(np.float32), method, 99.99)
            t0 = time.perf_counter()
            try:
                quantize()
            except Exception as exc:  # report it, keep going with the other calibrators
                rows[f"onnxruntime {method}"] = {"error": str(exc).splitlines()[0][:120]}
                continue
            seconds = time.perf_counter() - t0
            q = session(qp)
            got = np.concatenate([q.run(None, {name: x[None]})[0] for x in x_val])
            rows[f"onnxruntime {method}"] = {**metrics(ref, got), "calib_seconds": round(seconds, 2)}
    return rows


def main(names):
    import edgepack

    results = {}
    for name in names:
        model, shape, x_cal, x_val = load_model(name)
        graph = edgepack.load(model, input_shape=shape)
        results[name] = {**bench_edgepack(graph, shape, x_cal, x_val), **bench_ort(graph, x_cal, x_val)}
        print(name, json.dumps(results[name]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "autoquant.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "autoquant.md").write_text(markdown(results))


def markdown(results) -> str:
    lines = ["# --calibration auto vs single methods vs onnxruntime quantize_static", "",
             "300 calibration samples, 200 held-out samples (same for every contender); output SQNR (dB) and "
             "top-1 agreement with float on the held-out samples; calibration seconds (2-core shared machine). "
             "Produced by `PYTHONPATH=. python benchmarks/bench_autoquant.py`.", ""]
    for name, rows in results.items():
        lines += [f"## {name}", "", "| contender | SQNR dB | top-1 agreement | calib s |", "|---|---|---|---|"]
        for k, r in rows.items():
            if "error" in r:
                lines.append(f"| {k} | failed: {r['error']} | | |")
            else:
                agree = "" if r["top1_agreement"] is None else f"{r['top1_agreement']:.3f}"
                lines.append(f"| {k} | {r['sqnr_db']:.2f} | {agree} | {r['calib_seconds']:.2f} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:] or list(ZOO + ISSUE_LIKE))
