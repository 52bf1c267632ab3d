"""Structured channel pruning: plan which channels of each channel group go, then remove them physically.

``plan_pruning`` scores every channel of every prunable group (see channel_groups.py), picks the
channels to remove and records params/MACs per layer before and after; ``apply_pruning`` cuts the
weights, biases and per-channel constants, fixes Reshape targets and depthwise ``group`` attributes,
re-infers shapes and verifies the graph. Keep counts are multiples of ``round_to`` (SIMD friendly) and
never below it; a group with fewer than ``round_to`` channels is left alone.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from edgepack.errors import ConfigError
from edgepack.ir import Graph, verify
from edgepack.ir.passes import PassResult
from edgepack.ir.summary import summarize

from .channel_groups import ChannelAnalysis, ChannelGroup, analyse_channels

log = logging.getLogger(__name__)

IMPORTANCE = ("l1", "l2", "taylor")
SCOPES = ("uniform", "global")


@dataclass
class GroupPlan:
    key: tuple[str, ...]  # producer node names (identifies the group in the graph)
    channels: int
    removed: list[int]
    protected: bool = False
    reason: str | None = None
    consumers: list[str] = field(default_factory=list)

    @property
    def keep(self) -> int:
        return self.channels - len(self.removed)


@dataclass
class PruningPlan:
    ratio: float
    importance: str
    round_to: int
    scope: str
    protect_first_last: bool
    groups: list[GroupPlan]
    before: dict = field(default_factory=dict)  # ir.summary.summarize of the graph before
    after: dict = field(default_factory=dict)   # ... and after applying the plan

    @property
    def removed_channels(self) -> int:
        return sum(len(g.removed) for g in self.groups)

    def to_json(self) -> dict:
        """Content of plan.json: settings, what each group loses, params and MACs per layer and in total."""
        after = {r["name"]: r for r in self.after.get("nodes", [])}
        layers = [{"name": r["name"], "op": r["op"], "params_before": r["params"],
                   "params_after": after.get(r["name"], {}).get("params", r["params"]),
                   "macs_before": r["macs"], "macs_after": after.get(r["name"], {}).get("macs", r["macs"]),
                   "output_shape_before": list(r["output_shape"]),
                   "output_shape_after": list(after.get(r["name"], r)["output_shape"])}
                  for r in self.before.get("nodes", [])]
        tb, ta = self.before.get("totals", {}), self.after.get("totals", {})
        return {"settings": {"ratio": self.ratio, "importance": self.importance, "round_to": self.round_to,
                             "scope": self.scope, "protect_first_last": self.protect_first_last},
                "groups": [{"producers": list(g.key), "consumers": g.consumers, "channels": g.channels,
                            "kept": g.keep, "removed": g.removed, "protected": g.protected, "reason": g.reason}
                           for g in self.groups],
                "layers": layers,
                "totals": {"params_before": tb.get("params"), "params_after": ta.get("params"),
                           "macs_before": tb.get("macs"), "macs_after": ta.get("macs"),
                           "channels_removed": self.removed_channels}}


# ---- importance ----------------------------------------------------------------------------------------
def weight_importance(graph: Graph, group: ChannelGroup, norm: str) -> np.ndarray:
    """Per channel: sum over the group's producers of the L1 / L2 norm of the output-channel weights."""
    score = np.zeros(group.channels, np.float64)
    for ref in group.producers:
        w = np.asarray(graph.const(ref.tensor), np.float64).reshape(group.channels, -1)
        score += np.abs(w).sum(1) if norm == "l1" else np.sqrt((w ** 2).sum(1))
    return score


def taylor_importance(graph: Graph, groups: list[ChannelGroup], samples, batch_size: int = 32) -> dict[int, np.ndarray]:
    """Per group and channel: sum over samples of |sum over positions of activation x gradient| at the
    producers' outputs (first-order Taylor estimate of the loss change when the channel goes). The loss
    is label-free: cross-entropy against the model's own top-1 for 2-D outputs, else half the squared output."""
    import torch
    import torch.nn.functional as F

    from edgepack.ir.torch_exec import to_module

    arrays = _sample_arrays(graph, samples)
    wanted = {graph.node(r.node).outputs[0]: g.id for g in groups for r in g.producers}
    scores = {g.id: np.zeros(g.channels, np.float64) for g in groups}
    module = to_module(graph).eval()
    for start in range(0, len(arrays[0]), batch_size):
        acts: dict[str, torch.Tensor] = {}

        def observe(name, value, acts=acts):
            if name in wanted and value.requires_grad:
                value.retain_grad()
                acts[name] = value

        outs = module.run_dict([a[start:start + batch_size] for a in arrays], observe=observe)
        loss = 0.0
        for name in graph.outputs:
            y = outs[name].float()
            loss = loss + (F.cross_entropy(y, y.argmax(1)) if y.dim() == 2 else 0.5 * (y ** 2).mean())
        module.zero_grad()
        loss.backward()
        for name, a in acts.items():
            if a.grad is None:
                continue
            contrib = (a * a.grad).reshape(a.shape[0], a.shape[1], -1).sum(-1).abs().sum(0)
            scores[wanted[name]] += contrib.detach().double().numpy()
    return scores


def _sample_arrays(graph: Graph, samples) -> list[np.ndarray]:
    arrays = [samples] if isinstance(samples, np.ndarray) else list(samples)
    if len(arrays) != len(graph.inputs) or any(len(a) == 0 for a in arrays):
        raise ConfigError(f"taylor importance needs one non-empty array of samples per graph input "
                          f"({len(graph.inputs)} inputs: {', '.join(graph.inputs)})", key="samples")
    out = []
    for a, name in zip(arrays, graph.inputs):
        a = np.asarray(a, np.float32)
        want = tuple(graph.tensors[name].shape[1:])
        if tuple(a.shape[1:]) != want:
            raise ConfigError(f"samples for input '{name}' have shape {a.shape}, the model takes "
                              f"(N, {', '.join(map(str, want))})", key="samples")
        out.append(a)
    return out


# ---- planning ------------------------------------------------------------------------------------------
def round_keep(keep: float, channels: int, round_to: int) -> int:
    """Nearest multiple of round_to, at least round_to, at most the channel count."""
    if channels <= round_to:
        return channels
    k = int(math.floor(keep / round_to + 0.5)) * round_to
    return max(round_to, min(k, channels))


def _check_settings(ratio, importance, round_to, scope, samples) -> None:
    if not 0.0 <= float(ratio) < 1.0:
        raise ConfigError(f"prune ratio {ratio} is out of range (allowed: 0 <= ratio < 1)", key="prune")
    if importance not in IMPORTANCE:
        raise ConfigError(f"unknown pruning importance '{importance}'", key="prune_importance", allowed=IMPORTANCE)
    if scope not in SCOPES:
        raise ConfigError(f"unknown pruning scope '{scope}'", key="prune_scope", allowed=SCOPES)
    if int(round_to) < 1:
        raise ConfigError(f"round_to must be a positive integer, got {round_to}", key="round_to")
    if importance == "taylor" and samples is None:
        raise ConfigError("taylor importance needs sample data (pass samples=, or --train on the CLI)",
                          key="samples")


def _keep_counts(groups: list[ChannelGroup], scores: dict[int, np.ndarray], ratio: float, round_to: int,
                 scope: str) -> dict[int, int]:
    if scope == "uniform":
        return {g.id: round_keep(g.channels * (1.0 - ratio), g.channels, round_to) for g in groups}
    # Global: rank importances normalised by each group's mean, remove the lowest ratio of all channels.
    ranked = []
    for g in groups:
        s = scores[g.id]
        mean = float(s.mean())
        ranked += [(float(v) / mean if mean > 0 else 0.0, g.id, k) for k, v in enumerate(s)]
    ranked.sort()
    keep = {g.id: g.channels for g in groups}
    floor = {g.id: min(g.channels, round_to) for g in groups}
    budget = int(round(ratio * sum(g.channels for g in groups)))
    for _, gid, _ in ranked:
        if budget <= 0:
            break
        if keep[gid] > floor[gid]:
            keep[gid] -= 1
            budget -= 1
    return {g.id: round_keep(keep[g.id], g.channels, round_to) for g in groups}


def plan_pruning(graph: Graph, ratio: float, importance: str = "l1", round_to: int = 8,
                 scope: str = "uniform", samples=None, protect_first_last: bool = True, keep=None) -> PruningPlan:
    """Decide which channels go. ``ratio``: fraction of each group's channels to remove (uniform) or of all
    prunable channels (global). ``samples``: input array(s) for taylor importance. ``keep(node, op)``: true
    for a layer whose channels stay (a per-layer ``prune = false``): its groups are protected."""
    _check_settings(ratio, importance, round_to, scope, samples)
    analysis = analyse_channels(graph, protect_first_last)
    if keep is not None:
        _protect_kept(graph, analysis.groups, keep)
    prunable = [g for g in analysis.groups if not g.protected]
    if importance == "taylor":
        scores = taylor_importance(graph, prunable, samples)
    else:
        scores = {g.id: weight_importance(graph, g, importance) for g in prunable}
    keep = _keep_counts(prunable, scores, float(ratio), int(round_to), scope)
    plans = []
    for g in analysis.groups:
        removed: list[int] = []
        if not g.protected:
            order = np.argsort(scores[g.id], kind="stable")  # least important first, ties by index
            removed = sorted(int(k) for k in order[:g.channels - keep[g.id]])
        plans.append(GroupPlan(g.key, g.channels, removed, g.protected, g.reason,
                               sorted({r.node for r in g.consumers})))
    plan = PruningPlan(float(ratio), importance, int(round_to), scope, protect_first_last, plans)
    plan.before = summarize(graph)
    plan.after = summarize(_apply(graph.copy(), plan))
    log.info("pruning plan: %d of %d channels removed, MACs %d -> %d", plan.removed_channels,
             sum(g.channels for g in plans if not g.protected), plan.before["totals"]["macs"],
             plan.after["totals"]["macs"])
    return plan


def _protect_kept(graph: Graph, groups: list[ChannelGroup], keep) -> None:
    ops = {n.name: n.op for n in graph.nodes}
    for g in groups:
        held = sorted(n for n in {*g.key, *(r.node for r in g.consumers)} if keep(n, ops[n]))
        if held and not g.protected:
            g.protected, g.reason = True, f"kept by the per-layer setting prune = false ({', '.join(held)})"


def group_id(key) -> tuple[str, ...]:
    """A group's producers named as in the graph before separable replacement (``conv/pointwise`` -> ``conv``),
    so that a group keeps its name whether or not its producer was made separable."""
    return tuple(k.removesuffix("/pointwise") for k in key)


def keep_unprofitable(graph: Graph, plan: PruningPlan, cost) -> None:
    """Give back the channels of every group whose cut alone does not lower ``cost(graph)`` (the target's
    estimated latency: e.g. a conv already at one channel tile of its kernels); ``plan.after`` follows."""
    base = cost(graph)
    dropped = False
    for g in plan.groups:
        if not g.removed:
            continue
        alone = dataclasses.replace(plan, groups=[g])
        if cost(_apply(graph.copy(), alone)) >= base:
            g.removed, g.reason, dropped = [], "no estimated gain on the target (its cost model)", True
    if dropped:
        plan.after = summarize(_apply(graph.copy(), plan))


# ---- applying ------------------------------------------------------------------------------------------
def apply_pruning(graph: Graph, plan: PruningPlan) -> Graph:
    """A copy of ``graph`` with the planned channels physically removed (verified)."""
    return _apply(graph.copy(), plan)


def _apply(graph: Graph, plan: PruningPlan) -> Graph:
    from edgepack.ir.torch_exec import infer_shapes

    analysis = analyse_channels(graph, plan.protect_first_last)
    by_key = {g.key: g for g in analysis.groups}
    cuts: dict[tuple[str, int], set[int]] = {}
    kept: dict[int, int] = {}
    for gp in plan.groups:
        if not gp.removed:
            continue
        g = by_key.get(gp.key)
        if g is None or g.channels != gp.channels or g.protected:
            raise ConfigError(f"pruning plan does not match the graph: group of {', '.join(gp.key)} "
                              f"({gp.channels} channels) is {'protected' if g and g.protected else 'missing'}")
        if max(gp.removed) >= g.channels or len(gp.removed) >= g.channels:
            raise ConfigError(f"pruning plan removes channels {gp.removed} from a group of {g.channels}")
        kept[g.space] = g.channels - len(gp.removed)
        for ref in g.cuts:
            cuts.setdefault((ref.tensor, ref.axis), set()).update(ref.indices(gp.removed))
    for (name, axis), idx in sorted(cuts.items()):
        t = graph.tensors[name]
        t.data = np.delete(t.data, sorted(idx), axis=axis)
        t.shape, t.quant = tuple(t.data.shape), None  # per-channel params would be stale
    _fix_attrs(graph, analysis, kept)
    infer_shapes(graph)
    verify(graph)
    return graph


def _fix_attrs(graph: Graph, analysis: ChannelAnalysis, kept: dict[int, int]) -> None:
    """Reshape targets and depthwise groups follow the new channel counts."""
    for name in analysis.reshapes:
        node = graph.node(name)
        layout = analysis.layouts[node.outputs[0]]
        shape = [int(d) for d in node.attrs["shape"]]
        shape[1] = sum(kept.get(s, c) * b for s, c, b in layout)
        node.attrs["shape"] = shape
    for name, m in analysis.depthwise.items():
        node = graph.node(name)
        node.attrs["group"] = int(graph.tensors[node.inputs[1]].shape[0]) // m


class PrunePass:
    """``pass(graph) -> PassResult`` for the pass list (in place); the plan it made is kept in ``.plan``."""

    in_place, pass_name = True, "prune_channels"

    def __init__(self, ratio: float, importance: str = "l1", round_to: int = 8, scope: str = "uniform",
                 samples=None, protect_first_last: bool = True, keep=None, cost=None):
        self.kwargs = dict(ratio=ratio, importance=importance, round_to=round_to, scope=scope,
                           samples=samples, protect_first_last=protect_first_last, keep=keep)
        self.cost = cost  # cost(graph) of the target: a group whose cut does not lower it keeps its channels
        self.spare: set = set()  # producer keys of groups left whole (reverted for the accuracy budget)
        self.plan: PruningPlan | None = None
        self.__name__ = self.pass_name

    def __call__(self, graph: Graph) -> PassResult:
        self.plan = plan_pruning(graph, **self.kwargs)
        spare = {group_id(k) for k in self.spare}
        spared = [g for g in self.plan.groups if g.removed and group_id(g.key) in spare]
        for g in spared:
            g.removed, g.reason = [], "reverted: over the accuracy budget (report.shrink.budget)"
        if spared:
            self.plan.after = summarize(_apply(graph.copy(), self.plan))
        if self.cost is not None:
            keep_unprofitable(graph, self.plan, self.cost)
        if not self.plan.removed_channels:
            return PassResult(graph, False)
        return PassResult(_apply(graph, self.plan), True)
