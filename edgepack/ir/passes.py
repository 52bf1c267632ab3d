"""The pass contract: a pass is ``(graph) -> PassResult(graph, changed)``, declared in place (it edits and
returns the graph it is given) or copying (it returns a new graph and leaves its input alone), and run by
``run_passes``, which checks the declaration and verifies the graph after each pass.

Declare with ``@graph_pass(in_place=True)``; ``graph_pass(..., name=...)`` also names a closure (a pass
bound to its settings, e.g. a pruning ratio). The contract lives in ``ir`` so that the frontends'
normalisations and the exporter's passes share it (frontends may not import the exporter).
"""
from __future__ import annotations

import logging
from typing import Callable, NamedTuple, Sequence

from .graph import Graph, verify

log = logging.getLogger(__name__)


class PassResult(NamedTuple):
    graph: Graph
    changed: bool


Pass = Callable[[Graph], PassResult]


class PassContractError(RuntimeError):
    """A pass broke its declaration: a bug in edgepack, not something a user can cause."""


def graph_pass(fn: Callable | None = None, *, in_place: bool = True, name: str | None = None):
    """Declare ``fn`` a pass: ``@graph_pass`` (in place), ``@graph_pass(in_place=False)`` (copying), or
    ``graph_pass(closure, name="prune", in_place=False)``."""
    def declare(f):
        f.in_place = in_place
        f.pass_name = name or f.__name__
        return f
    return declare(fn) if fn is not None else declare


def _fingerprint(graph: Graph) -> tuple:
    """Cheap identity of a graph's structure: its node objects in order, its tensor and output names."""
    return tuple(map(id, graph.nodes)), len(graph.tensors), tuple(graph.outputs)


def run_one(graph: Graph, graph_pass: Pass) -> PassResult:
    """Run one declared pass and check its declaration."""
    if not hasattr(graph_pass, "in_place"):
        raise PassContractError(f"{getattr(graph_pass, '__name__', graph_pass)!r} is not declared with "
                                "@graph_pass (in place or copying)")
    before = None if graph_pass.in_place else _fingerprint(graph)
    result = PassResult(*graph_pass(graph))
    if graph_pass.in_place and result.graph is not graph:
        raise PassContractError(f"pass {graph_pass.pass_name} is declared in place but returned another graph")
    if not graph_pass.in_place and _fingerprint(graph) != before:
        raise PassContractError(f"pass {graph_pass.pass_name} is declared copying but changed its input graph")
    return result


def run_passes(graph: Graph, passes: Sequence[Pass], copy: bool = True) -> Graph:
    """Run the passes in order (on a copy of ``graph`` unless ``copy=False``), verifying after each."""
    graph = graph.copy() if copy else graph
    verify(graph)
    for graph_pass in passes:
        before = graph.op_counts()
        graph, changed = run_one(graph, graph_pass)
        verify(graph)
        if changed:
            after = graph.op_counts()
            delta = {op: after.get(op, 0) - before.get(op, 0) for op in sorted(set(before) | set(after))}
            delta = {op: d for op, d in delta.items() if d}
            log.info("pass %s changed the graph (op count change: %s)", graph_pass.pass_name, delta or "none")
        else:
            log.debug("pass %s: nothing to do", graph_pass.pass_name)
    return graph


__all__ = ["Pass", "PassContractError", "PassResult", "graph_pass", "run_one", "run_passes"]
