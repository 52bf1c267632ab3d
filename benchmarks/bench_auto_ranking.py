"""Auto's local ranking on every RANKING_STRIDE-th scoring sample against all of them: held-out output
SQNR of edgepack's default (auto + bias correction), calibration seconds, and whether the ranges are the
same, on bench_autoquant's models (its held-out samples), side by side in one process.

    PYTHONPATH=. python benchmarks/bench_auto_ranking.py ds_cnn mobilenet_v1 resnet plain_cnn
"""
from __future__ import annotations

import json
import sys
import time

import common

from bench_autoquant import load_model, metrics

STRIDES = (1, 4)  # 1: the local score on all scoring samples (before); 4: the default now


def compare(name: str) -> dict:
    import torch

    import edgepack
    from edgepack.calibration import auto, load_samples
    from edgepack.calibration.calibrate import calibrate
    from edgepack.calibration.fc_weights import choose_fc_weights
    from edgepack.calibration.quantize import QuantRules
    from edgepack.ir.torch_exec import run

    torch.set_num_threads(1)
    model, shape, x_cal, x_val = load_model(name)
    graph = edgepack.load(model, input_shape=shape)
    samples = load_samples(x_cal, shape, input_name=graph.inputs[0])
    rules = QuantRules(per_channel_nodes=choose_fc_weights(graph, x_cal[:64]).per_channel)
    ref = run(graph, [x_val])[graph.outputs[0]]
    rows, ranges = {}, {}
    for stride in STRIDES:
        auto.RANKING_STRIDE = stride
        t0 = time.perf_counter()
        cal = calibrate(graph, samples, "auto", rules=rules, bias_correction="auto", workers=1)
        seconds = time.perf_counter() - t0
        got = run(cal.qgraph, [x_val], fake_quant=True)[graph.outputs[0]]
        rows[f"stride {stride}"] = {**metrics(ref, got), "calib_seconds": round(seconds, 2)}
        ranges[stride] = (cal.ranges, cal.bias_deltas)
    rows["same ranges and bias deltas"] = ranges[STRIDES[0]] == ranges[STRIDES[1]]
    rows["held_out_samples"] = len(x_val)
    return rows


def markdown(results: dict) -> str:
    rows = []
    for name, r in results.items():
        a, b = r[f"stride {STRIDES[0]}"], r[f"stride {STRIDES[1]}"]
        rows.append([name, r["held_out_samples"], f"{a['sqnr_db']:.2f}", f"{b['sqnr_db']:.2f}",
                     f"{b['sqnr_db'] - a['sqnr_db']:+.2f}",
                     a["top1_agreement"] and f"{a['top1_agreement']:.4f}",
                     b["top1_agreement"] and f"{b['top1_agreement']:.4f}",
                     "yes" if r["same ranges and bias deltas"] else "no", a["calib_seconds"], b["calib_seconds"]])
    return ("# auto: local ranking on every 4th scoring sample vs all of them\n\n" + __doc__.split("\n\n")[0]
            + "\n\n" + common.md_table(
                ["model", "held-out", "SQNR dB (all)", "SQNR dB (every 4th)", "diff dB", "top-1 agr. (all)",
                 "top-1 agr. (every 4th)", "same bytes", "calib s (all)", "calib s (every 4th)"], rows)
            + "\n\nSeconds: one calibration each (workers 1), the stride-1 one first, on 2 cores shared with other "
              "jobs: compare within a row only. Same bytes: the ranges and bias corrections are equal.\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--from-json"]:  # tables from a saved run's output
        out = json.loads(open(sys.argv[2]).read())
    else:
        out = {name: compare(name) for name in sys.argv[1:]}
    print(json.dumps(out, indent=1))
    common.write_results("auto_ranking", {"machine": common.machine(), "strides": STRIDES, "models": out},
                         markdown(out))
