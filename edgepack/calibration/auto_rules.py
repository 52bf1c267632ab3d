"""When one calibration option beats another at the model output (auto.py's choices): a gain of at least
MIN_GAIN_DB that is not chance, and among options within noise of the best, the one clipping least."""
from __future__ import annotations

import numpy as np

from .output_error import db_or_none, ratio_to_db

MIN_GAIN_DB = 0.1  # a change of choice must gain this much at the output (ties keep the current one)
SIGNIFICANCE = 2.0  # ... and its per-sample gain must exceed this many standard errors (not noise)


def output_db(noise: np.ndarray) -> float:
    """Worst-output SQNR (dB) from ``GroupScorer.output_noise``."""
    return ratio_to_db(float(noise.sum(0).max()))


def better(trial: np.ndarray, current: np.ndarray) -> bool:
    """``trial`` gains at least MIN_GAIN_DB at the output and the gain is not chance: the per-sample
    noise drop is above SIGNIFICANCE standard errors (paired over the scoring samples)."""
    return output_db(trial) >= output_db(current) + MIN_GAIN_DB and significant(trial, current)


def significant(trial: np.ndarray, current: np.ndarray) -> bool:
    """``trial`` lowers the output noise and the per-sample drop is above SIGNIFICANCE standard errors
    (paired over the scoring samples), however small the gain in dB."""
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


def join_small_gains(scorer, changes: list[dict], current: np.ndarray):
    """Changes (parameter dicts, one per tensor group) that each gained significantly but less than
    MIN_GAIN_DB, tried together on ``scorer`` (auto.GroupScorer): many small consistent gains add up, and
    the joint change must pass the test a single one does (``better``), so the evidence standard stays.
    Returns the joint output noise (the change is then accepted on the scorer), or None (nothing changed)."""
    params = {k: v for change in changes for k, v in change.items()}
    if not params:
        return None
    noise, env = scorer.trial(params)
    if not better(noise, current):
        return None
    scorer.accept(params, env)
    return noise


def try_group(scorer, root, params_of, labels, current: dict, best_noise, small: dict, record) -> np.ndarray:
    """Tries ``labels`` (``params_of(label)``: the group's parameters) at the model output; a ``better``
    one replaces ``current[root]``; one gaining significantly but less goes to ``small`` (tried jointly,
    ``join_small_gains``). Returns the output noise kept."""
    for label in labels:
        noise, env = scorer.trial(params_of(label))
        if better(noise, best_noise):
            record["output_gain_db"] = db_or_none(output_db(noise) - output_db(best_noise))
            best_noise, current[root] = noise, label
            scorer.accept(params_of(label), env)
            small.pop(root, None)
        elif root not in small and significant(noise, best_noise):
            small[root] = label
    return best_noise
