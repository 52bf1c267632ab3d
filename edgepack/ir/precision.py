"""Per-layer precision: which nodes compute in 16x8 (int16 activations, int8 weights) or in float.

A node computes in int8 unless ``node.attrs["precision"]`` says "int16" (TFLite's 16x8 scheme: int16
symmetric activations, int8 per-channel weights, int64 conv/FC bias) or "float" (DEQUANTIZE before it,
QUANTIZE after it). Every tensor keeps its calibrated int8 QuantParams; its int16 params are derived from
them (the same range, 256 times finer steps), so both emitters and the simulation agree without a second
calibration. A tensor is stored at its producer's precision; a consumer of another precision reads a
converted copy (a QUANTIZE / DEQUANTIZE at the boundary).
"""
from __future__ import annotations

from .ops import OPS
from .quant import QuantParams

PRECISION_ATTR = "precision"
LAYER_PRECISIONS = ("int8", "int16", "float")
# TFLite's 16x8 spec fixes these ops' output params (scale, zero point); every int16 zero point is 0.
INT16_FIXED = {"Sigmoid": (1.0 / 32768.0, 0), "Tanh": (1.0 / 32768.0, 0), "Softmax": (1.0 / 32768.0, 0)}
# Ops whose output must reuse their (single) input's params: their int16 params follow the input's.
_FOLLOWS_INPUT = ("pool", "movement", "pad", "resize", "no_op")


def node_precision(node) -> str:
    return node.attrs.get(PRECISION_ATTR, "int8")


def mixed(graph) -> dict[str, str]:
    """{node: precision} of the nodes that do not compute in int8 (empty for an all-int8 graph)."""
    return {n.name: node_precision(n) for n in graph.nodes if node_precision(n) != "int8"}


def stored_precision(graph, name: str) -> str:
    """The precision a tensor is stored at: its producer's (graph inputs: int8)."""
    producer = graph.producer(name)
    return node_precision(producer) if producer is not None else "int8"


def int16_params(qp: QuantParams, op: str | None = None) -> QuantParams:
    """Symmetric int16 params covering the range of the int8 activation params ``qp``; the spec's fixed
    params when ``op`` (the producer) has them."""
    if op in INT16_FIXED:
        return QuantParams.per_tensor(*INT16_FIXED[op], "int16")
    lo, hi = qp.scale[0] * (-128 - qp.zero_point[0]), qp.scale[0] * (127 - qp.zero_point[0])
    return QuantParams.per_tensor(max(abs(lo), abs(hi), 1e-12) / 32767.0, 0, "int16")


def tensor_params(graph, name: str, precision: str) -> QuantParams | None:
    """The params of activation ``name`` read at ``precision`` (None for float)."""
    if precision == "float":
        return None
    qp = graph.tensors[name].quant
    if precision == "int8" or qp is None:
        return qp
    producer = graph.producer(name)
    if producer is not None and OPS[producer.op].quant == "same_as_input" and \
            OPS[producer.op].kind in _FOLLOWS_INPUT:
        return tensor_params(graph, producer.inputs[0], precision)  # the kernel copies values
    return int16_params(qp, producer.op if producer is not None else None)


def simulated_params(graph) -> tuple[dict, dict]:
    """What the fake-quant simulation (torch_exec) needs for the layers off int8: the params of each tensor
    stored at int16 or float ({tensor: params or None}) and of each boundary read ({(node, tensor): params
    or None}: a QUANTIZE / DEQUANTIZE in the files). Empty for an all-int8 graph."""
    stored, reads = {}, {}
    if not mixed(graph):
        return stored, reads
    quantized = [t for t in graph.activations() if graph.tensors[t].quant is not None]
    for t in quantized:
        if stored_precision(graph, t) != "int8":
            stored[t] = tensor_params(graph, t, stored_precision(graph, t))
    quantized = set(quantized)
    for node in graph.nodes:
        want = node_precision(node)
        for i in node.inputs:
            if i in quantized and stored_precision(graph, i) != want:
                reads[(node.name, i)] = tensor_params(graph, i, want)
    return stored, reads
