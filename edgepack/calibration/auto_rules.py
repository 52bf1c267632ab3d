"""When one calibration option beats another at the model output (auto.py's choices): a gain of at least
MIN_GAIN_DB that is not chance; of starting options equal at the output, the one clipping least."""
from __future__ import annotations

import numpy as np

from .output_error import ratio_to_db

MIN_GAIN_DB = 0.1  # a change of choice must gain this much at the output (ties keep the current one)
SIGNIFICANCE = 2.0  # ... and its per-sample gain must exceed this many standard errors (not noise)
EQUAL_DB = 0.05  # starting methods this close at the output count as equal (the least clipping one wins)


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
    """The option with the best output SQNR on the scoring samples, or of those within EQUAL_DB of it, the
    one clipping the least energy. Scoring samples are calibration samples, which never show the clipping
    unseen data meets: a clipping option that scores higher anyway has earned it, an equal score has not.
    Measured held-out (benchmarks/results/autoquant.md): mobilenet_v3's percentile:99.99 and :99.999 equal
    in-sample, 28.35 and 29.12 dB held-out; treating every gain below significance as a tie lost 0.21 dB on
    ctc_recognizer (mse +0.13 dB in-sample, +0.21 dB held-out)."""
    dbs = {label: output_db(noise) for label, noise in noises.items()}
    top = max(dbs.values())
    return min((label for label in noises if dbs[label] >= top - EQUAL_DB), key=lambda label: clipped[label])
