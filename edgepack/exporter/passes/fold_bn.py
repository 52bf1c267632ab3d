"""Fold inference BatchNormalization into the preceding Conv/Gemm, or lower it to Mul + Add."""
from __future__ import annotations

import logging

import numpy as np

from edgepack.ir import Graph, Node, Tensor
from edgepack.ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)


def _bn_constants(graph: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (scale, shift) with bn(x) = x * scale + shift, in float64; None if not constant."""
    consts = [graph.const(name) for name in bn.inputs[1:5]]
    if any(c is None for c in consts):
        return None
    gamma, beta, mean, var = (np.asarray(c, np.float64).ravel() for c in consts)
    scale = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return scale, beta - mean * scale


def _set_const(graph: Graph, node: Node, pos: int, data: np.ndarray, base: str) -> None:
    """Write new constant data into input ``pos`` of ``node``: in place when only this node reads the
    tensor (keeps its name), else as a new tensor. Quantization is stale after folding: dropped."""
    name = node.inputs[pos] if pos < len(node.inputs) else ""
    if name and len(graph.consumers(name)) == 1 and name not in graph.outputs:
        t = graph.tensors[name]
        t.data, t.shape, t.dtype, t.quant = data, tuple(data.shape), str(data.dtype), None
        return
    new = graph.add_const(base, data)
    while len(node.inputs) <= pos:
        node.inputs.append("")
    node.inputs[pos] = new


def _fold_into(graph: Graph, producer: Node, bn: Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    w = graph.const(producer.inputs[1])
    if w is None or w.shape[0] != scale.size:
        return False
    bias_name = producer.inputs[2] if len(producer.inputs) > 2 else ""
    b = graph.const(bias_name) if bias_name else np.zeros(w.shape[0])
    if b is None:
        return False
    # Conv weights are (Cout, Cin/group, kh, kw) for any group, Gemm's (out, in): scale axis 0.
    w_new = (w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    b_new = (np.asarray(b, np.float64) * scale + shift).astype(w.dtype)
    _set_const(graph, producer, 1, w_new, f"{producer.name}.weight")
    _set_const(graph, producer, 2, b_new, f"{producer.name}.bias")
    old = producer.outputs[0]
    producer.outputs[0] = bn.outputs[0]
    graph.tensors.pop(old, None)
    graph.remove_node(bn)
    return True


def _lower_to_mul_add(graph: Graph, bn: Node, scale: np.ndarray, shift: np.ndarray) -> None:
    x, y = bn.inputs[0], bn.outputs[0]
    rank = len(graph.tensors[x].shape)
    shape = (1, scale.size) + (1,) * max(rank - 2, 0)
    dtype = np.dtype(graph.tensors[x].dtype)
    scale_name = graph.add_const(f"{bn.name}.scale", scale.reshape(shape).astype(dtype))
    shift_name = graph.add_const(f"{bn.name}.shift", shift.reshape(shape).astype(dtype))
    mid = graph.unique_name(f"{bn.name}.scaled")
    graph.add_tensor(Tensor(mid, graph.tensors[x].shape, graph.tensors[x].dtype))
    mul = Node(graph.unique_name(f"{bn.name}/mul"), "Mul", [x, scale_name], [mid])
    add = Node(graph.unique_name(f"{bn.name}/add"), "Add", [mid, shift_name], [y])
    at = next(i for i, n in enumerate(graph.nodes) if n is bn)
    graph.nodes[at:at + 1] = [mul, add]


@graph_pass
def fold_batchnorm(graph: Graph) -> PassResult:
    """Fold each BatchNormalization into a Conv/Gemm that only it reads; lower the others to Mul + Add."""
    changed = False
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        consts = _bn_constants(graph, bn)
        if consts is None:
            log.debug("BatchNormalization '%s' has non-constant statistics: left as is", bn.name)
            continue
        src = bn.inputs[0]
        producer = graph.producer(src)
        foldable = (producer is not None and producer.op in ("Conv", "Gemm")
                    and producer.activation is None and src not in graph.outputs
                    and [c is bn for c in graph.consumers(src)] == [True])
        if foldable and _fold_into(graph, producer, bn, *consts):
            log.debug("folded BatchNormalization '%s' into %s '%s'", bn.name, producer.op, producer.name)
        else:
            _lower_to_mul_add(graph, bn, *consts)
            log.debug("lowered BatchNormalization '%s' to Mul + Add", bn.name)
        changed = True
        _drop_unread(graph, bn.inputs[1:5])
    return PassResult(graph, changed)


def _drop_unread(graph: Graph, names) -> None:
    for name in names:
        if name not in graph.outputs and not graph.consumers(name):
            graph.tensors.pop(name, None)
