"""Fold constant affine steps into a neighbouring convolution, as TFLiteConverter does.

Each operator and tensor left in the graph costs TFLM arena (its node, its eval tensor, its kernel data) and
each int8 step rounds once more. Two forms that Keras models carry are folded here, exact in float:
- ``fold_input_affine``: ``Conv(x * s + o)`` (a Rescaling or Normalization layer before the first conv) is
  ``Conv'(x)`` with the weights scaled per input channel by ``s`` and ``o`` summed into the bias (the add
  only when the conv pads nothing, since padding would add ``o`` where the original padded zeros);
- ``fold_hard_sigmoid``: ``HardSigmoid(Conv(x))`` = ``clip(a*conv + b, 0, 1)`` = ``Relu6(Conv'(x)) / 6``
  with ``Conv'`` = ``6a * conv + 6b``: the conv takes the scale, the bias and a fused RELU6, one MUL is left
  (the emitter would otherwise write MUL, ADD, MUL after the conv).
"""
from __future__ import annotations

import logging

import numpy as np

from edgepack.ir import Graph, Node
from edgepack.ir.passes import PassResult, graph_pass

from .fold_bn import _set_const

log = logging.getLogger(__name__)


def _channel_const(graph: Graph, node: Node, channels: int) -> tuple[str, np.ndarray] | None:
    """(the variable input, the constant as one value per channel) of an elementwise Mul/Add whose other
    input is a scalar or a per-channel (C, 1, 1) constant; None otherwise."""
    if node.op not in ("Mul", "Add") or node.activation is not None or len(node.inputs) != 2:
        return None
    consts = [graph.const(i) for i in node.inputs]
    if (consts[0] is None) == (consts[1] is None):
        return None
    k = 0 if consts[0] is not None else 1
    c = np.asarray(consts[k], np.float64)
    if c.size == 1:
        return node.inputs[1 - k], np.full(channels, float(c.ravel()[0]))
    shape = [d for d in c.shape]
    while shape and shape[0] == 1 and len(shape) > 3:
        shape.pop(0)
    if c.size == channels and len(shape) == 3 and shape[1:] == [1, 1]:
        return node.inputs[1 - k], c.ravel()
    return None


def _fold_one_input_step(graph: Graph, conv: Node) -> bool:
    x = conv.inputs[0]
    step = graph.producer(x)
    w = graph.const(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if (step is None or w is None or w.ndim != 4 or int(conv.attrs.get("group", 1)) != 1
            or x in graph.outputs or len(graph.consumers(x)) != 1):
        return False
    found = _channel_const(graph, step, w.shape[1])
    if found is None:
        return False
    src, c = found
    bias_name = conv.inputs[2] if len(conv.inputs) > 2 else ""
    b = np.asarray(graph.const(bias_name), np.float64) if bias_name else np.zeros(w.shape[0])
    if step.op == "Mul":
        w_new, b_new = w.astype(np.float64) * c.reshape(1, -1, 1, 1), b
    elif any(int(p) for p in conv.attrs.get("pads", [0])) or conv.attrs.get("auto_pad", "NOTSET") not in (
            "NOTSET", "VALID"):
        return False  # padding: the offset would reach the border taps that read zeros
    else:
        w_new, b_new = w.astype(np.float64), b + np.einsum("oihw,i->o", w.astype(np.float64), c)
    _set_const(graph, conv, 1, w_new.astype(w.dtype), f"{conv.name}.weight")
    _set_const(graph, conv, 2, b_new.astype(w.dtype), f"{conv.name}.bias")
    conv.inputs[0] = src
    graph.remove_node(step)
    graph.tensors.pop(x, None)
    log.debug("folded %s '%s' into Conv '%s'", step.op, step.name, conv.name)
    return True


@graph_pass
def fold_input_affine(graph: Graph) -> PassResult:
    """Fold Mul/Add by scalar or per-channel constants into the Conv that alone reads them."""
    changed = False
    for conv in [n for n in graph.nodes if n.op == "Conv"]:
        while _fold_one_input_step(graph, conv):  # Mul then Add: one step at a time, nearest first
            changed = True
    return PassResult(graph, changed)


def _through_transposes(graph: Graph, name: str) -> Node | None:
    """The one elementwise reader of ``name``, past Transposes that only pass it on."""
    while True:
        readers = graph.consumers(name)
        if name in graph.outputs or len(readers) != 1:
            return None
        if readers[0].op != "Transpose":
            return readers[0]
        name = readers[0].outputs[0]


@graph_pass
def fold_hard_sigmoid(graph: Graph) -> PassResult:
    """HardSigmoid after a Conv/Gemm with no activation: the conv scaled by 6a, biased by 6b, RELU6; then x/6."""
    changed = False
    for hs in [n for n in graph.nodes if n.op == "HardSigmoid"]:
        alpha, beta = float(hs.attrs.get("alpha", 0.2)), float(hs.attrs.get("beta", 0.5))
        producer = _producer_past_transposes(graph, hs.inputs[0])
        if producer is None or alpha <= 0 or producer.op not in ("Conv", "Gemm") or producer.activation:
            continue
        if _through_transposes(graph, producer.outputs[0]) is not hs or len(producer.outputs) != 1:
            continue
        w = graph.const(producer.inputs[1]) if len(producer.inputs) > 1 else None
        bias_name = producer.inputs[2] if len(producer.inputs) > 2 else ""
        b = graph.const(bias_name) if bias_name else np.zeros(0 if w is None else w.shape[0])
        if w is None or b is None or (producer.op == "Gemm" and (producer.attrs.get("transB", 1) != 1)):
            continue
        if producer.op == "Gemm" and float(producer.attrs.get("alpha", 1.0)) != 1.0:
            continue
        k = 6.0 * alpha
        _set_const(graph, producer, 1, (w.astype(np.float64) * k).astype(w.dtype), f"{producer.name}.weight")
        _set_const(graph, producer, 2, (np.asarray(b, np.float64) * k + 6.0 * beta).astype(w.dtype),
                   f"{producer.name}.bias")
        producer.attrs["activation"] = "Relu6"
        sixth = graph.add_const(f"{hs.name}.one_sixth", np.array(1.0 / 6.0, np.float32))
        hs.op, hs.attrs = "Mul", {"activation": None}
        hs.inputs = [hs.inputs[0], sixth]
        log.debug("folded HardSigmoid '%s' into %s '%s'", hs.name, producer.op, producer.name)
        changed = True
    return PassResult(graph, changed)


def _producer_past_transposes(graph: Graph, name: str) -> Node | None:
    node = graph.producer(name)
    while node is not None and node.op == "Transpose":
        node = graph.producer(node.inputs[0])
    return node
