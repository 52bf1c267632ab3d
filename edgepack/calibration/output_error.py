"""How far a quantized graph's outputs are from float: the one SQNR every calibration check uses."""
from __future__ import annotations

import numpy as np

from ..ir import Graph


def quantized_output_sqnr(graph: Graph, qgraph: Graph, x: np.ndarray, ref: dict | None = None) -> float:
    """Output SQNR (dB, worst output) of ``qgraph`` fake-quantized against the float ``graph`` on ``x``
    (``ref``: the float outputs when already computed)."""
    from ..ir.torch_exec import run  # torch only where a graph runs

    ref = ref if ref is not None else run(graph, [x])
    return output_sqnr_db(ref, run(qgraph, [x], fake_quant=True), graph.outputs)


def output_sqnr_db(ref: dict, got: dict, outputs) -> float:
    """SQNR (dB) of ``got`` against ``ref`` at the worst of ``outputs`` (-inf when not finite)."""
    worst = float("inf")
    for name in outputs:
        r, t = np.asarray(ref[name], np.float64), np.asarray(got[name], np.float64)
        noise, signal = float(np.sum((r - t) ** 2)), float(np.sum(r * r))
        if not np.isfinite(noise):
            return float("-inf")
        if noise > 0:
            worst = min(worst, 10.0 * np.log10(max(signal, 1e-300) / noise))
    return worst


def ratio_to_db(ratio: float) -> float:
    """-10 log10 of a noise-to-signal ratio (inf for no noise)."""
    return float("inf") if ratio <= 0 else -10.0 * float(np.log10(ratio))


def db_or_none(v: float) -> float | None:
    """A dB figure for a report: 2 decimals, None when not finite (JSON has no inf)."""
    return round(float(v), 2) if np.isfinite(v) else None
