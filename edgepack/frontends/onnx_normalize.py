"""Folded ONNX nodes -> ir.Graph, one op rule per ONNX op (rules live in onnx_ops.py).

The builder owns naming (unique, non-empty node names; model tensor names kept), the float32 check on
activations, and the last clean-up: MatMul/Gemm followed by an Add of a constant vector becomes one
Gemm with a bias, and constants nobody reads are dropped.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper

from .. import ir
from ..errors import ModelLoadError, ShapeError, UnsupportedOpError
from ..ir.passes import PassResult, graph_pass, run_one
from .lift_1d import lift_1d
from .onnx_fold import DEFAULT_DOMAINS, FoldedModel
from .onnx_patterns import fuse_patterns

log = logging.getLogger(__name__)


def unsupported_variant(op: str, node: str, detail: str) -> UnsupportedOpError:
    """An op in the table used in a form edgepack cannot take; the message says which form."""
    err = UnsupportedOpError(op, node, ir.OPS.keys())
    err.args = (f"unsupported {op} at node '{node}': {detail}",)
    return err


class Builder:
    """What an op rule needs: constants, static shapes, and a way to add IR nodes."""

    def __init__(self, folded: FoldedModel, opset: int, path: str | None):
        self.consts = folded.consts
        self.infos = folded.infos
        self.opset = opset
        self.path = path
        self.graph = ir.Graph(name=folded.model.graph.name or "model")
        self._node_names: set[str] = set()
        self.used: set[str] = set()  # tensors some node or graph output reads
        self.current = ""  # IR name of the node being converted, for messages and new names

    # ---- lookups used by the rules ----
    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        info = self.infos.get(name)
        if info is None or info.shape is None:
            raise ShapeError(f"tensor '{name}' has no static shape after shape inference and "
                             "constant folding; check the model's input shapes")
        return info.shape

    def rank(self, name: str) -> int:
        return len(self.shape(name))

    def need_const(self, onnx_node, index: int, what: str) -> np.ndarray:
        name = onnx_node.input[index] if index < len(onnx_node.input) else ""
        value = self.const(name)
        if value is None:
            raise unsupported_variant(onnx_node.op_type, self.current,
                                      f"{what} (input {index}, '{name}') must be a constant")
        return value

    # ---- edits ----
    def node_name(self, base: str) -> str:
        name, i = base, 1
        while name in self._node_names:
            name = f"{base}_{i}"
            i += 1
        self._node_names.add(name)
        return name

    def new_tensor(self, base: str, shape: tuple[int, ...]) -> str:
        name = self.graph.unique_name(base)
        self.graph.add_tensor(ir.Tensor(name, tuple(int(d) for d in shape), "float32"))
        return name

    def new_const(self, base: str, data: np.ndarray) -> str:
        return self.graph.add_const(base, np.ascontiguousarray(data))

    def emit(self, op: str, inputs: list[str], outputs: list[str], attrs: dict | None = None,
             suffix: str | None = None) -> ir.Node:
        for t in list(inputs) + list(outputs):
            self._ensure_tensor(t)
        name = self.current if suffix is None else self.node_name(f"{self.current}/{suffix}")
        attrs = dict(attrs or {})
        if ir.OPS[op].fusable:
            attrs.setdefault("activation", None)
        node = ir.Node(name, op, list(inputs), list(outputs), attrs)
        self.graph.nodes.append(node)
        return node

    def _ensure_tensor(self, name: str) -> None:
        if not name or name in self.graph.tensors:
            return
        if name in self.consts:
            data = np.asarray(self.consts[name])
            self.graph.add_tensor(ir.Tensor(name, tuple(data.shape), str(data.dtype), data))
            return
        info = self.infos.get(name)
        if info is not None and info.elem_type not in (0, onnx.TensorProto.FLOAT):
            dtype = onnx.TensorProto.DataType.Name(info.elem_type).lower()
            raise ModelLoadError(f"tensor '{name}' (node '{self.current}') is {dtype}; edgepack "
                                 "handles float32 activations only (allowed: float32)", self.path)
        self.graph.add_tensor(ir.Tensor(name, self.shape(name), "float32"))


def build_graph(folded: FoldedModel, inputs: list[str], outputs: list[str], opset: int,
                path: str | None) -> ir.Graph:
    from .onnx_ops import RULES  # the rules module imports Builder from here

    b = Builder(folded, opset, path)
    g = b.graph
    onnx_nodes = fuse_patterns(list(folded.model.graph.node), folded.consts, outputs)
    b.used = {i for n in onnx_nodes for i in n.input} | set(outputs)
    for name in inputs:
        b._ensure_tensor(name)
    g.inputs = list(inputs)
    for i, node in enumerate(onnx_nodes):
        op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
        b.current = b.node_name(node.name or f"{node.op_type}_{i}")
        rule = RULES.get(op)
        if rule is None:
            raise UnsupportedOpError(op, b.current, ir.OPS.keys())
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        rule(b, node, attrs)
    b.current = ""
    for name in outputs:
        b._ensure_tensor(name)
    g.outputs = list(outputs)
    for graph_pass in ONNX_NORMALIZATION:
        run_one(g, graph_pass)
    return g


# ---- MatMul + Add -> Gemm with bias ----------------------------------------------------------
def _single_use(g: ir.Graph, tensor: str, consumer: ir.Node) -> bool:
    return tensor not in g.outputs and g.consumers(tensor) == [consumer]


@graph_pass
def fuse_bias_add(g: ir.Graph) -> PassResult:
    """Gemm(no bias) [-> Reshape] -> Add(constant vector of the Gemm's width) becomes Gemm(bias)."""
    changed = False
    for add in [n for n in g.nodes if n.op == "Add"]:
        consts = [i for i in add.inputs if g.tensors[i].is_const]
        if len(consts) != 1:
            continue
        c_name = consts[0]
        act = add.inputs[1] if add.inputs[0] == c_name else add.inputs[0]
        chain_end = g.producer(act)
        gemm = chain_end
        if gemm is not None and gemm.op == "Reshape" and _single_use(g, gemm.inputs[0], gemm):
            gemm = g.producer(gemm.inputs[0])
        if gemm is None or gemm.op != "Gemm" or len(gemm.inputs) != 2 or gemm.activation:
            continue
        if not _single_use(g, act, add) or g.tensors[add.outputs[0]].shape != g.tensors[act].shape:
            continue
        width = g.tensors[gemm.inputs[1]].shape[0]
        c = g.tensors[c_name].data
        if c.size != width or (c.ndim and c.shape[-1] != width) or g.tensors[act].shape[-1] != width:
            continue
        bias = c_name if c.shape == (width,) else g.add_const(f"{c_name}_vector", c.reshape(width))
        gemm.inputs.append(bias)
        g.nodes.remove(add)
        del g.tensors[act]
        chain_end.outputs = [add.outputs[0]]
        log.debug("folded Add '%s' into Gemm '%s' as its bias", add.name, gemm.name)
        changed = True
    return PassResult(g, changed)


@graph_pass
def remove_unused(g: ir.Graph) -> PassResult:
    """Drop tensors and nodes nothing reads (the rules leave some behind)."""
    before = (len(g.nodes), len(g.tensors))
    g.remove_unused()
    return PassResult(g, (len(g.nodes), len(g.tensors)) != before)


# What every ONNX-built graph goes through, in order (edgepack.pipeline lists it with the rest).
ONNX_NORMALIZATION = [fuse_bias_add, lift_1d, remove_unused]
