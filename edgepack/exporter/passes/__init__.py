"""Graph passes: each is ``pass_name(graph) -> (graph, changed)``, run in order from one list.

Passes edit the graph they are given; ``run_passes`` hands them a copy, so the caller's graph is untouched.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from edgepack.ir import Graph, verify

from .cleanup import remove_dead, remove_identity
from .fold_bn import fold_batchnorm
from .fuse import fuse_activations
from .layernorm import decompose_layernorm

log = logging.getLogger(__name__)

Pass = Callable[[Graph], "tuple[Graph, bool]"]

DEFAULT_PASSES: list[Pass] = [
    remove_identity,   # Identity / Dropout are no-ops at inference
    fold_batchnorm,    # BN into Conv/Gemm weights, else Mul + Add
    decompose_layernorm,  # LayerNormalization -> ReduceMean/Sub/Mul/Add/Rsqrt (no TFLite builtin)
    fuse_activations,  # Relu / Relu6 into Conv, Gemm, Add, Sub, Mul
    remove_dead,       # whatever the passes above left unread
]


def run_passes(graph: Graph, passes: Sequence[Pass] = DEFAULT_PASSES) -> Graph:
    """Run the passes in order on a copy of ``graph``, verifying the graph after each one."""
    graph = graph.copy()
    verify(graph)
    for graph_pass in passes:
        before = graph.op_counts()
        graph, changed = graph_pass(graph)
        verify(graph)
        if changed:
            after = graph.op_counts()
            delta = {op: after.get(op, 0) - before.get(op, 0) for op in sorted(set(before) | set(after))}
            delta = {op: d for op, d in delta.items() if d}
            log.info("pass %s changed the graph (op count change: %s)", graph_pass.__name__, delta or "none")
        else:
            log.debug("pass %s: nothing to do", graph_pass.__name__)
    return graph


__all__ = ["DEFAULT_PASSES", "run_passes", "remove_identity", "remove_dead", "fold_batchnorm",
           "fuse_activations", "decompose_layernorm"]
