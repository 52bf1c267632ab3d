"""The Builder the ONNX op rules write ir nodes with: it owns naming (unique, non-empty node names; model
tensor names kept), constants, and the float32 check on activations."""
from __future__ import annotations

import logging

import numpy as np
import onnx

from .. import ir
from ..errors import ModelLoadError, ShapeError, UnsupportedOpError
from .onnx_fold import FoldedModel

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


TFLM_CONCAT_INPUTS = 10  # kMaxInputNum of TFLite Micro's CONCATENATION kernel


def capped_concat(b: Builder, parts: list[str], out: str, axis: int, key: str | None) -> None:
    """Concat into ``out`` with at most TFLM_CONCAT_INPUTS inputs per node (TFLite Micro's limit): longer
    lists are joined in chunks, then the chunks. Copies only, so the int8 values stay exact."""
    if len(parts) <= TFLM_CONCAT_INPUTS:
        b.emit("Concat", parts, [out], {"axis": axis}, suffix=key)
        return
    chunks, part = [], key or "concat"
    for k in range(0, len(parts), TFLM_CONCAT_INPUTS):
        group = parts[k:k + TFLM_CONCAT_INPUTS]
        shape = list(b.shape(group[0]))
        shape[axis] = sum(b.shape(p)[axis] for p in group)
        chunks.append(b.new_tensor(f"{out}/{part}_chunk{k // TFLM_CONCAT_INPUTS}", tuple(shape)))
        b.emit("Concat", group, [chunks[-1]], {"axis": axis}, suffix=f"{part}_chunk{k // TFLM_CONCAT_INPUTS}")
    capped_concat(b, chunks, out, axis, key)
