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

    top-1 agreement and accuracy treat the last axis of 2-D outputs as classes."""
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
    if r.shape[1] > 1:
        metrics["top1_agreement"] = float(np.mean(r.argmax(1) == t.argmax(1)))
        if labels is not None:
            metrics["accuracy"] = float(np.mean(t.argmax(1) == np.asarray(labels).ravel()[: len(t)]))
            metrics["reference_accuracy"] = float(np.mean(r.argmax(1) == np.asarray(labels).ravel()[: len(r)]))
    return metrics
