"""Tidy the IR of a tf2onnx-converted Keras model so that it looks like what PyTorch gives.

A Keras graph keeps its NHWC input; tf2onnx follows it with a Transpose to NCHW, which the TFLite layout
planner cancels when the input feeds only that Transpose. Three rewrites, all exact:
- tf2onnx writes that Transpose as a Reshape when the input has one channel (same bytes): it becomes a
  Transpose again;
- elementwise ops by constants right after the input (Rescaling, Normalization layers) sit between the
  input and that Transpose: the Transpose moves up to the input, the constants are transposed to NCHW;
- a BatchNormalization TensorFlow did not fold (after DepthwiseConv2D or Dense) arrives as Mul + Add by
  per-channel constants: it becomes a BatchNormalization again, which the fold_bn pass folds into the
  preceding layer, as it does for PyTorch models.
"""
from __future__ import annotations

import logging

import numpy as np

from ..ir import Graph, Node, Tensor, ops_where
from ..ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)

TO_NCHW = (0, 3, 1, 2)
ELEMENTWISE = ops_where(broadcast=True)


@graph_pass
def normalize_keras_graph(graph: Graph) -> PassResult:
    """The rewrites above, in place."""
    before = list(map(id, graph.nodes))
    for name in list(graph.inputs):
        _transpose_at_input(graph, name)
    for mul in [n for n in graph.nodes if n.op == "Mul"]:
        _mul_add_to_batchnorm(graph, mul)
    return PassResult(graph, list(map(id, graph.nodes)) != before)


def _single_reader(graph: Graph, tensor: str, op: str | None = None) -> Node | None:
    users = graph.consumers(tensor)
    if len(users) != 1 or tensor in graph.outputs or (op and users[0].op != op):
        return None
    return users[0]


# ---- the NHWC -> NCHW transpose right at the input ------------------------------------------------
def _const_operand(graph: Graph, node: Node) -> int | None:
    """Position of the constant operand of a binary elementwise node with one activation, else None."""
    consts = [i for i, name in enumerate(node.inputs) if graph.const(name) is not None]
    if node.op not in ELEMENTWISE or len(node.inputs) != 2 or len(consts) != 1:
        return None
    return consts[0] if graph.const(node.inputs[consts[0]]).ndim <= 4 else None


def _transpose_at_input(graph: Graph, name: str) -> None:
    shape = graph.tensors[name].shape
    if len(shape) != 4:
        return
    chain, tensor = [], name
    while (user := _single_reader(graph, tensor)) is not None and _const_operand(graph, user) is not None \
            and graph.tensors[user.outputs[0]].shape == shape:
        chain.append(user)
        tensor = user.outputs[0]
    user = _single_reader(graph, tensor)
    if user is None:
        return
    out_shape = tuple(graph.tensors[user.outputs[0]].shape)
    if user.op == "Reshape" and out_shape == tuple(shape[p] for p in TO_NCHW) \
            and (shape[3] == 1 or shape[1] * shape[2] == 1):
        user.op, user.attrs = "Transpose", {"perm": list(TO_NCHW)}  # same bytes: it is that Transpose
        log.debug("Reshape '%s' of the NHWC input is the NHWC->NCHW Transpose: written as one", user.name)
    if user.op == "Transpose" and tuple(user.attrs["perm"]) == TO_NCHW and chain:
        _hoist(graph, name, chain, user)


def _hoist(graph: Graph, name: str, chain: list[Node], transpose: Node) -> None:
    """input -> chain -> Transpose  becomes  input -> Transpose -> chain (constants in NCHW)."""
    nchw = tuple(graph.tensors[name].shape[p] for p in TO_NCHW)
    moved = graph.unique_name(f"{name}.nchw")
    graph.add_tensor(Tensor(moved, nchw, graph.tensors[name].dtype))
    final = transpose.outputs[0]
    transpose.inputs, transpose.outputs = [name], [moved]
    previous = moved
    for i, node in enumerate(chain):
        pos = _const_operand(graph, node)
        data = graph.const(node.inputs[pos])
        data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(TO_NCHW)
        node.inputs[pos] = graph.add_const(f"{node.name}.nchw", np.ascontiguousarray(data))
        node.inputs[1 - pos] = previous
        if i == len(chain) - 1:
            graph.tensors.pop(node.outputs[0], None)
            node.outputs = [final]
        else:
            graph.tensors[node.outputs[0]].shape = nchw
        previous = node.outputs[0]
    graph.remove_node(transpose)
    at = next(i for i, n in enumerate(graph.nodes) if n is chain[0])
    graph.nodes.insert(at, transpose)
    graph.remove_unused()
    log.debug("moved the NHWC->NCHW Transpose above %s at input '%s'",
              " + ".join(n.op for n in chain), name)


# ---- BatchNormalization TensorFlow left as Mul + Add ------------------------------------------------
def _per_channel(graph: Graph, name: str, x: str) -> np.ndarray | None:
    """A constant that scales/shifts ``x`` per channel (axis 1) as a (C,) vector, else None."""
    data = graph.const(name)
    shape = graph.tensors[x].shape
    if data is None or data.ndim > len(shape) or len(shape) < 2:
        return None
    aligned = (1,) * (len(shape) - data.ndim) + tuple(data.shape)
    if any(d != 1 for i, d in enumerate(aligned) if i != 1) or aligned[1] not in (1, shape[1]):
        return None
    return np.broadcast_to(data.reshape(-1), (shape[1],)).astype(np.float32)


def _mul_add_to_batchnorm(graph: Graph, mul: Node) -> None:
    if _const_operand(graph, mul) is None:
        return
    x = mul.inputs[1 - _const_operand(graph, mul)]
    producer = graph.producer(x)
    if producer is None or producer.op not in ("Conv", "Gemm") or _single_reader(graph, x) is not mul:
        return
    scale = _per_channel(graph, mul.inputs[_const_operand(graph, mul)], x)
    if scale is None:
        return
    shift, last = np.zeros_like(scale), mul
    add = _single_reader(graph, mul.outputs[0], "Add")
    if add is not None and _const_operand(graph, add) is not None:
        found = _per_channel(graph, add.inputs[_const_operand(graph, add)], x)
        if found is not None:
            shift, last = found, add
    c = scale.size
    consts = [graph.add_const(f"{mul.name}.bn_{k}", v) for k, v in
              (("scale", scale), ("bias", shift), ("mean", np.zeros(c, np.float32)),
               ("var", np.ones(c, np.float32)))]
    bn = Node(graph.unique_name(f"{mul.name}.bn"), "BatchNormalization", [x] + consts,
              [last.outputs[0]], {"epsilon": 0.0})
    at = next(i for i, n in enumerate(graph.nodes) if n is mul)
    graph.nodes = [n for n in graph.nodes if n is not mul and n is not last]
    graph.nodes.insert(at, bn)
    graph.remove_unused()
    log.debug("Mul%s after %s '%s' written as a BatchNormalization (folded by fold_bn)",
              " + Add" if last is add else "", producer.op, producer.name)
