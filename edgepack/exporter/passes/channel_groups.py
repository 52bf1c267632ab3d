"""Channel groups: the sets of channels that structured pruning must remove together.

Every activation tensor gets a *layout*: the list of channel spaces laid out along its axis 1, each as
a segment (space, channels, block), where ``block`` is how many consecutive elements one channel
occupies (1 for NCHW; H*W after a Flatten; m after a depthwise conv with channel multiplier m). A Conv
(group 1) or Gemm opens a new space; ops that tie channels together merge spaces (union-find):

- residual Add/Sub/Mul/Div of two activations: both inputs' spaces merge (so does squeeze-excite's
  x * s with s shaped (1, C, 1, 1));
- Concat on axis 1 places its inputs' segments one after the other (no merge: each producer's channels
  map to a slice of the output and of the consumers' weight columns);
- a depthwise Conv (group == Cin) passes its input's spaces through (its weights and bias follow);
- pools, Resize, Pad (not on channels), activations, GlobalAveragePool, ReduceMean over H/W, and a
  Flatten/Reshape of (N, C, H, W) to (N, C*H*W) pass channels through (the latter with block H*W).

Anything else (MatMul, Transpose that moves axis 1, grouped convs, odd reshapes) protects the spaces
it touches. A space that reaches a graph output or comes from a graph input is protected; so is the
output of a first layer (a Conv/Gemm reading the graph input) when ``protect_first_last`` is set.
The last layer (the producer of a graph output) is always protected, as its group touches the output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgepack.ir import Graph, Node, ops_where

# one activation in, channel c out of channel c: pools, activations, resize, no-ops
PASS_THROUGH = ops_where(channelwise=True, weights=(), max_inputs=1)
ELEMENTWISE = ops_where(broadcast=True)  # their constant operands shrink with the channels


@dataclass(frozen=True)
class ChannelRef:
    """A group's channels inside one constant tensor: along ``axis``, channel k of the group occupies
    elements [offset + k*block, offset + (k+1)*block). ``node`` is the node reading the tensor."""
    tensor: str
    axis: int
    offset: int
    block: int
    node: str

    def indices(self, channels) -> list[int]:
        return [self.offset + k * self.block + j for k in channels for j in range(self.block)]


@dataclass
class ChannelGroup:
    """Channels removed together. ``producers``: Conv/Gemm weights whose output channels (axis 0) are
    the group's channels; ``consumers``: Conv/Gemm weights whose input columns (axis 1) shrink;
    ``dependents``: per-channel tensors that follow (biases, depthwise weights, Mul/Add constants)."""
    id: int
    channels: int
    producers: list[ChannelRef] = field(default_factory=list)
    consumers: list[ChannelRef] = field(default_factory=list)
    dependents: list[ChannelRef] = field(default_factory=list)
    protected: bool = False
    reason: str | None = None
    space: int = -1  # internal: the union-find root this group was built from

    @property
    def key(self) -> tuple[str, ...]:
        """Stable identity across analyses of the same graph: the producer node names."""
        return tuple(sorted({r.node for r in self.producers}))

    @property
    def cuts(self) -> list[ChannelRef]:
        return self.producers + self.consumers + self.dependents

    def to_json(self) -> dict:
        return {"id": self.id, "channels": self.channels, "producers": list(self.key),
                "consumers": sorted({r.node for r in self.consumers}),
                "dependents": sorted({r.tensor for r in self.dependents}),
                "protected": self.protected, "reason": self.reason}


Segment = tuple[int, int, int]  # (space, channels, block)
Layout = tuple[Segment, ...] | None  # None: channels not tracked (and nothing to cut downstream)


@dataclass
class ChannelAnalysis:
    groups: list[ChannelGroup]
    layouts: dict[str, Layout]  # activation tensor -> segments along axis 1 (spaces resolved to roots)
    reshapes: list[str]  # Reshape nodes whose target shape dim 1 follows the pruning
    depthwise: dict[str, int]  # depthwise Conv node -> channel multiplier (its `group` follows)


class _Spaces:
    """Union-find over channel spaces, each with a size and the cuts and protection attached to it."""

    def __init__(self):
        self.parent: list[int] = []
        self.size: list[int] = []
        self.reason: dict[int, str] = {}
        self.refs: dict[int, list[tuple[str, ChannelRef]]] = {}

    def new(self, size: int, reason: str | None = None) -> int:
        s = len(self.parent)
        self.parent.append(s)
        self.size.append(int(size))
        self.refs[s] = []
        if reason:
            self.reason[s] = reason
        return s

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        self.parent[b] = a
        self.refs[a] += self.refs.pop(b)
        if b in self.reason:
            self.reason.setdefault(a, self.reason.pop(b))
        if self.size[a] != self.size[b]:
            self.protect_space(a, "coupled tensors disagree on the channel count")

    def protect_space(self, s: int, reason: str) -> None:
        self.reason.setdefault(self.find(s), reason)

    def protect(self, layout: Layout, reason: str) -> None:
        for s, _, _ in layout or ():
            self.protect_space(s, reason)


def _segments_match(a: Layout, b: Layout) -> bool:
    return a is not None and b is not None and [x[1:] for x in a] == [x[1:] for x in b]


class _Walker:
    def __init__(self, graph: Graph):
        self.g = graph
        self.sp = _Spaces()
        self.layout: dict[str, Layout] = {}
        self.reshapes: list[str] = []
        self.depthwise: dict[str, int] = {}
        self.first_layers: list[tuple[str, int]] = []  # (node, the space it opens)
        self.input_spaces: set[int] = set()
        self.readers = {}
        for n in graph.nodes:
            for i in set(n.inputs):
                self.readers[i] = self.readers.get(i, 0) + 1

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.g.tensors[name].shape)

    def is_const(self, name: str) -> bool:
        t = self.g.tensors.get(name)
        return t is not None and t.is_const

    def cut(self, kind: str, layout: Layout, tensor: str, axis: int, node: Node, scale: int = 1) -> None:
        """Attach a cut of ``tensor`` along ``axis`` to every space of ``layout``."""
        if not tensor or layout is None:
            return
        offset = 0
        for s, c, b in layout:
            self.sp.refs[self.sp.find(s)].append((kind, ChannelRef(tensor, axis, offset * scale, b * scale,
                                                                   node.name)))
            if self.readers.get(tensor, 0) > 1 or tensor in self.g.outputs:
                self.sp.protect_space(s, f"tensor '{tensor}' is shared by several nodes")
            offset += c * b

    def merge(self, a: Layout, b: Layout, where: str) -> Layout:
        if _segments_match(a, b):
            for (sa, _, _), (sb, _, _) in zip(a, b):
                self.sp.union(sa, sb)
            return a
        self.sp.protect(a, f"channels of '{where}' cannot be matched")
        self.sp.protect(b, f"channels of '{where}' cannot be matched")
        return None

    # ---- op rules -----------------------------------------------------------------------------------------
    def conv(self, n: Node) -> Layout:
        x, w = n.inputs[0], n.inputs[1]
        bias = n.inputs[2] if len(n.inputs) > 2 else ""
        lx = self.layout.get(x)
        if not self.is_const(w) or (bias and not self.is_const(bias)):
            self.sp.protect(lx, f"node '{n.name}' has non-constant weights")
            return None
        cin, cout, group = self.shape(x)[1], self.shape(w)[0], int(n.attrs.get("group", 1))
        if group == 1:
            return self.open_space(n, lx, w, bias)
        if group == cin and cout % cin == 0:  # depthwise: channel c feeds outputs c*m .. c*m+m-1
            m = cout // cin
            self.depthwise[n.name] = m
            self.cut("dependents", lx, w, 0, n, scale=m)
            self.cut("dependents", lx, bias, 0, n, scale=m)
            return None if lx is None else tuple((s, c, b * m) for s, c, b in lx)
        self.sp.protect(lx, f"grouped conv '{n.name}' (group={group}) ties channels in groups")
        return None

    def open_space(self, n: Node, lx: Layout, w: str, bias: str) -> Layout:
        self.cut("consumers", lx, w, 1, n)
        s = self.sp.new(self.shape(w)[0])
        if lx is not None and any(self.sp.find(i) in self.input_spaces for i, _, _ in lx):
            self.first_layers.append((n.name, s))
        self.sp.refs[s].append(("producers", ChannelRef(w, 0, 0, 1, n.name)))
        if self.readers.get(w, 0) > 1:
            self.sp.protect_space(s, f"weight '{w}' is shared by several nodes")
        layout = ((s, self.shape(w)[0], 1),)
        self.cut("dependents", layout, bias, 0, n)
        return layout

    def gemm(self, n: Node) -> Layout:
        x, w = n.inputs[0], n.inputs[1]
        bias = n.inputs[2] if len(n.inputs) > 2 else ""
        if not self.is_const(w) or (bias and not self.is_const(bias)) or len(self.shape(x)) != 2:
            self.sp.protect(self.layout.get(x), f"node '{n.name}' has non-constant weights")
            return None
        return self.open_space(n, self.layout.get(x), w, bias)

    def elementwise(self, n: Node) -> Layout:
        a, b = n.inputs[0], n.inputs[1]
        consts = [self.is_const(a), self.is_const(b)]
        if all(consts):
            return None
        if any(consts):
            x, c = (b, a) if consts[0] else (a, b)
            lx, xs, cs = self.layout.get(x), self.shape(x), self.shape(c)
            axis = 1 - (len(xs) - len(cs))  # the constant's axis that lines up with the channel axis
            if axis < 0 or cs[axis] == 1:
                return lx
            if len(xs) > 1 and cs[axis] == xs[1]:
                self.cut("dependents", lx, c, axis, n)
                return lx
            self.sp.protect(lx, f"constant of '{n.name}' broadcasts oddly over channels")
            return None
        la, lb = self.layout.get(a), self.layout.get(b)
        sa, sb = self.shape(a), self.shape(b)
        if len(sa) == len(sb) >= 2 and sa[1] != sb[1] and 1 in (sa[1], sb[1]):
            small, big = (la, lb) if sa[1] == 1 else (lb, la)
            self.sp.protect(small, f"'{n.name}' broadcasts a single channel")
            return big
        if len(sa) != len(sb):
            self.sp.protect(la, f"'{n.name}' broadcasts across ranks")
            self.sp.protect(lb, f"'{n.name}' broadcasts across ranks")
            return None
        return self.merge(la, lb, n.name)

    def concat(self, n: Node) -> Layout:
        ins = [i for i in n.inputs if i]
        rank = len(self.shape(ins[0]))
        axis = int(n.attrs.get("axis", 1)) % rank
        layouts = [None if self.is_const(i) else self.layout.get(i) for i in ins]
        if axis != 1:
            out = layouts[0]
            for other in layouts[1:]:
                out = self.merge(out, other, n.name)
            return out
        if any(lay is None for lay in layouts):
            for lay in layouts:
                self.sp.protect(lay, f"concat '{n.name}' has an untracked input")
            return None
        return tuple(seg for lay in layouts for seg in lay)

    def reshape(self, n: Node) -> Layout:
        lx, xs, ys = self.layout.get(n.inputs[0]), self.shape(n.inputs[0]), [int(d) for d in n.attrs["shape"]]
        if lx is None:
            return None
        if len(xs) >= 2 and len(ys) >= 2 and ys[0] == xs[0]:
            if ys[1] == xs[1] and math.prod(ys[2:]) == math.prod(xs[2:]):
                self.reshapes.append(n.name)
                return lx
            if ys[1] == math.prod(xs[1:]) and all(d == 1 for d in ys[2:]):  # flatten: channel -> block
                f = math.prod(xs[2:])
                self.reshapes.append(n.name)
                return tuple((s, c, b * f) for s, c, b in lx)
        self.sp.protect(lx, f"reshape '{n.name}' mixes the channel axis")
        return None

    def single(self, n: Node) -> Layout:
        lx = self.layout.get(n.inputs[0])
        rank = len(self.shape(n.inputs[0]))
        op = n.op
        if op in PASS_THROUGH:
            return lx
        if op == "Pad":
            pads = [int(p) for p in n.attrs.get("pads", [])]
            if any(pads[d] or pads[d + rank] for d in (0, 1) if d < rank and len(pads) == 2 * rank):
                self.sp.protect(lx, f"pad '{n.name}' pads the channel axis")
                return None
            return lx
        if op == "ReduceMean":
            axes = n.attrs.get("axes")
            axes = range(rank) if axes is None else [int(a) % rank for a in axes]
            if 0 in axes or 1 in axes:
                self.sp.protect(lx, f"'{n.name}' reduces over channels")
                return None
            return lx
        if op == "Softmax" and int(n.attrs.get("axis", -1)) % rank != 1:
            return lx
        if op == "Transpose" and [int(p) for p in n.attrs["perm"]][:2] == [0, 1]:
            return lx
        if op == "BatchNormalization":
            for c in n.inputs[1:5]:
                self.cut("dependents", lx, c, 0, n)
            return lx
        self.sp.protect(lx, f"'{n.name}' ({op}) mixes channels")
        return None

    def walk(self) -> None:
        for name in self.g.inputs:
            shape = self.shape(name)
            if len(shape) >= 2:
                s = self.sp.new(shape[1], f"graph input '{name}'")
                self.input_spaces.add(s)
                self.layout[name] = ((s, shape[1], 1),)
        for n in self.g.nodes:
            if n.op == "Conv":
                out = self.conv(n)
            elif n.op == "Gemm":
                out = self.gemm(n)
            elif n.op in ELEMENTWISE:
                out = self.elementwise(n)
            elif n.op == "Concat":
                out = self.concat(n)
            elif n.op == "Reshape":
                out = self.reshape(n)
            elif len([i for i in n.inputs if i and not self.is_const(i)]) == 1 and n.op != "MatMul":
                out = self.single(n)
            else:
                for i in n.inputs:
                    self.sp.protect(self.layout.get(i), f"'{n.name}' ({n.op}) mixes channels")
                out = None
            self.layout[n.outputs[0]] = out
        for name in self.g.outputs:
            self.sp.protect(self.layout.get(name), f"reaches graph output '{name}'")


def analyse_channels(graph: Graph, protect_first_last: bool = True) -> ChannelAnalysis:
    """Walk the graph once and return its channel groups plus what applying a pruning needs."""
    w = _Walker(graph)
    w.walk()
    sp = w.sp
    if protect_first_last:
        for node, space in w.first_layers:
            sp.protect_space(space, f"first layer '{node}'")
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    groups = []
    for root in sorted({sp.find(s) for s in range(len(sp.parent))}):
        refs = sp.refs[root]
        producers = [r for k, r in refs if k == "producers"]
        if not producers:
            continue
        grp = ChannelGroup(0, sp.size[root], producers, [r for k, r in refs if k == "consumers"],
                           [r for k, r in refs if k == "dependents"], root in sp.reason, sp.reason.get(root),
                           root)
        groups.append(grp)
    groups.sort(key=lambda g: min(order[r.node] for r in g.producers))
    for i, grp in enumerate(groups):
        grp.id = i
    layouts = {k: None if v is None else tuple((sp.find(s), c, b) for s, c, b in v) for k, v in w.layout.items()}
    return ChannelAnalysis(groups, layouts, w.reshapes, w.depthwise)


def find_channel_groups(graph: Graph, protect_first_last: bool = True) -> list[ChannelGroup]:
    """The groups of coupled channels of ``graph``, in the order of their first producer."""
    return analyse_channels(graph, protect_first_last).groups
