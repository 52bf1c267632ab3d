"""The operator order written into the .tflite: a topological order that keeps live activation bytes low.

The arena a runtime needs is set by the tensors alive at once, and that depends on the order of the
operators: a residual block whose shortcut conv runs after the branch keeps the block input alive across
the whole branch. ``memory_order`` is a greedy list scheduler: at each step, of the nodes whose inputs
are ready, it runs the one after which the fewest activation bytes are alive (ties: the smallest peak
while it runs, then the graph's own order), so a node that frees its inputs goes first.
"""
from __future__ import annotations

from ..ir import Graph, Node


def _bytes(graph: Graph, name: str) -> int:
    t = graph.tensors.get(name)
    return 0 if t is None or t.is_const else t.size


EXACT_STATES = 256  # sets of already-run nodes kept per step; more: the greedy order


def memory_order(graph: Graph) -> list[Node]:
    """``graph.nodes`` in an order that keeps live activation bytes low (a valid topological order)."""
    return exact_order(graph) or greedy_order(graph)


def exact_order(graph: Graph) -> list[Node] | None:
    """The order of lowest (peak live bytes, summed live bytes), or None when the search grows too wide."""
    nodes = list(graph.nodes)
    producer = {o: k for k, n in enumerate(nodes) for o in n.outputs}
    needs = [frozenset(producer[i] for i in set(n.inputs) if i in producer) for n in nodes]
    readers: dict[str, frozenset] = {}
    for k, n in enumerate(nodes):
        for name in set(n.inputs):
            readers[name] = readers.get(name, frozenset()) | {k}
    kept = set(graph.outputs)
    start = sum(_bytes(graph, i) for i in graph.inputs)
    states = {frozenset(): (start, 0, start, ())}  # done -> (peak, area, live, order)
    for _ in nodes:
        grown: dict[frozenset, tuple] = {}
        for done, (peak, area, live, order) in states.items():
            for k, n in enumerate(nodes):
                if k in done or not needs[k] <= done:
                    continue
                after = done | {k}
                produced = sum(_bytes(graph, o) for o in n.outputs)
                freed = sum(_bytes(graph, i) for i in set(n.inputs)
                            if i not in kept and readers[i] <= after and i in graph.tensors)
                now = live + produced - freed
                entry = (max(peak, live + produced), area + now, now, order + (k,))
                if after not in grown or entry[:2] < grown[after][:2]:
                    grown[after] = entry
        if len(grown) > EXACT_STATES or not grown:
            return None
        states = grown
    (_, _, _, order), = states.values()
    return [nodes[k] for k in order]


def greedy_order(graph: Graph) -> list[Node]:
    """Ready node by ready node, the one after which the fewest activation bytes are alive."""
    nodes = list(graph.nodes)
    position = {id(n): k for k, n in enumerate(nodes)}
    readers: dict[str, int] = {}
    for n in nodes:
        for name in set(n.inputs):
            readers[name] = readers.get(name, 0) + 1
    kept = set(graph.outputs)
    available = set(graph.inputs) | {k for k, t in graph.tensors.items() if t.is_const} | {""}
    live = {name: _bytes(graph, name) for name in graph.inputs}
    waiting = {id(n): sum(1 for i in set(n.inputs) if i not in available) for n in nodes}
    users: dict[str, list[Node]] = {}
    for n in nodes:
        for name in set(n.inputs):
            users.setdefault(name, []).append(n)
    ready = [n for n in nodes if waiting[id(n)] == 0]
    order: list[Node] = []
    total = sum(live.values())
    while ready:
        best = min(ready, key=lambda n: _cost(graph, n, readers, kept, total) + (position[id(n)],))
        ready.remove(best)
        order.append(best)
        total += sum(_bytes(graph, o) for o in best.outputs)
        live.update({o: _bytes(graph, o) for o in best.outputs})
        for name in set(best.inputs):
            readers[name] -= 1
            if readers[name] == 0 and name not in kept and name in live:
                total -= live.pop(name)
        for o in best.outputs:
            for user in users.get(o, ()):
                waiting[id(user)] -= 1
                if waiting[id(user)] == 0:
                    ready.append(user)
    if len(order) != len(nodes):  # not a DAG from the inputs: leave the order as it is
        return nodes
    return order


def _cost(graph: Graph, node: Node, readers: dict[str, int], kept: set, total: int) -> tuple[int, int]:
    """(live bytes after ``node`` runs, peak bytes while it runs)."""
    produced = sum(_bytes(graph, o) for o in node.outputs)
    freed = sum(_bytes(graph, i) for i in set(node.inputs) if readers.get(i) == 1 and i not in kept)
    return total + produced - freed, total + produced
