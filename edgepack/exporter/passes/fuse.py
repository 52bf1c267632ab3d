"""Fuse Relu / Relu6 into the op that produces their input (TFLite's fused_activation_function)."""
from __future__ import annotations

import logging
import math

from edgepack.ir import OPS, Graph, Node
from edgepack.ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)


def _activation_kind(node: Node) -> str | None:
    """'Relu' or 'Relu6' when the node is one of them (Clip(0, 6), Clip(0, inf)), else None."""
    if node.op == "Relu":
        return "Relu"
    if node.op != "Clip":
        return None
    lo, hi = node.attrs.get("min"), node.attrs.get("max")
    if lo is None or float(lo) != 0.0:
        return None
    if hi is None or (math.isinf(float(hi)) and float(hi) > 0):
        return "Relu"
    return "Relu6" if float(hi) == 6.0 else None


@graph_pass
def fuse_activations(graph: Graph) -> PassResult:
    """Fold a Relu/Relu6 into its producer when the producer is fusable, has no activation yet, and
    its output is read only by that activation and is not a graph output."""
    changed = False
    for act in list(graph.nodes):
        kind = _activation_kind(act)
        if kind is None:
            continue
        src = act.inputs[0]
        producer = graph.producer(src)
        if (producer is None or not OPS[producer.op].fusable or producer.activation is not None
                or src in graph.outputs or [c is act for c in graph.consumers(src)] != [True]):
            continue
        producer.attrs["activation"] = kind
        producer.outputs = [act.outputs[0] if o == src else o for o in producer.outputs]
        graph.remove_node(act)
        graph.tensors.pop(src, None)
        log.debug("fused %s '%s' into %s '%s'", kind, act.name, producer.op, producer.name)
        changed = True
    return PassResult(graph, changed)
