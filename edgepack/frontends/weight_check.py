"""Loaded weights must be numbers a trained model can hold: NaN anywhere, or an infinite or absurdly large
weight or bias, gives an int8 file with NaN/inf scales that still "fits". Refused once, after loading,
with the tensor and the node that uses it."""
from __future__ import annotations

import numpy as np

from ..errors import ModelLoadError
from ..ir import Graph, iter_weights

MAX_WEIGHT = 1e10  # far above any trained weight (BatchNorm folding included), far below float32's max


def check_weights(graph: Graph) -> None:
    users = {}
    for node in graph.nodes:
        for name in node.inputs:
            users.setdefault(name, node.name)
    for name in sorted(users):
        t = graph.tensors.get(name)
        if t is None or not t.is_const or not t.dtype.startswith("float") or t.data is None:
            continue
        nan = int(np.count_nonzero(np.isnan(t.data)))
        if nan:
            raise ModelLoadError(f"constant '{name}' (used by node '{users[name]}') holds {nan} NaN "
                                 f"value{'s' if nan > 1 else ''}: the model file is broken or was saved mid-training")
    for node, _, t in iter_weights(graph):
        if not t.dtype.startswith("float") or t.data is None or not t.data.size:
            continue
        peak = float(np.max(np.abs(t.data)))
        if not peak <= MAX_WEIGHT:
            value = "an infinite value" if np.isinf(peak) else f"{peak:.3g}"
            raise ModelLoadError(f"weight '{t.name}' of node '{node.name}' holds {value} "
                                 f"(allowed: finite values up to {MAX_WEIGHT:g} in magnitude)")
