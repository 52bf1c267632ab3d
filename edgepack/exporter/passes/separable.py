"""Replace a KxK Conv (group 1) with a depthwise KxK conv followed by a pointwise 1x1 conv.

For each input channel c the slice W[:, c] (Cout x K*K) is approximated by its best rank-m
approximation (truncated SVD, Eckart-Young): sum_j s_j u_j v_j^T. The depthwise filter of channel
(c, j) is s_j * v_j (a KxK kernel), the pointwise weight column (c, j) is u_j, so that
pointwise(depthwise(x)) = conv(x, W_approx) exactly. Strides, pads and dilations go to the depthwise
conv; the bias and a fused activation stay on the pointwise conv, which writes the original output.

MACs per output pixel fall from Cout*Cin*K*K to Cin*m*(K*K + Cout). The relative reconstruction error
||W - W_approx||_F / ||W||_F says how far the composite is from the original conv.

``auto`` picks the convs whose error is at most ``AUTO_ERROR_THRESHOLD`` (0.35: at most ~12% of the
kernel energy, ||.||_F^2, is lost, small enough for a short distillation to recover) and whose MACs
fall, the biggest MAC savings first.
"""
from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import numpy as np

from edgepack.errors import ConfigError
from edgepack.ir import Graph, Node, Tensor, verify
from edgepack.ir.passes import PassResult

log = logging.getLogger(__name__)

AUTO_ERROR_THRESHOLD = 0.35
# With distillation a factorised layer is retrained, so `--separable auto` may accept a rougher
# initial approximation than without (the SVD start only has to be a good starting point).
SEPARABLE_ERROR_WITH_FINETUNE = 0.9


class SeparableCandidate(NamedTuple):
    node: str
    macs_before: int
    macs_after: int
    error: float  # ||W - W_approx||_F / ||W||_F


def _eligible(graph: Graph, node: Node) -> bool:
    if node.op != "Conv" or int(node.attrs.get("group", 1)) != 1:
        return False
    w = graph.const(node.inputs[1])
    if w is None or w.ndim != 4 or w.shape[2] * w.shape[3] <= 1:
        return False
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    return not bias or graph.const(bias) is not None


def factorize(w: np.ndarray, multiplier: int = 1) -> tuple[np.ndarray, np.ndarray, float]:
    """(depthwise (Cin*m, 1, kh, kw), pointwise (Cout, Cin*m, 1, 1), relative error) for weights w
    (Cout, Cin, kh, kw); channel (c, j) of the depthwise output is at index c*m + j."""
    cout, cin, kh, kw = w.shape
    m = int(multiplier)
    w64 = np.asarray(w, np.float64)
    dw = np.zeros((cin * m, 1, kh, kw))
    pw = np.zeros((cout, cin * m, 1, 1))
    lost = 0.0
    for c in range(cin):
        u, s, vt = np.linalg.svd(w64[:, c].reshape(cout, kh * kw), full_matrices=False)
        r = min(m, len(s))
        dw[c * m:c * m + r, 0] = (s[:r, None] * vt[:r]).reshape(r, kh, kw)
        pw[:, c * m:c * m + r, 0, 0] = u[:, :r]
        lost += float((s[r:] ** 2).sum())
    total = float((w64 ** 2).sum())
    error = float(np.sqrt(lost / total)) if total > 0 else 0.0
    return dw.astype(w.dtype), pw.astype(w.dtype), error


def _macs(graph: Graph, node: Node, multiplier: int) -> tuple[int, int]:
    cout, cin, kh, kw = graph.tensors[node.inputs[1]].shape
    out = graph.tensors[node.outputs[0]].shape
    pixels = int(np.prod(out)) // int(out[1])  # N * Hout * Wout
    return pixels * cout * cin * kh * kw, pixels * cin * multiplier * (kh * kw + cout)


# A depthwise + pointwise pair over very few input channels cannot express a full conv (with one input
# channel it is a rank-m filter bank): `auto` leaves such convs alone, they are also cheap.
AUTO_MIN_INPUT_CHANNELS = 8


def separable_candidates(graph: Graph, error_threshold: float = AUTO_ERROR_THRESHOLD,
                         multiplier: int = 1, min_input_channels: int = 1) -> list[SeparableCandidate]:
    """Eligible convs whose replacement loses MACs and errs at most ``error_threshold``, biggest saving
    first. Pass ``error_threshold=float('inf')`` to list every eligible conv."""
    out = []
    for node in graph.nodes:
        if not _eligible(graph, node) or graph.tensors[node.inputs[1]].shape[1] < min_input_channels:
            continue
        before, after = _macs(graph, node, multiplier)
        _, _, error = factorize(graph.const(node.inputs[1]), multiplier)
        if after < before and error <= error_threshold:
            out.append(SeparableCandidate(node.name, before, after, error))
    out.sort(key=lambda c: (c.macs_after - c.macs_before, c.error, c.node))
    return out


def _replace(graph: Graph, node: Node, multiplier: int) -> float:
    x, w_name = node.inputs[0], node.inputs[1]
    w = graph.const(w_name)
    dw, pw, error = factorize(w, multiplier)
    cin = w.shape[1]
    mid = graph.unique_name(f"{node.name}/depthwise_out")
    graph.add_tensor(Tensor(mid, (0,), graph.tensors[x].dtype))
    dw_node = Node(graph.unique_name(f"{node.name}/depthwise"), "Conv",
                   [x, graph.add_const(f"{w_name}.depthwise", dw)], [mid],
                   {"strides": list(node.attrs.get("strides", [1, 1])), "pads": list(node.attrs.get("pads", [0] * 4)),
                    "dilations": list(node.attrs.get("dilations", [1, 1])), "group": int(cin), "activation": None})
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    pw_inputs = [mid, graph.add_const(f"{w_name}.pointwise", pw)] + ([bias] if bias else [])
    pw_node = Node(graph.unique_name(f"{node.name}/pointwise"), "Conv", pw_inputs, list(node.outputs),
                   {"strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1,
                    "activation": node.attrs.get("activation")})
    at = next(i for i, n in enumerate(graph.nodes) if n is node)
    graph.nodes[at:at + 1] = [dw_node, pw_node]
    graph.tensors[node.outputs[0]].quant = None
    return error


def resolve_nodes(graph: Graph, nodes, multiplier: int = 1,
                  error_threshold: float = AUTO_ERROR_THRESHOLD) -> list[str]:
    """``"auto"`` -> the candidates, ``"none"``/None -> [], a comma-separated string or a list -> checked names."""
    if nodes is None or nodes == "none":
        return []
    if nodes == "auto":
        return [c.node for c in separable_candidates(graph, error_threshold, multiplier,
                                                     min_input_channels=AUTO_MIN_INPUT_CHANNELS)]
    names = [s.strip() for s in nodes.split(",") if s.strip()] if isinstance(nodes, str) else list(nodes)
    eligible = [n.name for n in graph.nodes if _eligible(graph, n)]
    for name in names:
        if name not in eligible:
            raise ConfigError(f"node '{name}' cannot be made separable (needs a KxK Conv, K > 1, group 1, "
                              "constant weights)", key="separable", allowed=["auto", "none"] + eligible)
    return names


def apply_separable(graph: Graph, nodes: Sequence[str] | str, multiplier: int = 1) -> Graph:
    """A copy of ``graph`` where each named conv (or ``"auto"``) is a depthwise + pointwise pair."""
    from edgepack.ir.torch_exec import infer_shapes

    if int(multiplier) < 1:
        raise ConfigError(f"separable multiplier must be >= 1, got {multiplier}", key="separable_multiplier")
    graph = graph.copy()
    for name in resolve_nodes(graph, nodes, multiplier):
        error = _replace(graph, graph.node(name), int(multiplier))
        log.info("conv '%s' -> depthwise + pointwise (relative weight error %.3f)", name, error)
    infer_shapes(graph)
    graph.remove_unused()
    verify(graph)
    return graph


def ranked_by_cost(graph: Graph, names: list[str], multiplier: int, cost) -> list[str]:
    """The convs among ``names`` whose replacement lowers ``cost`` (e.g. the target's energy), the biggest
    saving first; each is priced alone (its node and tensors), so this is linear in the graph."""
    from .low_rank import isolated

    saving = {}
    for name in names:
        alone = isolated(graph, [graph.node(name)], [])
        saving[name] = cost(alone) - cost(apply_separable(alone, [name], multiplier))
    return sorted((n for n in names if saving[n] > 0), key=lambda n: (-saving[n], n))


class SeparablePass:
    """``pass(graph) -> PassResult`` (copying): ``nodes`` is "auto", "none" or node names."""

    in_place, pass_name = False, "separable_convs"

    def __init__(self, nodes="auto", multiplier: int = 1, error_threshold: float = AUTO_ERROR_THRESHOLD,
                 cost=None):
        self.nodes, self.multiplier, self.error_threshold = nodes, multiplier, error_threshold
        self.cost = cost  # with "auto": cost(graph) of the target; keep the convs whose cost falls, most first
        self.replaced: list[str] = []
        self.__name__ = self.pass_name

    def __call__(self, graph: Graph) -> PassResult:
        self.replaced = resolve_nodes(graph, self.nodes, self.multiplier, self.error_threshold)
        if self.cost is not None and self.nodes == "auto":
            self.replaced = ranked_by_cost(graph, self.replaced, self.multiplier, self.cost)
        if not self.replaced:
            return PassResult(graph, False)
        return PassResult(apply_separable(graph, self.replaced, self.multiplier), True)
