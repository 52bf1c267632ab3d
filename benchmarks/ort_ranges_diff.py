"""What onnxruntime's quantize_static does differently from edgepack, per tensor (issue 14): for each model,
the activation ranges of ORT's QDQ file (minmax calibrator, as bench_autoquant.py runs it) against
edgepack's minmax ranges on the same 300 calibration samples, and the weight granularity of every FC layer.
Lists only the tensors whose int8 grid differs (scale beyond 1%, or the range's ends beyond half a step).

    PYTHONPATH=. python benchmarks/ort_ranges_diff.py [model ...]   (default: the models where ORT leads)
Writes benchmarks/results/ort_ranges_diff.md and .json.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import RESULTS

LEADS = ("seg_sigmoid", "mobilenet_v3", "spiky_mlp")


def ort_file(graph, x_cal, tmp: Path):
    import onnx
    from ort_quantize import ort_quantizer

    from edgepack.exporter.emit_onnx import to_onnx

    fp, qp = tmp / "float.onnx", tmp / "ort.onnx"
    fp.write_bytes(to_onnx(graph).SerializeToString())
    ort_quantizer(fp, qp, x_cal.astype(np.float32), "minmax", 99.99)()
    return onnx.load(str(qp))


def ort_params(m) -> tuple[dict, dict]:
    """(activation -> (lo, hi, scale), weight initializer -> number of scales) of a QDQ model."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    acts, weights = {}, {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[1] in init:
            s, z = float(init[n.input[1]]), int(init[n.input[2]])  # uint8 activations
            acts[n.input[0].replace("_QuantizeLinear_Input", "")] = (s * -z, s * (255 - z), s)
        if n.op_type == "DequantizeLinear" and n.input[0] in init and init[n.input[0]].ndim >= 2:
            weights[n.input[0].replace("_quantized", "")] = int(np.size(init[n.input[1]]))
    return acts, weights


def diff(name: str) -> dict:
    import edgepack
    from bench_autoquant import load_model
    from edgepack.calibration import load_samples
    from edgepack.calibration.calibrate import calibrate
    from edgepack.calibration.fc_weights import choose_fc_weights
    from edgepack.calibration.quantize import QuantRules

    model, shape, x_cal, _ = load_model(name)
    graph = edgepack.load(model, input_shape=shape)
    per_channel = choose_fc_weights(graph, x_cal[:64]).per_channel
    cal = calibrate(graph, load_samples(x_cal, shape, input_name=graph.inputs[0]), "minmax",
                    rules=QuantRules(per_channel_nodes=per_channel))
    with tempfile.TemporaryDirectory() as tmp:
        acts, weights = ort_params(ort_file(graph, x_cal, Path(tmp)))
    rows = []
    for t in graph.activations():
        q, o = cal.qgraph.tensors[t].quant, acts.get(t)
        if q is None or o is None:
            continue
        s, z = float(np.ravel(q.scale)[0]), int(np.ravel(q.zero_point)[0])
        lo, hi = s * (-128 - z), s * (127 - z)
        if abs(o[2] / s - 1) > 0.01 or abs(lo - o[0]) > s / 2 or abs(hi - o[1]) > s / 2:
            op = next(n.op for n in graph.nodes if t in n.outputs) if t not in graph.inputs else "input"
            rows.append({"tensor": t, "op": op, "edgepack": [round(lo, 4), round(hi, 4), round(s, 5)],
                         "onnxruntime": [round(v, 4) for v in o[:2]] + [round(o[2], 5)]})
    fc = [{"layer": n.name, "edgepack": "per-channel" if n.name in per_channel else "per-tensor",
           "onnxruntime": "per-channel" if weights.get(n.inputs[1], 1) > 1 else "per-tensor"}
          for n in graph.nodes if n.op == "Gemm"]
    return {"tensors_compared": sum(1 for t in graph.activations() if t in acts), "differing": rows, "fc_weights": fc}


def markdown(results: dict) -> str:
    lines = ["# onnxruntime quantize_static (minmax) vs edgepack minmax, per tensor", "",
             "Same 300 calibration samples; ORT as bench_autoquant.py runs it (QDQ, uint8 activations, per-channel "
             "int8 weights). Tensors whose grid differs (range as [lo, hi, scale]); FC weight granularity where it "
             "differs. Produced by `PYTHONPATH=. python benchmarks/ort_ranges_diff.py`.", ""]
    for name, r in results.items():
        lines += [f"## {name}", "", f"{r['tensors_compared']} activation tensors compared, {len(r['differing'])} differ.",
                  "", "| tensor | op | edgepack | onnxruntime |", "|---|---|---|---|"]
        lines += [f"| {d['tensor']} | {d['op']} | {d['edgepack']} | {d['onnxruntime']} |" for d in r["differing"]]
        lines += [f"| FC {f['layer']} weights | Gemm | {f['edgepack']} | {f['onnxruntime']} |"
                  for f in r["fc_weights"] if f["edgepack"] != f["onnxruntime"]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    out = {name: diff(name) for name in (sys.argv[1:] or LEADS)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ort_ranges_diff.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "ort_ranges_diff.md").write_text(markdown(out))
