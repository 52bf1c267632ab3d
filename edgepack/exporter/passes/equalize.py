"""Cross-layer equalisation (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization").

For a pair  A -> [ReLU] -> B  where output channel i of A feeds only input channel i of B, ReLU is
positively homogeneous: B(relu(A(x) / s)) with B's input channel i scaled by s_i equals the original.
Choosing s_i = sqrt(r1_i / r2_i) (r1_i: |w| range of A's output channel i, r2_i: of B's input channel i)
makes both ranges sqrt(r1_i * r2_i), so per-tensor int8 weights stop starving the weak channels. Chains
(A -> B -> C) are balanced by sweeping over all pairs a few times. Exact in float up to rounding.

Degenerate channels (|w| range below ir.quant.DEGENERATE_CHANNEL of the layer's largest, e.g. the 1e-30
"dead" channels of trained networks) are left alone: balancing them multiplies their bias by ~1e15. Each
channel's accumulated factor stays within [1/MAX_SCALE, MAX_SCALE]. The export keeps the result only when
the int8 output error on the calibration data does not grow (calibration.rewrite_check).

Not rescaled: activations that clip at a fixed value (Relu6, Clip, HardSwish, ...), since scaling moves
the clip point; Add/Concat joins; anything read by a second consumer or by the graph output.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from edgepack.ir import Graph, Node, ops_where
from edgepack.ir.passes import PassResult, graph_pass
from edgepack.ir.quant import live_channels

log = logging.getLogger(__name__)

MAX_SWEEPS = 20  # chains converge geometrically; 20 sweeps leave them within TOLERANCE in practice
TOLERANCE = 1e-3  # stop when every scale factor of a sweep is within 0.1% of 1
MAX_SCALE = 1e3  # bound of a channel's accumulated factor: beyond it the bias and activations blow up
# Channel-wise ops with f(s * x) = s * f(x) for s > 0 that may sit between the two layers.
HOMOGENEOUS_OPS = ops_where(homogeneous=True)
FUSED_OK = (None, "Relu")  # fused activations that commute with a positive per-channel scale


@dataclass
class _Pair:
    first: Node  # Conv or Gemm whose output channels are scaled by 1/s
    second: Node  # Conv or Gemm whose input channels are scaled by s
    block: int  # consecutive input features of ``second`` per channel of ``first`` (Flatten before a Gemm)


def _layer_weights(graph: Graph, node: Node) -> np.ndarray | None:
    """The constant weight of a Conv/Gemm (and its bias, when present, is constant too)."""
    if node.op not in ("Conv", "Gemm") or len(node.inputs) < 2:
        return None
    w = graph.const(node.inputs[1])
    has_bias = len(node.inputs) > 2 and node.inputs[2]
    if w is None or (has_bias and graph.const(node.inputs[2]) is None):
        return None
    return w if node.op == "Conv" or w.ndim == 2 else None


def _is_flatten(graph: Graph, node: Node) -> int:
    """Features per channel when ``node`` is a Reshape (N, C, ...) -> (N, C * rest), else 0."""
    src, dst = graph.tensors[node.inputs[0]].shape, graph.tensors[node.outputs[0]].shape
    if node.op != "Reshape" or len(src) < 2 or len(dst) != 2 or src[0] != dst[0]:
        return 0
    return int(np.prod(src[2:])) if dst[1] == int(np.prod(src[1:])) else 0


def _homogeneous(node: Node) -> bool:
    return node.op in HOMOGENEOUS_OPS and node.activation in FUSED_OK


def _find_pair(graph: Graph, first: Node) -> _Pair | None:
    if first.activation not in FUSED_OK or _layer_weights(graph, first) is None:
        return None
    tensor, block = first.outputs[0], 1
    while tensor not in graph.outputs:
        readers = graph.consumers(tensor)
        if len(readers) != 1 or readers[0].inputs.count(tensor) != 1 or readers[0].inputs[0] != tensor:
            return None
        nxt = readers[0]
        if nxt.op in ("Conv", "Gemm"):
            w = _layer_weights(graph, nxt)
            if w is None or nxt.inputs[1] == first.inputs[1]:
                return None
            c_in = w.shape[1] * int(nxt.attrs.get("group", 1)) if nxt.op == "Conv" else w.shape[1]
            channels = graph.const(first.inputs[1]).shape[0]
            if c_in != channels * block or (nxt.op == "Conv" and block != 1):
                return None
            return _Pair(first, nxt, block)
        if _homogeneous(nxt):
            tensor = nxt.outputs[0]
        elif _is_flatten(graph, nxt):
            block *= _is_flatten(graph, nxt)
            tensor = nxt.outputs[0]
        else:
            return None
    return None


def _second_view(w: np.ndarray, node: Node, channels: int, block: int) -> tuple[np.ndarray, tuple]:
    """``w`` of the second layer viewed so that input channel c is index c of the returned axis layout,
    with the axes to reduce for its range: Conv (g, out/g, in/g, kh, kw) -> channel = (g, in/g)."""
    if node.op == "Gemm":
        return w.reshape(w.shape[0], channels, block), (0, 2)
    g = int(node.attrs.get("group", 1))
    return w.reshape((g, w.shape[0] // g) + w.shape[1:]), (1,) + tuple(range(3, w.ndim + 1))


def _scales(graph: Graph, pair: _Pair) -> np.ndarray:
    """s_i = sqrt(r1_i / r2_i); 1 where either range is degenerate (dead channel: nothing to balance)."""
    w1 = np.asarray(graph.const(pair.first.inputs[1]), np.float64)
    w2 = np.asarray(graph.const(pair.second.inputs[1]), np.float64)
    r1 = np.abs(w1.reshape(w1.shape[0], -1)).max(axis=1)
    view, axes = _second_view(w2, pair.second, w1.shape[0], pair.block)
    r2 = np.abs(view).max(axis=axes).reshape(-1)
    ok = live_channels(r1) & live_channels(r2)
    return np.where(ok, np.sqrt(np.divide(r1, r2, out=np.ones_like(r1), where=ok)), 1.0)


def _own_const(graph: Graph, node: Node, pos: int) -> str:
    """Make input ``pos`` of ``node`` a constant only this node reads (copy shared ones) and return it."""
    name = node.inputs[pos]
    if len(graph.consumers(name)) > 1 or name in graph.outputs:
        new = graph.add_const(f"{node.name}.equalized", np.array(graph.const(name), copy=True))
        node.inputs[pos] = new
        return new
    return name


def _write(graph: Graph, name: str, data: np.ndarray) -> None:
    t = graph.tensors[name]
    t.data, t.quant = data.astype(t.data.dtype), None  # quantization, if any, is stale now


def _apply(graph: Graph, pair: _Pair, s: np.ndarray) -> None:
    first, second = pair.first, pair.second
    w1 = np.asarray(graph.const(first.inputs[1]), np.float64)
    _write(graph, first.inputs[1], w1 / s.reshape((-1,) + (1,) * (w1.ndim - 1)))
    if len(first.inputs) > 2 and first.inputs[2]:
        _write(graph, first.inputs[2], np.asarray(graph.const(first.inputs[2]), np.float64) / s)
    w2 = np.asarray(graph.const(second.inputs[1]), np.float64)
    view, _ = _second_view(w2, second, w1.shape[0], pair.block)
    if second.op == "Gemm":
        view = view * s.reshape(1, -1, 1)
    else:
        g = view.shape[0]
        view = view * s.reshape((g, 1, -1) + (1,) * (view.ndim - 3))
    _write(graph, second.inputs[1], view.reshape(w2.shape))


def find_pairs(graph: Graph) -> list[tuple[str, str]]:
    """(first, second) node names of every pair equalize would rescale, in graph order."""
    return [(p.first.name, p.second.name) for p in _pairs(graph)]


def _pairs(graph: Graph) -> list[_Pair]:
    return [p for p in (_find_pair(graph, n) for n in graph.nodes if n.op in ("Conv", "Gemm")) if p]


@graph_pass
def equalize(graph: Graph) -> PassResult:
    """Rescale every Conv/Gemm -> ReLU -> Conv/Gemm pair so both sides of each channel have equal weight
    ranges; sweeps until the scale factors settle. Exact in float (up to rounding)."""
    pairs = _pairs(graph)
    if not pairs:
        return PassResult(graph, False)
    for p in pairs:  # tied weights: give each rescaled layer its own copy first
        for node in (p.first, p.second):
            _own_const(graph, node, 1)
        if len(p.first.inputs) > 2 and p.first.inputs[2]:
            _own_const(graph, p.first, 2)
    changed, sweeps = False, 0
    total = [np.ones(graph.const(p.first.inputs[1]).shape[0]) for p in pairs]
    for sweeps in range(1, MAX_SWEEPS + 1):
        worst = 0.0
        for k, p in enumerate(pairs):
            s = np.clip(total[k] * _scales(graph, p), 1.0 / MAX_SCALE, MAX_SCALE) / total[k]
            total[k] *= s
            deviation = float(np.max(np.abs(np.log(s))))
            if deviation > 1e-9:
                _apply(graph, p, s)
                changed = True
            worst = max(worst, deviation)
        if worst < math.log1p(TOLERANCE):
            break
    log.debug("equalized %d layer pairs in %d sweeps", len(pairs), sweeps)
    return PassResult(graph, changed)
