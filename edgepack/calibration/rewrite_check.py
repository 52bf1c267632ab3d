"""A graph rewrite (equalisation, ...) is kept only when it does not make int8 worse.

Exact-in-float rewrites change how well int8 represents the model, for better or worse (a rescaled dead
channel can blow up an activation range). Both graphs are calibrated and fake-quantized (ir.torch_exec,
int32 biases and int8 weights rounded as the emitters write them) on the same calibration samples, and
the rewrite is kept when its int8 output SQNR against its own float output is not lower.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..ir import Graph
from ..ir.torch_exec import run
from .calibrate import collect_ranges
from .fc_weights import choose_fc_weights
from .quantize import QuantRules, quantize_graph

log = logging.getLogger(__name__)

MAX_SAMPLES = 64


def int8_output_sqnr(graph: Graph, x: np.ndarray, method: str = "minmax", **observer_opts) -> float:
    """Output SQNR (dB, worst output) of the fake-quantized int8 graph against the float graph on ``x``."""
    x = np.asarray(x[:MAX_SAMPLES], np.float32)
    ranges, _ = collect_ranges(graph, [x], method, **observer_opts)
    rules = QuantRules(per_channel_nodes=choose_fc_weights(graph, x).per_channel)
    q = quantize_graph(graph, ranges, rules)
    ref, got = run(graph, [x]), run(q, [x], fake_quant=True)
    worst = float("inf")
    for name in graph.outputs:
        r, t = np.asarray(ref[name], np.float64), np.asarray(got[name], np.float64)
        noise, signal = float(np.sum((r - t) ** 2)), float(np.sum(r * r))
        if not np.isfinite(noise):
            return float("-inf")
        if noise > 0:
            worst = min(worst, 10.0 * np.log10(max(signal, 1e-300) / noise))
    return worst


@dataclass
class RewriteCheck:
    name: str
    kept: bool
    sqnr_without_db: float
    sqnr_with_db: float

    @property
    def note(self) -> str:
        verdict = "kept" if self.kept else "reverted (it made int8 worse)"
        return (f"{self.name} {verdict}: int8 output SQNR on the calibration samples "
                f"{self.sqnr_without_db:.1f} dB without, {self.sqnr_with_db:.1f} dB with")

    def to_json(self) -> dict:
        return {"rewrite": self.name, "kept": self.kept, "sqnr_without_db": _finite(self.sqnr_without_db),
                "sqnr_with_db": _finite(self.sqnr_with_db)}


def keep_if_not_worse(before: Graph, after: Graph, x: np.ndarray, name: str, method: str = "minmax",
                      **observer_opts) -> tuple[Graph, RewriteCheck]:
    """``after`` when its int8 output SQNR on ``x`` is >= ``before``'s, else ``before``; with the check."""
    without = int8_output_sqnr(before, x, method, **observer_opts)
    with_ = int8_output_sqnr(after, x, method, **observer_opts)
    check = RewriteCheck(name, bool(with_ >= without), without, with_)
    log.info(check.note)
    return (after if check.kept else before), check


def _finite(v: float) -> float | None:
    return round(float(v), 2) if np.isfinite(v) else None
