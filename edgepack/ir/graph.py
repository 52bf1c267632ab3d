"""Tensor, Node and Graph: the representation every stage speaks.

Semantics are ONNX's: NCHW activations, OIHW conv weights, static shapes.
A tensor with ``data`` is a constant (weight, bias, shape); the others are activations.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .graph_index import EdgeList, GraphIndex, NodeList, assign_order, renumber
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


@dataclass(eq=False)  # a node is itself: passes find and remove nodes by identity
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def activation(self) -> str | None:
        return self.attrs.get("activation")

    # Edits of inputs, outputs and name reach the index of every graph holding the node.
    def __setattr__(self, key, value):
        d = self.__dict__
        if key in ("inputs", "outputs"):
            old = d.get(key)
            object.__setattr__(self, key, EdgeList(value, self, key))
            if old is not None:
                self._edges_changed(key, old, d[key])
        elif key == "name" and "name" in d:
            old = d["name"]
            object.__setattr__(self, key, value)
            for g in d.get("_owners", ()):
                if g._index is not None:
                    g._index.rename(self, old)
        else:
            object.__setattr__(self, key, value)

    def _edges_changed(self, kind: str, old, new) -> None:
        for g in self.__dict__.get("_owners", ()):
            if g._index is not None:
                g._index.relink(self, kind, old, new)

    def copy(self, memo=None) -> "Node":
        return Node(self.name, self.op, list(self.inputs), list(self.outputs), copy.deepcopy(self.attrs, memo))

    def __deepcopy__(self, memo):
        return self.copy(memo)

    def __getstate__(self):
        return {k: (list(v) if k in ("inputs", "outputs") else v) for k, v in self.__dict__.items()
                if not k.startswith("_")}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


@dataclass
class Graph:
    name: str = "model"
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    # ---- the index (graph_index.py): built on the first lookup, then kept current by every edit ------
    def __setattr__(self, key, value):
        if key == "nodes":
            old = self.__dict__.get("nodes", [])
            object.__setattr__(self, "nodes", NodeList(value, self))
            self._nodes_reset(old)
        else:
            object.__setattr__(self, key, value)

    @property
    def _index(self) -> GraphIndex | None:
        return self.__dict__.get("_graph_index")

    def _ensure_index(self) -> GraphIndex:
        index = self._index
        if index is None:
            renumber(self.nodes)
            index = GraphIndex(self.nodes)
            self.__dict__["_graph_index"] = index
        return index

    def _nodes_changed(self, removed: list, added: list, start: int) -> None:
        """``nodes[start:start + len(removed)]`` was replaced by ``added``."""
        index = self._index
        for n in removed:
            _detach(n, self)
            if index is not None:
                index.drop(n)
        for n in added:
            owners = _owners(n)
            if not any(g is self for g in owners):
                owners.append(self)
            if index is not None:
                index.add(n)
        if index is not None and added and not assign_order(self.nodes, start, len(added)):
            renumber(self.nodes)

    def _nodes_reset(self, old: list) -> None:
        """The whole node list changed (assigned, sorted): owners updated, index rebuilt on next lookup."""
        keep = {id(n) for n in self.nodes}
        for n in old:
            if id(n) not in keep:
                _detach(n, self)
        for n in self.nodes:
            owners = _owners(n)
            if not any(g is self for g in owners):
                owners.append(self)
        self.__dict__["_graph_index"] = None

    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "_graph_index"}
        state["nodes"] = list(self.nodes)
        return state

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)

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
        found = self._ensure_index().nodes("outputs", name)
        return found[0] if found else None

    def consumers(self, name: str) -> list[Node]:
        """The nodes that read ``name``, in node order (graph outputs are not nodes)."""
        return self._ensure_index().nodes("inputs", name)

    def node(self, name: str) -> Node:
        found = self._ensure_index().named(name)
        if not found:
            raise GraphError(f"no node named '{name}'")
        return found[0]

    def activations(self) -> list[str]:
        """Names of the non-constant tensors, graph inputs first, then in node order."""
        seen = dict.fromkeys(self.inputs)
        for n in self.nodes:
            seen.update(dict.fromkeys(o for o in n.outputs if o not in seen))
        return list(seen)

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
        index = self._ensure_index()

        def taken(name: str) -> bool:
            return name in self.tensors or index.has_name(name)

        if not taken(base):
            return base
        i = 1
        while taken(f"{base}_{i}"):
            i += 1
        return f"{base}_{i}"

    def remove_node(self, node: Node) -> None:
        """Take ``node`` out of the graph (by identity); its tensors stay."""
        self.nodes.remove(node)

    def replace_uses(self, old: str, new: str) -> None:
        """Make every consumer (and graph output) of ``old`` read ``new`` instead."""
        for n in self.consumers(old):
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
        while pending:  # sweeps in node order: an already ordered graph costs one sweep
            rest = []
            for n in pending:
                if all(i in ready for i in n.inputs):
                    ordered.append(n)
                    ready.update(n.outputs)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                raise GraphError(f"graph has a cycle or a missing input at node '{pending[0].name}'")
            pending = rest
        self.nodes = ordered

    def copy(self) -> "Graph":
        memo: dict = {}
        tensors = {k: Tensor(t.name, t.shape, t.dtype, copy.deepcopy(t.data, memo), copy.deepcopy(t.quant, memo))
                   for k, t in self.tensors.items()}
        return Graph(self.name, tensors, [n.copy(memo) for n in self.nodes],
                     list(self.inputs), list(self.outputs))

    def __deepcopy__(self, memo):
        return self.copy()

    # ---- summaries -----------------------------------------------------------------------
    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return dict(sorted(counts.items()))

    def param_count(self) -> int:
        return sum(t.size for t in self.tensors.values() if t.is_const and t.dtype.startswith("float"))


def _owners(node: Node) -> list:
    """The graphs whose node list holds ``node`` (almost always one)."""
    return node.__dict__.setdefault("_owners", [])


def _detach(node: Node, graph: Graph) -> None:
    owners = _owners(node)
    for i, g in enumerate(owners):
        if g is graph:
            del owners[i]
            return


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
