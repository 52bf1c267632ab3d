"""Cleanup passes: drop no-op nodes (Identity, Dropout) and anything nobody reads."""
from __future__ import annotations

import logging

from edgepack.ir import Graph, Node, ops_where
from edgepack.ir.passes import PassResult, graph_pass

log = logging.getLogger(__name__)

NO_OPS = ops_where(kind="no_op")


def _bypass(graph: Graph, node: Node) -> bool:
    """Remove one no-op node; return False when it must stay (its output names a graph output that
    cannot be given to the producer: a graph input, a constant, or another graph output)."""
    src, dst = node.inputs[0], node.outputs[0]
    if any(o and graph.consumers(o) for o in node.outputs[1:]) or any(o in graph.outputs for o in node.outputs[1:]):
        return False  # someone reads Dropout's mask
    if dst in graph.outputs:
        producer = graph.producer(src)
        if producer is None or src in graph.outputs:
            return False
        # The graph output keeps its meaningful name: the producer writes it directly.
        producer.outputs = [dst if o == src else o for o in producer.outputs]
        for n in graph.nodes:
            if n is not node:
                n.inputs = [dst if i == src else i for i in n.inputs]
        if graph.tensors[dst].quant is None:
            graph.tensors[dst].quant = graph.tensors[src].quant
        del graph.tensors[src]
    else:
        graph.replace_uses(dst, src)
        graph.tensors.pop(dst, None)
    graph.remove_node(node)
    for extra in node.outputs[1:]:
        graph.tensors.pop(extra, None)
    return True


@graph_pass
def remove_identity(graph: Graph) -> PassResult:
    """Remove Identity and Dropout nodes and rewire their consumers."""
    changed = False
    for node in [n for n in graph.nodes if n.op in NO_OPS]:
        if _bypass(graph, node):
            log.debug("removed %s node '%s'", node.op, node.name)
            changed = True
    return PassResult(graph, changed)


@graph_pass
def remove_dead(graph: Graph) -> PassResult:
    """Remove nodes whose outputs nobody reads and tensors nobody references."""
    before = (len(graph.nodes), len(graph.tensors))
    graph.remove_unused()
    return PassResult(graph, (len(graph.nodes), len(graph.tensors)) != before)
