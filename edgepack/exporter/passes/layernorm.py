"""Lower LayerNormalization to primitives every runtime has an int8 kernel for.

TFLite has no LAYER_NORM builtin (and TFLM no kernel), so the lowering happens here, as a graph pass,
rather than inside the TFLite emitter: every intermediate (mean, centred, variance, 1/std, ...) is then
an IR tensor that calibration observes and gives its own scale, and the .onnx and the .tflite carry
the very same quantized decomposition.

    mean = ReduceMean(x)            over the normalised axes, keepdims
    d    = x - mean
    var  = ReduceMean(d * d)
    rstd = Rsqrt(var + epsilon)
    y    = d * rstd * scale + bias  (the scale Mul / bias Add left out when all ones / all zeros)
"""
from __future__ import annotations

import logging

import numpy as np

from edgepack.ir import Graph, Node, Tensor
from edgepack.ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)


def _lower(graph: Graph, ln: Node) -> list[Node]:
    x, scale, bias = ln.inputs
    y = ln.outputs[0]
    shape, dtype = graph.tensors[x].shape, graph.tensors[x].dtype
    axes = list(range(int(ln.attrs.get("axis", -1)) % len(shape), len(shape)))
    reduced = tuple(1 if i in axes else d for i, d in enumerate(shape))
    nodes: list[Node] = []

    def add(op: str, inputs: list[str], key: str | None, out_shape=shape, **attrs) -> str:
        out = y if key is None else graph.unique_name(f"{y}/{key}")
        if key is not None:
            graph.add_tensor(Tensor(out, tuple(out_shape), dtype))
        nodes.append(Node(graph.unique_name(f"{ln.name}/{key or 'out'}"), op, inputs, [out], attrs))
        return out

    def const(key: str, value) -> str:
        return graph.add_const(f"{ln.name}/{key}", np.asarray(value, dtype))

    mean = add("ReduceMean", [x], "mean", reduced, axes=axes, keepdims=1)
    centred = add("Sub", [x, mean], "centred", activation=None)
    square = add("Mul", [centred, centred], "square", activation=None)
    var = add("ReduceMean", [square], "variance", reduced, axes=axes, keepdims=1)
    var_eps = add("Add", [var, const("epsilon", [ln.attrs.get("epsilon", 1e-5)])], "variance_eps", reduced,
                  activation=None)
    rstd = add("Rsqrt", [var_eps], "rstd", reduced)
    s, b = graph.tensors[scale].data, graph.tensors[bias].data
    steps = [("Mul", rstd, "normalised")]
    if not np.all(s == 1):
        steps.append(("Mul", scale, "scaled"))
    if np.any(b != 0):
        steps.append(("Add", bias, "shifted"))
    cur = centred
    for k, (op, operand, key) in enumerate(steps):
        cur = add(op, [cur, operand], None if k == len(steps) - 1 else key, activation=None)
    return nodes


@graph_pass
def decompose_layernorm(graph: Graph) -> PassResult:
    """Replace each LayerNormalization by ReduceMean / Sub / Mul / Add / Rsqrt nodes."""
    changed = False
    for ln in [n for n in graph.nodes if n.op == "LayerNormalization"]:
        at = graph.nodes.index(ln)
        graph.nodes[at:at + 1] = _lower(graph, ln)
        log.debug("lowered LayerNormalization '%s' to primitives", ln.name)
        changed = True
    if changed:
        graph.remove_unused()
    return PassResult(graph, changed)
