"""Tensor, Node and Graph: the representation every stage speaks.

Semantics are ONNX's: NCHW activations, OIHW conv weights, static shapes.
A tensor with ``data`` is a constant (weight, bias, shape); the others are activations.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .ops import OPS
from .quant import QuantParams


class GraphError(Exception):
    """The graph is inconsistent: a bug in a frontend or pass, not a user error."""


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None
    quant: QuantParams | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def activation(self) -> str | None:
        return self.attrs.get("activation")


@dataclass
class Graph:
    name: str = "model"
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    # ---- lookups -------------------------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise GraphError(f"no tensor named '{name}'") from None

    def const(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else t.data

    def producer(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise GraphError(f"no node named '{name}'")

    def activations(self) -> list[str]:
        """Names of the non-constant tensors, graph inputs first, then in node order."""
        seen = list(self.inputs)
        for n in self.nodes:
            seen.extend(o for o in n.outputs if o not in seen)
        return seen

    # ---- edits ---------------------------------------------------------------------------
    def add_tensor(self, t: Tensor) -> Tensor:
        self.tensors[t.name] = t
        return t

    def add_const(self, name: str, data: np.ndarray) -> str:
        name = self.unique_name(name)
        data = np.asarray(data)
        self.tensors[name] = Tensor(name, tuple(data.shape), str(data.dtype), data)
        return name

    def unique_name(self, base: str) -> str:
        names = set(self.tensors) | {n.name for n in self.nodes}
        if base not in names:
            return base
        i = 1
        while f"{base}_{i}" in names:
            i += 1
        return f"{base}_{i}"

    def replace_uses(self, old: str, new: str) -> None:
        """Make every consumer (and graph output) of ``old`` read ``new`` instead."""
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def remove_unused(self) -> None:
        """Drop nodes whose outputs nobody reads and tensors nobody references."""
        changed = True
        while changed:
            used = set(self.outputs)
            for n in self.nodes:
                used.update(n.inputs)
            keep = [n for n in self.nodes if any(o in used for o in n.outputs)]
            changed = len(keep) != len(self.nodes)
            self.nodes = keep
        referenced = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            referenced.update(n.inputs)
            referenced.update(n.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in referenced}

    def toposort(self) -> None:
        ready = set(self.inputs) | {k for k, t in self.tensors.items() if t.is_const} | {""}
        pending, ordered = list(self.nodes), []
        while pending:
            progress = False
            for n in list(pending):
                if all(i in ready for i in n.inputs):
                    ordered.append(n)
                    ready.update(n.outputs)
                    pending.remove(n)
                    progress = True
            if not progress:
                raise GraphError(f"graph has a cycle or a missing input at node '{pending[0].name}'")
        self.nodes = ordered

    def copy(self) -> "Graph":
        return copy.deepcopy(self)

    # ---- summaries -----------------------------------------------------------------------
    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def param_count(self) -> int:
        return sum(t.size for t in self.tensors.values() if t.is_const and t.dtype.startswith("float"))


def verify(graph: Graph) -> None:
    """Check the graph is consistent; raise GraphError naming the first problem found."""
    known = set(graph.inputs) | {k for k, t in graph.tensors.items() if t.is_const} | {""}
    produced: set[str] = set()
    names: set[str] = set()
    for name in graph.inputs:
        if name not in graph.tensors:
            raise GraphError(f"graph input '{name}' has no tensor")
    for n in graph.nodes:
        if n.name in names:
            raise GraphError(f"duplicate node name '{n.name}'")
        names.add(n.name)
        spec = OPS.get(n.op)
        if spec is None:
            raise GraphError(f"node '{n.name}' has op '{n.op}' outside the op table")
        present = [i for i in n.inputs if i]
        if not spec.min_inputs <= len(present) <= spec.max_inputs:
            raise GraphError(f"node '{n.name}' ({n.op}) has {len(present)} inputs, "
                             f"expects {spec.min_inputs}..{spec.max_inputs}")
        for i in n.inputs:
            if i not in known:
                raise GraphError(f"node '{n.name}' reads '{i}' before it is produced")
        for o in n.outputs:
            if o in produced or o in graph.inputs:
                raise GraphError(f"tensor '{o}' is produced twice (node '{n.name}')")
            produced.add(o)
            known.add(o)
        for t in list(n.inputs) + list(n.outputs):
            if t and t not in graph.tensors:
                raise GraphError(f"node '{n.name}' references unknown tensor '{t}'")
            if t:
                tt = graph.tensors[t]
                if tt.shape is None or any((not isinstance(d, (int, np.integer))) or d < 0
                                           for d in tt.shape):
                    raise GraphError(f"tensor '{t}' has no static shape: {tt.shape}")
                if not tt.dtype:
                    raise GraphError(f"tensor '{t}' has no dtype")
    for o in graph.outputs:
        if o not in known:
            raise GraphError(f"graph output '{o}' is never produced")


def iter_weights(graph: Graph) -> Iterable[tuple[Node, int, Tensor]]:
    """(node, input position, tensor) for every constant weight/bias input of a node."""
    for n in graph.nodes:
        for pos in OPS[n.op].weights:
            if pos < len(n.inputs) and n.inputs[pos]:
                t = graph.tensors[n.inputs[pos]]
                if t.is_const:
                    yield n, pos, t
