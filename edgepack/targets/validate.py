"""Run artifacts on the runtimes a target uses and say how far they are from the float model.

User data arrives as the model's own layout (NCHW float); io_mapping converts it to each file's input
(NHWC, int8) and the outputs back, so every runtime is compared on the same footing.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ConfigError, UnsupportedOpError
from ..ir import ops_where, tflite_builtins
from .diagnose import FIXED_SCALE_OPS, clipping
from .io_mapping import dequantize_output, from_file_layout, quantize_input, to_file_layout
from .metrics import compare, sqnr_db
from .runtimes import TFLM, LiteRT, OnnxRuntime
from .tflite_file import read_tflite

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
# Layers without an error of their own: the builtins of ops that copy values, a nearest resize, the input
# and the edge converters.
PASS_THROUGH = tflite_builtins(*ops_where(copies_values=True), aux=True) | {
    "INPUT", "QUANTIZE", "DEQUANTIZE", "RESIZE_NEAREST_NEIGHBOR"}


def _runner(data: bytes, runtime: str, arena_size: int | None = None):
    if runtime == "onnxruntime":
        return OnnxRuntime(data)
    if runtime == "tflm":
        return TFLM(data, arena_size=arena_size)
    return LiteRT(data, reference=runtime == "litert-ref")


def runtimes_for(path: str, target_runtime: str | None) -> list[str]:
    """Which runtimes an artifact is checked on: the target's own, plus LiteRT's reference kernels for
    a .tflite (the yardstick TFLM must match bit for bit)."""
    if str(path).endswith(".onnx"):
        return ["onnxruntime"]
    if target_runtime == "tflm":
        return ["tflm", "litert-ref"]
    if target_runtime == "litert":
        return ["litert", "litert-ref"]
    return ["litert-ref", "litert", "tflm"]


def run_artifact(data: bytes, kind: str, runtime: str, samples: np.ndarray, out_shape=None,
                 progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(dequantized outputs in the reference layout, raw integer outputs or None) for N samples."""
    runner = _runner(data, runtime)
    if kind == "onnx":
        shape = runner.inputs[0].shape  # data that does not fit: one line, not onnxruntime's error
        static = all(isinstance(d, int) for d in shape)
        outs = [runner.run(to_file_layout(x[None], shape) if static else x[None])[0] for x in samples]
        return np.concatenate(outs), None
    info = read_tflite(data)
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    deq, raw = [], []
    for i, x in enumerate(samples):
        feed = to_file_layout(x[None], tin.shape)
        if tin.dtype != "float32":
            feed = quantize_input(feed, np.dtype(tin.dtype), tin.scale[0], tin.zero_point[0])
        y = runner.run(feed)[0]
        raw.append(y)
        y = dequantize_output(y, tout.scale[0] if tout.scale else 0.0,
                              tout.zero_point[0] if tout.zero_point else 0)
        deq.append(from_file_layout(y, (1, *out_shape[1:]) if out_shape is not None else None))
        if progress and (i + 1) % 16 == 0:
            progress(f"{runtime}", 16, len(samples))
    integer = np.concatenate(raw) if tout.dtype in ("int8", "uint8", "int16") else None
    return np.concatenate(deq), integer


def validate(artifacts: dict[str, str], samples: np.ndarray, *, labels=None, reference: np.ndarray | None = None,
             target_runtime: str | None = None, progress: Progress | None = None) -> dict:
    """Metrics per artifact and runtime. ``artifacts``: label -> path (.onnx or .tflite).

    ``reference``: float outputs (N, ...) to compare with (typically the float model on onnxruntime)."""
    if len(samples) == 0:
        raise ConfigError("validation needs at least one sample")
    results: dict[str, dict] = {}
    for label, path in artifacts.items():
        data = Path(path).read_bytes()
        kind = "onnx" if str(path).endswith(".onnx") else "tflite"
        raws = {}
        for runtime in runtimes_for(path, target_runtime):
            key = f"{label}@{runtime}"
            try:
                outs, raw = run_artifact(data, kind, runtime, samples,
                                         reference.shape if reference is not None else None, progress)
            except UnsupportedOpError as exc:  # e.g. TFLM has no GELU: say so, check the other runtimes
                results[key] = {"artifact": str(path), "runtime": runtime, "not_run": str(exc),
                                "missing_op": exc.op, "node": exc.node}
                log.warning("%s not run on %s: %s", label, runtime, exc)
                continue
            results[key] = {"artifact": str(path), "runtime": runtime,
                            **(compare(reference, outs.reshape(reference.shape), labels)
                               if reference is not None else _accuracy_only(outs, labels))}
            if raw is not None:
                raws[runtime] = raw
        if "tflm" in raws and "litert-ref" in raws:
            a, b = raws["tflm"].astype(np.int64), raws["litert-ref"].astype(np.int64)
            results[f"{label}@tflm"]["vs_litert_reference"] = tflm_vs_reference(a, b, read_tflite(data))
    return results


def tflm_vs_reference(tflm: np.ndarray, ref: np.ndarray, info) -> dict:
    """How TFLM's integer outputs differ from LiteRT's reference kernels, and why."""
    diff = np.abs(tflm.astype(np.int64) - ref.astype(np.int64))
    n_fc = sum(1 for o in info.ops if o.op == "FULLY_CONNECTED")
    out = {"identical_fraction": float(np.mean(diff == 0)), "max_lsb": int(diff.max(initial=0)),
           "mean_lsb": float(diff.mean()) if diff.size else 0.0, "bit_exact": bool(not diff.any())}
    if diff.any():
        out["why"] = (f"TFLM's int8 FULLY_CONNECTED rounds twice (multiply-high, then a rounding shift) where "
                      f"LiteRT's reference rounds once: up to 1 LSB per layer, carried through the "
                      f"{n_fc} FULLY_CONNECTED layer(s) of this file" if n_fc else
                      "the file has no FULLY_CONNECTED: an unexpected kernel difference (please report it)")
    return out


def _accuracy_only(outs: np.ndarray, labels) -> dict:
    flat = outs.reshape(len(outs), -1)
    if labels is None or flat.shape[1] < 2:
        return {"samples": int(len(outs))}
    return {"samples": int(len(outs)), "accuracy": float(np.mean(flat.argmax(1) == np.asarray(labels).ravel()))}


def per_layer_sqnr(int8_tflite: bytes, float_tflite: bytes, samples: np.ndarray, worst: int = 5) -> dict:
    """SQNR of every int8 tensor (dequantized) against the same-named tensor of the float file,
    over the given samples: where int8 loses accuracy, layer by layer."""
    qinfo, finfo = read_tflite(int8_tflite), read_tflite(float_tflite)
    qrt = LiteRT(int8_tflite, reference=True, preserve_all=True)
    frt = LiteRT(float_tflite, reference=True, preserve_all=True)
    producers = {o: op.op for op in qinfo.ops for o in op.outputs}
    float_names = {t.name for t in finfo.tensors if not t.is_const}
    signal: dict[str, list] = {}
    tin_q, tin_f = qinfo.tensors[qinfo.inputs[0]], finfo.tensors[finfo.inputs[0]]
    for x in samples:
        fx = to_file_layout(x[None], tin_f.shape)
        qx = quantize_input(to_file_layout(x[None], tin_q.shape), np.dtype(tin_q.dtype), tin_q.scale[0],
                            tin_q.zero_point[0]) if tin_q.dtype != "float32" else fx
        qrt.run(qx)
        frt.run(fx)
        qt, ft = qrt.tensors(), frt.tensors()
        for t in qinfo.tensors:
            if t.is_const or t.name not in float_names or t.name not in qt or not t.scale:
                continue
            value = dequantize_output(qt[t.name], t.scale[0], t.zero_point[0])
            if value.shape != ft[t.name].shape:
                continue
            signal.setdefault(t.name, []).append((ft[t.name].ravel(), value.ravel(), t.index))
    layers = []
    for name, pairs in signal.items():
        ref = np.concatenate([p[0] for p in pairs])
        got = np.concatenate([p[1] for p in pairs])
        t = qinfo.tensors[pairs[0][2]]
        layers.append({"tensor": name, "op": producers.get(pairs[0][2], "INPUT"), "sqnr_db": sqnr_db(ref, got),
                       **clipping(ref, t.scale[0], t.zero_point[0])})
    order = {t.name: t.index for t in qinfo.tensors}
    layers.sort(key=lambda r: order[r["tensor"]])
    # Pass-through ops (reshape, pad, ...) repeat their producer's error, and fixed-scale ops (softmax, ...)
    # cannot be fixed: rank the ops that compute with calibrated params.
    finite = [r for r in layers if np.isfinite(r["sqnr_db"]) and r["op"] not in PASS_THROUGH | FIXED_SCALE_OPS]
    return {"layers": layers, "worst": sorted(finite, key=lambda r: r["sqnr_db"])[:worst]}
