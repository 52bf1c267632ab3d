"""The graph's index: which nodes produce and read each tensor, kept current as the graph is edited.

Passes edit graphs freely (``node.inputs[0] = x``, ``graph.nodes.insert(...)``, ``graph.nodes = [...]``),
so the lists a node and a graph hold are lists that report every change to the index; a lookup then costs
time proportional to the answer, not to the graph, and a pass costs time linear in the graph.
Answers keep node order: every node carries an order key that follows its place in ``graph.nodes``.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

_GAP = 1024.0  # spacing of fresh order keys: room to insert between neighbours many times before renumbering


class EdgeList(list):
    """A node's ``inputs`` or ``outputs``: a list that tells its graph's index what changed."""

    __slots__ = ("_node", "_kind")

    def __init__(self, items, node, kind: str):
        super().__init__(items)
        self._node, self._kind = node, kind

    def _edit(self, method: Callable, *args):
        old = list(self)
        result = method(self, *args)
        self._node._edges_changed(self._kind, old, self)
        return result

    def __setitem__(self, i, v):
        return self._edit(list.__setitem__, i, v)

    def __delitem__(self, i):
        return self._edit(list.__delitem__, i)

    def __iadd__(self, other):
        self._edit(list.extend, list(other))
        return self

    def __imul__(self, k):
        self._edit(list.__imul__, k)
        return self

    def append(self, v):
        return self._edit(list.append, v)

    def extend(self, vs):
        return self._edit(list.extend, list(vs))

    def insert(self, i, v):
        return self._edit(list.insert, i, v)

    def pop(self, i=-1):
        return self._edit(list.pop, i)

    def remove(self, v):
        return self._edit(list.remove, v)

    def clear(self):
        return self._edit(list.clear)

    def sort(self, **kw):
        return self._edit(lambda s: list.sort(s, **kw))

    def reverse(self):
        return self._edit(list.reverse)

    def __reduce_ex__(self, protocol):  # pickles and copies as a plain list: the index is not data
        return list, (list(self),)


class NodeList(list):
    """``graph.nodes``: a list that tells the index which nodes came and went, and keeps order keys."""

    __slots__ = ("_graph",)

    def __init__(self, items, graph):
        super().__init__(items)
        self._graph = graph

    def _replace(self, start: int, stop: int, new: list) -> None:
        """The one edit every list operation becomes: ``self[start:stop] = new``."""
        removed = list.__getitem__(self, slice(start, stop))
        list.__setitem__(self, slice(start, stop), new)
        self._graph._nodes_changed(removed, new, start)

    def _span(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                return None
            return start, max(start, stop)
        n = len(self)
        i = i + n if i < 0 else i
        if not 0 <= i < n:
            raise IndexError("list index out of range")
        return i, i + 1

    def __setitem__(self, i, v):
        span = self._span(i)
        if span is None:  # extended slice: rare, renumber everything
            old = list(self)
            list.__setitem__(self, i, v)
            self._graph._nodes_reset(old)
            return
        self._replace(*span, list(v) if isinstance(i, slice) else [v])

    def __delitem__(self, i):
        span = self._span(i)
        if span is None:
            old = list(self)
            list.__delitem__(self, i)
            self._graph._nodes_reset(old)
            return
        self._replace(*span, [])

    def __iadd__(self, other):
        self.extend(other)
        return self

    def append(self, v):
        self._replace(len(self), len(self), [v])

    def extend(self, vs):
        self._replace(len(self), len(self), list(vs))

    def insert(self, i, v):
        n = len(self)
        i = max(0, min(n, i + n if i < 0 else i))
        self._replace(i, i, [v])

    def pop(self, i=-1):
        v = self[i]
        del self[i]
        return v

    def remove(self, v):
        del self[self.index(v)]

    def clear(self):
        self._replace(0, len(self), [])

    def sort(self, **kw):
        old = list(self)
        list.sort(self, **kw)
        self._graph._nodes_reset(old)

    def reverse(self):
        old = list(self)
        list.reverse(self)
        self._graph._nodes_reset(old)

    def __reduce_ex__(self, protocol):
        return list, (list(self),)


class GraphIndex:
    """tensor -> producing / reading nodes (in node order), node name -> node."""

    def __init__(self, nodes):
        self._links: dict[str, dict[str, dict[int, list]]] = {"inputs": defaultdict(dict),
                                                             "outputs": defaultdict(dict)}
        self._names: dict[str, dict[int, Any]] = defaultdict(dict)
        self.members: dict[int, Any] = {}
        for n in nodes:
            self.add(n)

    def add(self, node) -> None:
        self.members[id(node)] = node
        self._names[node.name][id(node)] = node
        for kind in ("inputs", "outputs"):
            for t in node.__dict__[kind]:
                self._link(kind, t, node, 1)

    def drop(self, node) -> None:
        if self.members.pop(id(node), None) is None:
            return
        self._names[node.name].pop(id(node), None)
        for kind in ("inputs", "outputs"):
            for t in node.__dict__[kind]:
                self._link(kind, t, node, -1)

    def relink(self, node, kind: str, old, new) -> None:
        if id(node) not in self.members:
            return
        for t in old:
            self._link(kind, t, node, -1)
        for t in new:
            self._link(kind, t, node, 1)

    def rename(self, node, old: str) -> None:
        if id(node) in self.members:
            self._names[old].pop(id(node), None)
            self._names[node.name][id(node)] = node

    def _link(self, kind: str, tensor: str, node, delta: int) -> None:
        entries = self._links[kind][tensor]
        entry = entries.get(id(node))
        if entry is None:
            entries[id(node)] = [node, delta]
        else:
            entry[1] += delta
            if entry[1] <= 0:
                del entries[id(node)]
        if not entries:
            del self._links[kind][tensor]

    def nodes(self, kind: str, tensor: str) -> list:
        entries = self._links[kind].get(tensor)
        if not entries:
            return []
        found = [e[0] for e in entries.values()]
        if len(found) > 1:
            found.sort(key=lambda n: n.__dict__["_order"])
        return found

    def named(self, name: str) -> list:
        found = list(self._names.get(name, {}).values())
        found.sort(key=lambda n: n.__dict__["_order"])
        return found

    def has_name(self, name: str) -> bool:
        return bool(self._names.get(name))


def assign_order(nodes: list, start: int, count: int) -> bool:
    """Give ``nodes[start:start+count]`` order keys between their neighbours; False when there is no
    room left (the caller renumbers the whole list)."""
    lo = nodes[start - 1].__dict__["_order"] if start > 0 else None
    hi = nodes[start + count].__dict__["_order"] if start + count < len(nodes) else None
    if lo is None and hi is None:
        keys = [i * _GAP for i in range(count)]
    elif hi is None:
        keys = [lo + (i + 1) * _GAP for i in range(count)]
    elif lo is None:
        keys = [hi - (count - i) * _GAP for i in range(count)]
    else:
        step = (hi - lo) / (count + 1)
        if step <= abs(hi) * 1e-9 or step <= 1e-6:
            return False
        keys = [lo + (i + 1) * step for i in range(count)]
    for n, k in zip(nodes[start:start + count], keys):
        n.__dict__["_order"] = k
    return True


def renumber(nodes: list) -> None:
    for i, n in enumerate(nodes):
        n.__dict__["_order"] = i * _GAP
