"""How far a quantized graph's outputs are from float: the one SQNR every calibration check uses."""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from ..ir.torch_exec import run


def quantized_output_sqnr(graph: Graph, qgraph: Graph, x: np.ndarray, ref: dict | None = None) -> float:
    """Output SQNR (dB, worst output) of ``qgraph`` fake-quantized against the float ``graph`` on ``x``
    (``ref``: the float outputs when already computed)."""
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
