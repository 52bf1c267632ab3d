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
from . import isolated
from .metrics import compare
from .runtimes import OnnxRuntime, RuntimeFailure

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


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
        return np.concatenate([runner.run(x[None])[0] for x in samples]), None
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
            results[f"{label}@tflm"]["vs_litert_reference"] = {
                "identical_fraction": float(np.mean(a == b)), "max_lsb": int(np.max(np.abs(a - b))),
                "bit_exact": bool(np.array_equal(a, b))}
    return results


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
    in the runtime child process)."""
    return isolated.layer_sqnr(int8_tflite, float_tflite, samples, worst, where=where)
