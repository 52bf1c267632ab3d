"""Agreement metrics between a reference (float) output and a tested output, in the STM32Cube.AI style."""
from __future__ import annotations

import numpy as np


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; inf when identical."""
    ref = np.asarray(reference, np.float64).ravel()
    noise = ref - np.asarray(test, np.float64).ravel()
    p_noise = float(np.sum(noise * noise))
    p_signal = float(np.sum(ref * ref))
    if p_noise == 0.0:
        return float("inf")
    if p_signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(p_signal / p_noise)


def compare(reference: np.ndarray, test: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Metrics of ``test`` against ``reference``, both (N, ...) arrays of the same shape.

    Which metrics apply depends on the output (``output_kind``): class scores get top-1 agreement (and
    accuracy with labels); dense maps and sequences get per-position argmax agreement instead, since one
    argmax over a whole map means nothing. ``metrics_used`` says which."""
    ref = np.asarray(reference, np.float64)
    out = np.asarray(test, np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"outputs of shape {out.shape} cannot be compared with {ref.shape}")
    r, t = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    diff = r - t
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(t, axis=1)
    cos = np.where(norms > 0, np.sum(r * t, axis=1) / np.where(norms > 0, norms, 1), 1.0)
    metrics = {
        "samples": int(len(r)),
        "cosine": float(np.mean(cos)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "mae": float(np.mean(np.abs(diff))),
        "l2r": float(np.linalg.norm(diff) / max(np.linalg.norm(r), 1e-30)),
        "sqnr_db": sqnr_db(r, t),
        "max_abs_error": float(np.max(np.abs(diff))) if diff.size else 0.0,
    }
    kind, axis = output_kind(ref.shape)
    metrics["output_kind"] = kind
    if kind == "dense":  # maps and sequences: argmax per position, over the class/channel axis
        metrics["per_position_agreement"] = float(np.mean(ref.argmax(axis) == out.argmax(axis)))
        metrics["metrics_used"] = (f"dense output {tuple(ref.shape[1:])}: SQNR, cosine and per-position argmax "
                                   f"agreement over axis {axis}; top-1 agreement does not apply")
    elif r.shape[1] > 1:
        metrics["metrics_used"] = f"class scores ({r.shape[1]} per sample): top-1 agreement"
        metrics["top1_agreement"] = float(np.mean(r.argmax(1) == t.argmax(1)))
        if labels is not None:
            metrics["accuracy"] = float(np.mean(t.argmax(1) == np.asarray(labels).ravel()[: len(t)]))
            metrics["reference_accuracy"] = float(np.mean(r.argmax(1) == np.asarray(labels).ravel()[: len(r)]))
    return metrics


def output_kind(shape) -> tuple[str, int]:
    """("class scores", 1) for (N, C) outputs (size-1 axes ignored), else ("dense", class axis): the
    channel axis 1 of an (N, C, H, W) map, the last axis of an (N, T, C) sequence."""
    dims = [d for d in shape[1:] if d != 1]
    if len(dims) <= 1:
        return "class scores", 1
    return "dense", (1 if len(shape) == 4 else len(shape) - 1)
