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
from . import isolated
from .diagnose import FIXED_SCALE_OPS
from .io_mapping import file_inputs, to_file_layout
from .metrics import compare
from .runtimes import OnnxRuntime, RuntimeFailure
from .tflite_file import read_tflite

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
# Layers without an error of their own: the builtins of ops that copy values, a nearest resize, the input
# and the edge converters.
PASS_THROUGH = tflite_builtins(*ops_where(copies_values=True), aux=True) | {
    "INPUT", "QUANTIZE", "DEQUANTIZE", "RESIZE_NEAREST_NEIGHBOR"}


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
                 progress: Progress | None = None, where: str = "the model") -> tuple[np.ndarray, np.ndarray | None]:
    """(dequantized outputs in the reference layout, raw integer outputs or None) for N samples.
    A .tflite runs in edgepack's runtime child process (isolated.py); ``where`` names the file."""
    if kind == "onnx":
        runner = OnnxRuntime(data)
        arrays = file_inputs(samples, [i.name for i in runner.inputs])
        outs = []
        for i in range(len(samples)):
            feeds = []
            for a, inp in zip(arrays, runner.inputs):  # data that does not fit: one line, not onnxruntime's
                static = all(isinstance(d, int) for d in inp.shape)
                feeds.append(to_file_layout(a[i:i + 1], inp.shape) if static else a[i:i + 1])
            outs.append(runner.run(*feeds)[0])
        return np.concatenate(outs), None
    return isolated.run_tflite(data, runtime, samples, out_shape, where=where, progress=progress)


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
                                         reference.shape if reference is not None else None, progress, str(path))
            except UnsupportedOpError as exc:  # e.g. TFLM has no GELU: say so, check the other runtimes
                results[key] = {"artifact": str(path), "runtime": runtime, "not_run": str(exc),
                                "missing_op": exc.op, "node": exc.node}
                log.warning("%s not run on %s: %s", label, runtime, exc)
                continue
            outs = _per_sample(outs, len(samples), reference, f"{path} on {isolated.NAMES.get(runtime, runtime)}")
            results[key] = {"artifact": str(path), "runtime": runtime,
                            **(compare(reference, outs.reshape(reference.shape), labels)
                               if reference is not None else _accuracy_only(outs, labels))}
            if raw is not None:
                raws[runtime] = raw
        if "tflm" in raws and "litert-ref" in raws:
            a, b = raws["tflm"].astype(np.int64), raws["litert-ref"].astype(np.int64)
            if a.shape != b.shape:  # the file's shapes are inconsistent and the runtimes resolve them apart
                raise RuntimeFailure(f"{path}: TFLite Micro and LiteRT give outputs of different shapes "
                                     f"({list(a.shape[1:])} and {list(b.shape[1:])} per sample)")
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


def _per_sample(outs: np.ndarray, n: int, reference, what: str) -> np.ndarray:
    """Outputs as (n, values per sample); an artifact whose output does not match that (or the
    reference's size) was not made for this model: say so."""
    if outs.size % n or (reference is not None and outs.size != reference.size):
        expected = f"the reference has {reference.size // n}" if reference is not None else f"for {n} samples"
        raise RuntimeFailure(f"{what}: {outs.size} output values ({expected} per sample): "
                             "its output shape does not match")
    return outs.reshape(n, -1)


def _accuracy_only(outs: np.ndarray, labels) -> dict:
    flat = outs.reshape(len(outs), -1)
    if labels is None or flat.shape[1] < 2:
        return {"samples": int(len(outs))}
    return {"samples": int(len(outs)), "accuracy": float(np.mean(flat.argmax(1) == np.asarray(labels).ravel()))}


def per_layer_sqnr(int8_tflite: bytes, float_tflite: bytes, samples: np.ndarray, worst: int = 5,
                   where: str = "the model") -> dict:
    """SQNR of every int8 tensor (dequantized) against the same-named tensor of the float file,
    over the given samples: where int8 loses accuracy, layer by layer (on LiteRT's reference kernels,
    in the runtime child process), with the share of float values each int8 range clips."""
    layers = isolated.layer_sqnr(int8_tflite, float_tflite, samples, where=where)["layers"]
    # Pass-through ops (reshape, pad, ...) repeat their producer's error, and fixed-scale ops (softmax, ...)
    # cannot be fixed: rank the ops that compute with calibrated params.
    finite = [r for r in layers if np.isfinite(r["sqnr_db"]) and r["op"] not in PASS_THROUGH | FIXED_SCALE_OPS]
    return {"layers": layers, "worst": sorted(finite, key=lambda r: r["sqnr_db"])[:worst]}
