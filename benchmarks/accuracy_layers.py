"""Per-layer SQNR of an int8 file against its float model, for bench_accuracy.py: .tflite pairs through
edgepack's own per-layer job (tensors matched by name, LiteRT reference kernels), and onnxruntime QDQ files
by reading each quantized tensor after its DequantizeLinear next to the float model's tensor."""
from __future__ import annotations

import numpy as np

# ONNX ops that only move values: their error is their producer's.
ONNX_MOVES = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Pad", "Concat",
              "Dropout", "Shape", "Gather", "Cast", "MaxPool"}


def summary(values: list[float]) -> dict:
    v = [x for x in values if np.isfinite(x)]
    if not v:
        return {"layers": 0, "min_db": None, "median_db": None}
    return {"layers": len(v), "min_db": float(np.min(v)), "median_db": float(np.median(v))}


def tflite_layers(int8: bytes, float_file: bytes, x: np.ndarray) -> dict:
    """Summary of the per-layer SQNR of the computing layers (pass-through and fixed-scale ops left out,
    as the report ranks them), with the rows."""
    from edgepack.targets.isolated import layer_sqnr
    from edgepack.targets.validate import FIXED_SCALE_OPS, PASS_THROUGH

    rows = [r for r in layer_sqnr(int8, float_file, x)["layers"]
            if r["op"] not in PASS_THROUGH | FIXED_SCALE_OPS]
    return {**summary([r["sqnr_db"] for r in rows]),
            "rows": [{"tensor": r["tensor"], "op": r["op"], "sqnr_db": r["sqnr_db"]} for r in rows]}


def onnx_qdq_layers(float_path, qdq_path, x: np.ndarray) -> dict:
    """Every float tensor ``t`` that the QDQ model quantizes (``t_DequantizeLinear_Output``): SQNR of the
    dequantized value against the float one, both models run with those tensors as extra outputs."""
    import onnx
    from onnx import TensorProto, helper

    import onnxruntime as ort

    from edgepack.targets.io_mapping import to_file_layout

    fm, qm = onnx.load(str(float_path)), onnx.load(str(qdq_path))
    produced = {o for n in qm.graph.node for o in n.output}
    pairs = [(n.output[0], n.op_type) for n in fm.graph.node if n.op_type not in ONNX_MOVES
             and f"{n.output[0]}_DequantizeLinear_Output" in produced]
    for model, suffix in ((fm, ""), (qm, "_DequantizeLinear_Output")):
        have = {o.name for o in model.graph.output}
        model.graph.output.extend(helper.make_tensor_value_info(t + suffix, TensorProto.FLOAT, None)
                                  for t, _ in pairs if t + suffix not in have)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    # basic optimisation only: the QDQ arithmetic as the file states it, not the fused U8S8 kernels that
    # saturate on CPUs without VNNI (ort_quantize.reference_session, edgepack/targets/cpu.py)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    fs, qs = (ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]) for m in (fm, qm))
    shape = [d.dim_value for d in fm.graph.input[0].type.tensor_type.shape.dim]
    names_f = [t for t, _ in pairs]
    names_q = [t + "_DequantizeLinear_Output" for t, _ in pairs]
    ref, got = {t: [] for t in names_f}, {t: [] for t in names_f}
    for s in x:
        feed = to_file_layout(s[None], shape).astype(np.float32)
        for t, v in zip(names_f, fs.run(names_f, {fs.get_inputs()[0].name: feed})):
            ref[t].append(v.ravel())
        for t, v in zip(names_f, qs.run(names_q, {qs.get_inputs()[0].name: feed})):
            got[t].append(v.ravel())
    from edgepack.targets.metrics import sqnr_db

    rows = [{"tensor": t, "op": op, "sqnr_db": float(sqnr_db(np.concatenate(ref[t]), np.concatenate(got[t])))}
            for t, op in pairs]
    return {**summary([r["sqnr_db"] for r in rows]), "rows": rows}
