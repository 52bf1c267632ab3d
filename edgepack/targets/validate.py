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
from . import aarch64, isolated
from .diagnose import FIXED_SCALE_OPS, fc_rounding
from .io_mapping import file_inputs, to_file_layout
from .metrics import compare
from .runtimes import OnnxRuntime, RuntimeFailure
from .tflite_file import read_tflite

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
FAST_SAMPLES = 16  # --validate fast: samples of the repeat runs (TFLM, the float .tflite) and of per-layer error
# Layers without an error of their own: the builtins of ops that copy values, a nearest resize, the input
# and the edge converters.
FUSED_WARN_DB = 35.0  # fused vs reference QDQ below this: more than int8 rounding noise
PASS_THROUGH = tflite_builtins(*ops_where(copies_values=True), aux=True) | {
    "INPUT", "QUANTIZE", "DEQUANTIZE", "RESIZE_NEAREST_NEIGHBOR"}


def runtimes_for(path: str, target_runtime: str | None, quantized: bool = True, arch: str = "") -> list[str]:
    """Which runtimes an artifact is checked on: the target's own, plus LiteRT's reference kernels for
    a .tflite (the yardstick TFLM must match bit for bit), plus LiteRT's aarch64 build (under qemu-user)
    for a target whose runtime is an aarch64 LiteRT (``arch``, the profile's)."""
    if str(path).endswith(".onnx"):  # a QDQ file also as the ONNX spec computes it (the yardstick)
        return ["onnxruntime", "onnxruntime-ref"] if quantized else ["onnxruntime"]
    if target_runtime == "tflm":
        return ["tflm", "litert-ref"]
    if target_runtime == "litert":
        return ["litert", "litert-ref"] + (["litert-aarch64"] if arch == "aarch64" else [])
    return ["litert-ref", "litert", "tflm"]


def run_artifact(data: bytes, kind: str, runtime: str, samples: np.ndarray, out_shape=None,
                 progress: Progress | None = None, where: str = "the model") -> tuple[np.ndarray, np.ndarray | None]:
    """(dequantized outputs in the reference layout, raw integer outputs or None) for N samples.
    A .tflite runs in edgepack's runtime child process (isolated.py); ``where`` names the file."""
    if kind == "onnx":
        runner = OnnxRuntime(data, reference=runtime == "onnxruntime-ref")
        arrays = file_inputs(samples, [i.name for i in runner.inputs])
        outs = []
        for i in range(len(samples)):
            feeds = []
            for a, inp in zip(arrays, runner.inputs):  # data that does not fit: one line, not onnxruntime's
                static = all(isinstance(d, int) for d in inp.shape)
                feeds.append(to_file_layout(a[i:i + 1], inp.shape) if static else a[i:i + 1])
            outs.append(runner.run(*feeds)[0])
            if progress and ((i + 1) % 16 == 0 or i + 1 == len(samples)):
                progress("onnxruntime", (i % 16) + 1, len(samples))
        return np.concatenate(outs), None
    return isolated.run_tflite(data, runtime, samples, out_shape, where=where, progress=progress)


def validate(artifacts: dict[str, str], samples: np.ndarray, *, labels=None, reference: np.ndarray | None = None,
             target_runtime: str | None = None, progress: Progress | None = None, mode: str = "full",
             target_arch: str = "") -> dict:
    """Metrics per artifact and runtime. ``artifacts``: label -> path (.onnx or .tflite).

    ``reference``: float outputs (N, ...) to compare with (typically the float model on onnxruntime).
    ``mode`` "full": every runtime on every sample; "fast": each int8 artifact on its main runtime
    (``main_runtime``) on every sample, the other runs (TFLM, which must match LiteRT's reference kernels bit
    for bit, and the float .tflite) on the first FAST_SAMPLES; each result says its ``samples``.
    ``target_arch`` "aarch64": an int8 .tflite also runs on LiteRT's aarch64 build under qemu-user (like the
    repeat runs), compared with x86 LiteRT in LSBs (``vs_litert_x86``), or "not_run" with the reason when
    qemu or that build is not installed (tools/install_arm_runtime.sh)."""
    if len(samples) == 0:
        raise ConfigError("validation needs at least one sample")
    results: dict[str, dict] = {}
    for label, path in artifacts.items():
        data = Path(path).read_bytes()
        kind = "onnx" if str(path).endswith(".onnx") else "tflite"
        raws, int8 = {}, kind == "onnx" or _is_quantized(data)
        # LiteRT aarch64 on int8 files only: a float file has nothing to compare in LSBs
        for runtime in runtimes_for(path, target_runtime, b"QuantizeLinear" in data, target_arch if int8 else ""):
            n = len(samples)
            if mode == "fast" and not (int8 and runtime == main_runtime(path, target_runtime)):
                n = min(n, FAST_SAMPLES)
            key = f"{label}@{runtime}"
            ticks = _progress_of(progress, f"{label} on {isolated.NAMES.get(runtime, runtime)}")
            try:
                outs, raw = run_artifact(data, kind, runtime, samples[:n],
                                         reference.shape if reference is not None else None, ticks, str(path))
            except (UnsupportedOpError, isolated.RuntimeAbsent) as exc:  # e.g. TFLM has no GELU, no qemu here:
                results[key] = _not_run(str(path), runtime, exc)  # say so, check the other runtimes
                log.warning("%s not run on %s: %s", label, runtime, exc)
                continue
            ref = reference[:n] if reference is not None else None
            outs = _per_sample(outs, n, ref, f"{path} on {isolated.NAMES.get(runtime, runtime)}")
            results[key] = {"artifact": str(path), "runtime": runtime,
                            **(compare(ref, outs.reshape(ref.shape), labels[:n] if labels is not None else None)
                               if ref is not None else _accuracy_only(outs, labels[:n] if labels is not None else None))}
            if raw is not None or kind == "onnx":
                raws[runtime] = raw if raw is not None else outs
        if kind == "onnx" and raws.keys() >= {"onnxruntime", "onnxruntime-ref"}:
            n = min(len(raws["onnxruntime"]), len(raws["onnxruntime-ref"]))  # fast: the reference on the first
            results[f"{label}@onnxruntime"]["vs_onnxruntime_reference"] = fused_vs_reference(
                raws["onnxruntime"][:n], raws["onnxruntime-ref"][:n])
        if "tflm" in raws and "litert-ref" in raws:
            n = min(len(raws["tflm"]), len(raws["litert-ref"]))  # fast: TFLM ran on the first samples only
            a, b = raws["tflm"][:n].astype(np.int64), raws["litert-ref"][:n].astype(np.int64)
            if a.shape != b.shape:  # the file's shapes are inconsistent and the runtimes resolve them apart
                raise RuntimeFailure(f"{path}: TFLite Micro and LiteRT give outputs of different shapes "
                                     f"({list(a.shape[1:])} and {list(b.shape[1:])} per sample)")
            sqnr = {k: results.get(f"{label}@{r}", {}).get("sqnr_db") for k, r in (("tflm", "tflm"),
                                                                                   ("reference", "litert-ref"))}
            results[f"{label}@tflm"]["vs_litert_reference"] = tflm_vs_reference(a, b, read_tflite(data), sqnr)
        if "litert-aarch64" in raws and "litert" in raws:
            results[f"{label}@litert-aarch64"]["vs_litert_x86"] = arm_vs_x86(raws["litert-aarch64"], raws["litert"])
    return results


def _not_run(path: str, runtime: str, exc: Exception) -> dict:
    missing = {"missing_op": exc.op, "node": exc.node} if isinstance(exc, UnsupportedOpError) else {}
    return {"artifact": path, "runtime": runtime, "not_run": str(exc), **missing}


def arm_vs_x86(arm: np.ndarray, x86: np.ndarray) -> dict:
    """How LiteRT's aarch64 build (qemu-user) differs from the x86 one on the same int8 file, in output
    LSBs, over the samples both ran (fast mode: the aarch64 run has the first FAST_SAMPLES)."""
    if arm.shape[1:] != x86.shape[1:]:
        raise RuntimeFailure(f"LiteRT aarch64 and x86 give outputs of different shapes ({list(arm.shape[1:])} "
                             f"and {list(x86.shape[1:])} per sample)")
    n = min(len(arm), len(x86))
    diff = np.abs(arm[:n].astype(np.int64) - x86[:n].astype(np.int64))
    return {"identical_fraction": float(np.mean(diff == 0)) if diff.size else 1.0,
            "max_lsb": int(diff.max(initial=0)), "mean_lsb": float(diff.mean()) if diff.size else 0.0,
            "bit_exact": bool(not diff.any()), "samples": int(n), "litert_aarch64": aarch64.litert_version() or "?"}


def fused_vs_reference(fused: np.ndarray, ref: np.ndarray) -> dict:
    """How onnxruntime's fused integer kernels differ from the QDQ file's own arithmetic, and why."""
    from .metrics import sqnr_db
    from .cpu import ort_u8s8_saturates

    db = float(sqnr_db(ref, fused))
    out = {"identical_fraction": float(np.mean(fused == ref)), "sqnr_db": db if np.isfinite(db) else None}
    if db < FUSED_WARN_DB:
        out["why"] = ("onnxruntime's fused U8S8 integer kernels saturate their int16 pair sums on this CPU "
                      "(x86 without AVX-VNNI; onnxruntime issue 16105): the file is right, this CPU's kernels "
                      "lose accuracy; on VNNI x86 and ARM they match the reference, or use --onnx-activations "
                      "int8 (not fused on x86: slower, exact)" if ort_u8s8_saturates() else
                      "onnxruntime's fused integer kernels differ from the QDQ arithmetic on this CPU "
                      "(please report it)")
    return out


def main_runtime(path: str, target_runtime: str | None) -> str:
    """The runtime an artifact's outputs are measured on over every sample in fast mode: the first of
    ``runtimes_for`` (onnxruntime for .onnx, the target's own runtime for a .tflite: TFLM for a
    microcontroller, LiteRT for a phone; the others repeat it on the first FAST_SAMPLES)."""
    return runtimes_for(path, target_runtime)[0]


def _is_quantized(tflite: bytes) -> bool:
    return any(t.dtype in ("int8", "uint8", "int16") for t in read_tflite(tflite).tensors if not t.is_const)


def _progress_of(progress: Progress | None, what: str) -> Progress | None:
    """One progress line per artifact and runtime (the runtime child reports per runtime name)."""
    if progress is None:
        return None
    return lambda _runtime, done, total: progress(what, done, total)


def tflm_vs_reference(tflm: np.ndarray, ref: np.ndarray, info, sqnr: dict | None = None) -> dict:
    """How TFLM's integer outputs differ from LiteRT's reference kernels, and why (a chain of FULLY_CONNECTED
    layers: diagnose.fc_rounding, with the fix). ``sqnr``: {"tflm", "reference"} output SQNR vs float."""
    diff = np.abs(tflm.astype(np.int64) - ref.astype(np.int64))
    n_fc = sum(1 for o in info.ops if o.op == "FULLY_CONNECTED")
    out = {"identical_fraction": float(np.mean(diff == 0)), "max_lsb": int(diff.max(initial=0)),
           "mean_lsb": float(diff.mean()) if diff.size else 0.0, "bit_exact": bool(not diff.any())}
    if diff.any():
        out["why"] = (f"TFLM's int8 FULLY_CONNECTED rounds twice (multiply-high, then a rounding shift) where "
                      f"LiteRT's reference rounds once: up to 1 LSB per layer, carried through the "
                      f"{n_fc} FULLY_CONNECTED layer(s) of this file" if n_fc else
                      "the file has no FULLY_CONNECTED: an unexpected kernel difference (please report it)")
        found = fc_rounding(info, out["max_lsb"], out["identical_fraction"], sqnr)
        if found is not None:
            out["why"] = f"{found['cause']}: {found['detail']}. Fix: {found['fix']}"
            out["diagnosis"] = found
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
                   where: str = "the model", progress: Progress | None = None) -> dict:
    """SQNR of every int8 tensor (dequantized) against the same-named tensor of the float file,
    over the given samples: where int8 loses accuracy, layer by layer (on LiteRT's reference kernels,
    in the runtime child process), with the share of float values each int8 range clips."""
    ticks = _progress_of(progress, "per-layer error on LiteRT (reference kernels)")
    layers = isolated.layer_sqnr(int8_tflite, float_tflite, samples, where=where, progress=ticks)["layers"]
    # Pass-through ops (reshape, pad, ...) repeat their producer's error, and fixed-scale ops (softmax, ...)
    # cannot be fixed: rank the ops that compute with calibrated params.
    finite = [r for r in layers if np.isfinite(r["sqnr_db"]) and r["op"] not in PASS_THROUGH | FIXED_SCALE_OPS]
    return {"layers": layers, "worst": sorted(finite, key=lambda r: r["sqnr_db"])[:worst]}
