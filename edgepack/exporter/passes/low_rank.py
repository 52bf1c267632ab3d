"""Low-rank factorisation: a layer y = W x with W (out x in) becomes y = B (A x), A = sqrt(S_r) V_r^T
(r x in) and B = U_r sqrt(S_r) (out x r), the truncated SVD of W (Eckart-Young: the best rank-r W).

Gemm (weight out x in), 1x1 Conv of group 1 (out x in x 1 x 1; strides and pads go to the first conv) and
MatMul by a constant (in x out) are factorised; the bias and a fused activation stay on the second layer,
which writes the original output. The rank is the smallest that keeps the fraction ``energy`` of
sum(s^2), or the layer's own ``rank``. A layer is replaced only where ``cost`` (the target's latency or
energy model, passed in by pipeline.py: the exporter does not import targets) says the pair is cheaper
than the layer, so that a small layer whose per-op overhead outweighs its MACs is left alone.
"""
from __future__ import annotations

import logging
from typing import Callable, NamedTuple

import numpy as np

from edgepack.ir import Graph, Node, Tensor
from edgepack.ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)

Cost = Callable[[Graph], float]  # cost of every node of a (small) graph on the target


class Factorised(NamedTuple):
    node: str
    rank: int
    full_rank: int
    energy_kept: float
    cost_before: float
    cost_after: float


def _matrix(graph: Graph, node: Node) -> np.ndarray | None:
    """W as (out, in) for a factorisable node, else None."""
    w = graph.const(node.inputs[1]) if len(node.inputs) > 1 else None
    if w is None or not graph.tensors[node.inputs[1]].dtype.startswith("float"):
        return None
    if node.op == "Gemm" and w.ndim == 2:
        return w
    if node.op == "MatMul" and w.ndim == 2 and len(graph.tensors[node.inputs[0]].shape) >= 2:
        return w.T
    if node.op == "Conv" and w.ndim == 4 and w.shape[2:] == (1, 1) and int(node.attrs.get("group", 1)) == 1:
        return w[:, :, 0, 0]
    return None


def rank_for_energy(s: np.ndarray, energy: float) -> int:
    """The smallest r whose first r singular values hold the fraction ``energy`` of sum(s^2)."""
    e = np.cumsum(np.asarray(s, np.float64) ** 2)
    return int(min(np.searchsorted(e, float(energy) * e[-1] - 1e-12) + 1, len(s))) if e[-1] > 0 else 1


def _pair(graph: Graph, node: Node, a: np.ndarray, b: np.ndarray) -> tuple[list[Node], list[Tensor]]:
    """The two nodes replacing ``node`` and the tensors they add (A x, then B (A x) + bias)."""
    x, out = node.inputs[0], node.outputs[0]
    out_shape = tuple(graph.tensors[out].shape)
    r = a.shape[0]
    if node.op == "Conv":
        mid_shape = (out_shape[0], r, *out_shape[2:])
        wa, wb = a[:, :, None, None], b[:, :, None, None]
        first = {k: node.attrs[k] for k in ("strides", "pads", "dilations") if k in node.attrs}
        first.update(group=1, activation=None)
        second = {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1}
    elif node.op == "Gemm":
        mid_shape, wa, wb = (out_shape[0], r), a, b
        first, second = {"activation": None}, {}
    else:  # MatMul: x (..., in) @ W (in, out)
        mid_shape, wa, wb = (*out_shape[:-1], r), a.T, b.T
        first, second = {}, {}
    second = {**{k: v for k, v in node.attrs.items() if k not in ("strides", "pads", "dilations")}, **second}
    wname = node.inputs[1]
    ta = Tensor(graph.unique_name(f"{wname}.low_rank_a"), tuple(wa.shape), "float32", wa.astype(np.float32))
    tb = Tensor(graph.unique_name(f"{wname}.low_rank_b"), tuple(wb.shape), "float32", wb.astype(np.float32))
    mid = Tensor(graph.unique_name(f"{node.name}/low_rank_out"), mid_shape, graph.tensors[x].dtype)
    n1 = Node(graph.unique_name(f"{node.name}/low_rank_a"), node.op, [x, ta.name], [mid.name], first)
    n2 = Node(graph.unique_name(f"{node.name}/low_rank_b"), node.op, [mid.name, tb.name, *node.inputs[2:]],
              [out], second)
    return [n1, n2], [ta, tb, mid]


def isolated(graph: Graph, nodes: list[Node], extra: list[Tensor]) -> Graph:
    """A graph of just ``nodes`` (and the tensors they touch), for the cost model."""
    tensors = {t.name: t for t in extra}
    for n in nodes:
        for name in [*n.inputs, *n.outputs]:
            if name and name not in tensors:
                tensors[name] = graph.tensors[name]
    return Graph("cost", tensors, [n.copy() for n in nodes], [nodes[0].inputs[0]], list(nodes[-1].outputs))


class LowRankPass:
    """Copying pass: Gemm / MatMul / 1x1 Conv layers -> two thinner layers where ``cost`` falls.
    ``energy``: fraction of singular-value energy kept (None: only layers with a ``rank_of`` rank);
    ``rank_of(node, op)``: a layer's own rank (0: leave alone) or None. ``done``: what was factorised."""

    def __init__(self, energy: float | None, cost: Cost, rank_of: Callable[[str, str], int | None] = lambda n, o: None):
        self.energy, self.cost, self.rank_of = energy, cost, rank_of
        self.done: list[Factorised] = []
        graph_pass(self, in_place=False, name="low_rank")

    def _plan(self, graph: Graph, node: Node):
        w = _matrix(graph, node)
        own = self.rank_of(node.name, node.op)
        if w is None or own == 0 or (own is None and self.energy is None):
            return None
        u, s, vt = np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)
        r = min(int(own), len(s)) if own is not None else rank_for_energy(s, self.energy)
        root = np.sqrt(s[:r])
        a, b = root[:, None] * vt[:r], u[:, :r] * root[None, :]
        nodes, extra = _pair(graph, node, a, b)
        before, after = self.cost(isolated(graph, [node], [])), self.cost(isolated(graph, nodes, extra))
        kept = float((s[:r] ** 2).sum() / max((s ** 2).sum(), 1e-30))
        if after >= before and own is None:  # an explicit rank is the user's choice
            log.info("low rank: '%s' kept whole (rank %d of %d would cost %.3g, not less than %.3g)",
                     node.name, r, len(s), after, before)
            return None
        return nodes, extra, Factorised(node.name, r, len(s), kept, before, after)

    def __call__(self, graph: Graph) -> PassResult:
        self.done = []
        g = graph.copy()
        for node in list(g.nodes):
            plan = self._plan(g, node)
            if plan is None:
                continue
            nodes, extra, info = plan
            for t in extra:
                g.add_tensor(t)
            at = next(i for i, n in enumerate(g.nodes) if n is node)
            g.nodes[at:at + 1] = nodes
            g.tensors[node.outputs[0]].quant = None
            self.done.append(info)
            log.info("low rank: '%s' -> rank %d of %d (%.1f%% of the energy)", node.name, info.rank,
                     info.full_rank, 100 * info.energy_kept)
        if not self.done:
            return PassResult(graph, False)
        g.remove_unused()
        return PassResult(g, True)
