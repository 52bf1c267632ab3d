"""When one calibration option beats another at the model output (auto.py's choices): a gain of at least
MIN_GAIN_DB that is not chance, and among options within noise of the best, the one clipping least."""
from __future__ import annotations

import numpy as np

from .output_error import ratio_to_db

MIN_GAIN_DB = 0.1  # a change of choice must gain this much at the output (ties keep the current one)
SIGNIFICANCE = 2.0  # ... and its per-sample gain must exceed this many standard errors (not noise)


def output_db(noise: np.ndarray) -> float:
    """Worst-output SQNR (dB) from ``GroupScorer.output_noise``."""
    return ratio_to_db(float(noise.sum(0).max()))


def better(trial: np.ndarray, current: np.ndarray) -> bool:
    """``trial`` gains at least MIN_GAIN_DB at the output and the gain is not chance: the per-sample
    noise drop is above SIGNIFICANCE standard errors (paired over the scoring samples)."""
    if output_db(trial) < output_db(current) + MIN_GAIN_DB:
        return False
    d = current.sum(1) - trial.sum(1)
    if not np.isfinite(d).all():
        return bool(np.isfinite(trial).all())
    spread = float(d.std(ddof=1)) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    return float(d.mean()) > SIGNIFICANCE * spread


def least_clipping_of_the_best(noises: dict[str, np.ndarray], clipped: dict[str, float]) -> str:
    """The best option by output noise (``better``; earlier options win ties), or among the options it does
    not beat beyond noise, the one clipping the least energy: scoring samples are calibration samples, so
    they never show the clipping unseen data meets. Measured held-out (benchmarks/results/autoquant.md):
    mobilenet_v3's percentile:99.99 and :99.999 equal in-sample; auto from :99.99 28.35 dB held-out (mse
    alone 29.02), from :99.999 28.86 (mse 28.82); taking the
    in-sample best outright (only < 0.05 dB counted as a tie) fixed ctc_recognizer (-0.21 -> 0 dB) but fell
    below minmax on faces_cnn (-0.20 dB, entropy) and fc_autoencoder (-0.11 dB, mse)."""
    best = None
    for label, noise in noises.items():
        if best is None or better(noise, noises[best]):
            best = label
    ties = [label for label in noises if not better(noises[best], noises[label])]
    return min(ties, key=lambda label: clipped[label])
