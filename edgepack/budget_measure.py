"""What the accuracy budget measures (budget.py) and the simulation its steps try layer choices in.

``Measure``: output SQNR of the int8 graph (fake-quant, ir.torch_exec) against float and, for ``top1``, the
points of top-1 agreement (or accuracy, with labels) lost. ``Simulator`` holds the float outputs of the
samples once, so a step can score many per-layer precision choices (int16, float marks on a copy of the
int8 graph) by their measured effect on the model's output, not by each layer's own error.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .calibration.output_error import db_or_none, output_sqnr_db

RANKING_SAMPLES = 512  # samples a step ranks single layers on (a chosen set is measured on all of them)


@dataclass(frozen=True)
class Measure:
    sqnr_db: float
    top1_lost: float | None = None  # points of agreement (or accuracy with labels) lost to int8
    agreement: float | None = None
    accuracy: tuple[float, float] | None = None  # (float, int8) with labels

    def meets(self, metric: str, value: float) -> bool:
        return self.top1_lost <= value + 1e-9 if metric == "top1" else self.sqnr_db >= value

    def key(self) -> tuple:
        """Sort key, best first: fewer top-1 points lost, then more output SQNR."""
        return (self.top1_lost if self.top1_lost is not None else 0.0, -self.sqnr_db)

    def to_json(self) -> dict:
        out = {"sqnr_db": db_or_none(self.sqnr_db)}
        if self.top1_lost is not None:
            out.update(top1_points_lost=round(self.top1_lost, 3), top1_agreement=round(self.agreement, 4))
        if self.accuracy is not None:
            out.update(accuracy_float=round(self.accuracy[0], 4), accuracy_int8=round(self.accuracy[1], 4))
        return out


def compare(graph, ref: dict, got: dict, n: int, labels, metric: str) -> Measure:
    """The int8 outputs ``got`` against the float ones ``ref`` of ``n`` samples."""
    out = graph.outputs[0]
    sqnr = output_sqnr_db(ref, got, graph.outputs)
    if metric != "top1":
        return Measure(sqnr)
    f, q = (np.asarray(v[out]).reshape(n, -1).argmax(1) for v in (ref, got))
    agreement = float(np.mean(f == q))
    if labels is None:
        return Measure(sqnr, 100.0 * (1.0 - agreement), agreement)
    accuracy = (float(np.mean(f == labels)), float(np.mean(q == labels)))
    return Measure(sqnr, 100.0 * (accuracy[0] - accuracy[1]), agreement, accuracy)


def measure(graph, qgraph, x: np.ndarray, labels, metric: str) -> Measure:
    """The int8 graph (fake-quant) against the float graph on ``x``."""
    from .ir.torch_exec import run

    return compare(graph, run(graph, [x]), run(qgraph, [x], fake_quant=True), len(x), labels, metric)


class Simulator:
    """The int8 graph with some layers marked int16 or float, measured against float on the samples."""

    def __init__(self, graph, x: np.ndarray, labels, metric: str):
        from .ir.torch_exec import run

        self.graph, self.metric, self.x, self.labels = graph, metric, x, labels
        self.ref = run(graph, [x])

    def measure(self, qgraph, marks: dict[str, str] | None = None, ranking: bool = False,
                bias_deltas: dict | None = None) -> Measure:
        """``qgraph`` with ``marks`` ({node: "int16" | "float"}) set for the run (then restored); on the
        first RANKING_SAMPLES samples only with ``ranking``. A float-marked layer runs with its float bias
        (``bias_deltas``: the bias corrections folded into the int8 graph), as the rebuilt graph will."""
        from .ir.torch_exec import run

        count = min(len(self.x), RANKING_SAMPLES) if ranking else len(self.x)
        undo = _mark(qgraph, marks or {}, bias_deltas or {})
        try:
            got = run(qgraph, [self.x[:count]], fake_quant=True)
        finally:
            undo()
        ref = {k: v[:count] for k, v in self.ref.items()}
        labels = None if self.labels is None else self.labels[:count]
        return compare(self.graph, ref, got, count, labels, self.metric)


def _mark(qgraph, marks: dict[str, str], bias_deltas: dict):
    """Set ``marks`` on ``qgraph`` (float layers: bias correction taken out); returns the undo."""
    from .ir.precision import PRECISION_ATTR

    nodes = {n.name: n for n in qgraph.nodes}
    attrs = {name: nodes[name].attrs.get(PRECISION_ATTR) for name in marks}
    biases = {}
    for name, precision in marks.items():
        nodes[name].attrs[PRECISION_ATTR] = precision
        bias = nodes[name].inputs[2] if len(nodes[name].inputs) > 2 else None
        if precision == "float" and bias in bias_deltas:
            t = qgraph.tensors[bias]
            biases[bias] = t.data
            t.data = (np.asarray(t.data, np.float64) + np.asarray(bias_deltas[bias])).astype(t.data.dtype)

    def undo():
        for name, old in attrs.items():
            if old is None:
                nodes[name].attrs.pop(PRECISION_ATTR, None)
            else:
                nodes[name].attrs[PRECISION_ATTR] = old
        for bias, data in biases.items():
            qgraph.tensors[bias].data = data
    return undo
