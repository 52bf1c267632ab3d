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

from edgepack.input_batch import as_float32
from ..errors import DataError
from ..ir import Graph
from .fc_weights import choose_fc_weights
from .observers import make_observer
from .output_error import db_or_none, quantized_output_sqnr
from .quantize import QuantRules, quantize_graph

log = logging.getLogger(__name__)

MAX_SAMPLES = 64


def int8_output_sqnr(graph: Graph, x: np.ndarray, method: str = "minmax", **observer_opts) -> float:
    """Output SQNR (dB, worst output) of the fake-quantized int8 graph against the float graph on ``x``.
    One float run feeds the observers (``collect_ranges``' statistics), the FC weight choice and the
    reference outputs: the same numbers as three runs, in a third of the time."""
    x = as_float32(x[:MAX_SAMPLES])
    return FloatPass(graph, x, method, **observer_opts).int8_output_sqnr(graph)


class FloatPass:
    """One float run of ``graph`` on ``x``: the activation ranges (``method``), the FC weight choice and
    the float outputs and Gemm inputs (``values``). ``int8_output_sqnr`` scores any graph computing the
    same float values with the same tensor names (a global pool written as MEAN) without running float
    again."""

    def __init__(self, graph: Graph, x: np.ndarray, method: str = "minmax", **observer_opts):
        from ..ir.torch_exec import run

        self.x = x
        observers = {t: make_observer(method, **observer_opts) for t in graph.activations()}

        def observe(name, value):
            if name in observers:
                observers[name].update(value.detach().numpy())
        gemm_inputs = {n.inputs[0] for n in graph.nodes if n.op == "Gemm" and graph.const(n.inputs[1]) is not None}
        self.values = run(graph, [x], keep=sorted(gemm_inputs), observe=observe)
        self.ranges = {t: tuple(float(v) for v in obs.range()) for t, obs in observers.items()}
        self.rules = QuantRules(per_channel_nodes=choose_fc_weights(graph, x, float_values=self.values).per_channel)

    def int8_output_sqnr(self, graph: Graph) -> float:
        return quantized_output_sqnr(graph, quantize_graph(graph, self.ranges, self.rules), self.x, ref=self.values)


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
        return {"rewrite": self.name, "kept": self.kept, "sqnr_without_db": db_or_none(self.sqnr_without_db),
                "sqnr_with_db": db_or_none(self.sqnr_with_db)}


def keep_if_not_worse(before: Graph, after: Graph, x: np.ndarray, name: str, method: str = "minmax",
                      **observer_opts) -> tuple[Graph, RewriteCheck]:
    """``after`` when its int8 output SQNR on ``x`` is >= ``before``'s, else ``before``; with the check."""
    without = int8_output_sqnr(before, x, method, **observer_opts)
    try:
        with_ = int8_output_sqnr(after, x, method, **observer_opts)
    except DataError:  # the rewrite gave ranges no int8 scale can hold: as bad as it gets
        with_ = float("-inf")
    check = RewriteCheck(name, bool(with_ >= without), without, with_)
    log.info(check.note)
    return (after if check.kept else before), check


