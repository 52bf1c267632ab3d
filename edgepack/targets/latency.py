"""Latency estimate of an IR graph on a target profile: an analytical cost model, not a measurement.

Each node is given an op kind (``profile.COST_KINDS``), an amount of work and a number of output
elements, and costs

    cycles = cycles_per_mac[kind] * work + cycles_per_output[kind] * output elements + overhead[kind]

- work is the node's multiply-accumulates for Conv/Gemm/MatMul (``ir.summary.node_macs``; a conv's
  output channels rounded up to the profile's ``round_to``, the channel tile of its kernels: XNNPACK
  computes 16 at a time, so 8 channels cost what 16 cost) and the elements read for pooling (output elements x window, or the whole input for global pools and means);
  other ops have no work term;
- the per-output term is the requantization and store of every output element for conv/FC kinds, and
  the whole per-element cost for elementwise and data-movement ops;
- the overhead is the runtime's per-op cost (interpreter loop, kernel set-up, thread dispatch).

Time = cycles / clock. The coefficients of each target live in its profile's [cost] tables; for the MCU
profiles they were fitted on published MLPerf Tiny results by ``benchmarks/fit_latency.py``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from ..ir import OPS, Graph, Node
from ..ir.summary import node_macs
from .profile import COST_KINDS, TargetProfile

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class NodeLatency:
    name: str
    op: str  # IR op type
    kind: str  # cost-model op kind
    macs: int  # work term: MACs, or elements read for pooling
    outputs: int  # output elements
    cycles: float
    ms: float


@dataclass(frozen=True)
class LatencyEstimate:
    target: str
    clock_mhz: float
    cost_model: str  # fitted | derived | rough: how far to trust the number
    total_cycles: float
    total_ms: float
    nodes: tuple[NodeLatency, ...]
    per_op: Mapping[str, float]  # ms per IR op type, largest first
    per_kind: Mapping[str, float]  # ms per cost-model op kind, largest first

    def top(self, n: int = 5) -> list[NodeLatency]:
        """The ``n`` slowest nodes, slowest first."""
        return sorted(self.nodes, key=lambda r: -r.cycles)[:n]

    def to_dict(self) -> dict:
        return {"target": self.target, "clock_mhz": self.clock_mhz, "cost_model": self.cost_model,
                "total_ms": self.total_ms, "total_cycles": self.total_cycles,
                "per_op_ms": dict(self.per_op), "per_kind_ms": dict(self.per_kind),
                "nodes": [vars(r).copy() for r in self.nodes]}


def op_kind(graph: Graph, node: Node) -> str | None:
    """The cost-model kind of ``node`` (the op table's ``cost``, a Conv refined by its shape), or None for
    ops that are not run (Identity, Dropout)."""
    op = node.op
    if op == "Conv":
        w = graph.tensors[node.inputs[1]].shape  # (Cout, Cin/group, kh, kw)
        group = int(node.attrs.get("group", 1))
        if group > 1 and w[1] == 1:
            return "depthwise"  # one input channel per group (channel multiplier allowed)
        if group == 1 and tuple(w[2:]) == (1, 1):
            return "pointwise"
        return "conv"  # k x k, and grouped convolutions that are not depthwise
    return OPS[op].cost


def _size(graph: Graph, name: str) -> int:
    return int(np.prod(graph.tensors[name].shape, dtype=np.int64))


def node_work(graph: Graph, node: Node, kind: str) -> int:
    """The work term of a node: MACs for conv/FC kinds, elements read for pooling, else 0."""
    if kind in ("conv", "pointwise", "depthwise", "fully_connected"):
        return node_macs(graph, node)
    if kind == "pooling":
        if node.op in ("MaxPool", "AveragePool"):
            kh, kw = node.attrs.get("kernel_shape", (1, 1))
            return _size(graph, node.outputs[0]) * int(kh) * int(kw)
        return _size(graph, node.inputs[0])  # global pools and means read the whole input
    return 0


def estimate_latency(graph: Graph, profile: TargetProfile) -> LatencyEstimate:
    """Estimated single-inference latency of ``graph`` on ``profile`` (batch as in the graph)."""
    work = []
    for node in graph.nodes:
        kind = op_kind(graph, node)
        if kind is not None:
            outputs = sum(_size(graph, o) for o in node.outputs if o)
            work.append((node.name, node.op, kind, node_work(graph, node, kind) * _tiles(graph, node, kind,
                                                                                         profile.round_to), outputs))
    return price(work, profile)


def _tiles(graph: Graph, node: Node, kind: str, tile: int) -> float:
    """How much work a conv's output channels, rounded up to whole tiles of ``tile``, add over its MACs."""
    if kind not in ("conv", "pointwise") or tile <= 1:
        return 1.0
    cout = int(graph.tensors[node.inputs[1]].shape[0])
    return -(-cout // tile) * tile / cout


def price(work, profile: TargetProfile) -> LatencyEstimate:
    """The cost model over ``work``: (name, op, kind, MACs or elements read, output elements) per op."""
    hz = profile.clock_mhz * 1e6
    rows = []
    for name, op, kind, macs, outputs in work:
        cycles = profile.cost[kind].cycles(macs, outputs)
        rows.append(NodeLatency(name, op, kind, int(macs), int(outputs), cycles, cycles / hz * 1e3))
    total = sum(r.cycles for r in rows)
    log.debug("latency on %s: %.0f cycles over %d nodes", profile.name, total, len(rows))
    return LatencyEstimate(
        target=profile.name, clock_mhz=profile.clock_mhz, cost_model=profile.cost_model,
        total_cycles=total, total_ms=total / hz * 1e3, nodes=tuple(rows),
        per_op=_grouped(rows, "op"), per_kind=_grouped(rows, "kind"))


def _grouped(rows: list[NodeLatency], key: str) -> Mapping[str, float]:
    sums: dict[str, float] = {}
    for r in rows:
        sums[getattr(r, key)] = sums.get(getattr(r, key), 0.0) + r.ms
    return MappingProxyType(dict(sorted(sums.items(), key=lambda kv: (-kv[1], kv[0]))))


__all__ = ["COST_KINDS", "LatencyEstimate", "NodeLatency", "estimate_latency", "node_work", "op_kind",
           "price"]
