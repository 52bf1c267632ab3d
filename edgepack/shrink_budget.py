"""The accuracy budget of shrinking: the structural rewrites (separable convs, pruned channel groups) are
distilled, the result is measured against the original float graph on a held-out split of the training
samples (budget.measure, the measurement of --accuracy-budget), and while it loses more than the budget the
rewrite that hurts most on its own is reverted, layer by layer, and the rest distilled again.

The budget is --accuracy-budget when given (top1:POINTS or sqnr:DB; here the shrunk float graph against the
original float graph), else ``DEFAULT_BUDGET``. Distillation stops early on its own validation split
(exporter/finetune.py), so the epochs it ran are in the report, not a fixed count.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .config import ExportConfig, parse_budget
from .ir import Graph

log = logging.getLogger(__name__)

DEFAULT_BUDGET = "top1:1"  # points of top-1 (accuracy with labels, else agreement with float) a shrink may lose
HOLD_OUT = 0.2  # of the training samples, never trained on, that the budget is measured on
MIN_HOLD_OUT = 20  # fewer samples than this cannot say anything: the budget is not measured


@dataclass
class Rewrites:
    """What the structural passes did: convs made separable, pruned groups (producer keys); ``spared``:
    the rewrites reverted for the budget, each with its note."""
    separable: list[str] = field(default_factory=list)
    pruned: list[tuple[str, ...]] = field(default_factory=list)
    spared: dict = field(default_factory=dict)  # ("separable", node) | ("prune", key) -> note

    def active(self) -> list[tuple]:
        return [t for t in [("separable", n) for n in self.separable] + [("prune", k) for k in self.pruned]
                if t not in self.spared]


def budget_of(cfg: ExportConfig) -> tuple[str, float, str]:
    metric, value = parse_budget(cfg.accuracy_budget or DEFAULT_BUDGET)
    return metric, value, ("--accuracy-budget" if cfg.accuracy_budget else "the default shrink budget")


def split(train: np.ndarray, labels, seed: int = 0):
    """(fit x, fit labels, held-out x, held-out labels); no held-out part below MIN_HOLD_OUT samples."""
    n_hold = int(round(len(train) * HOLD_OUT))
    if n_hold < MIN_HOLD_OUT:
        return train, labels, None, None
    order = np.random.default_rng(seed).permutation(len(train))
    hold, fit = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    pick = (lambda idx: None) if labels is None else (lambda idx: np.asarray(labels)[idx])
    return train[fit], pick(fit), train[hold], pick(hold)


def shrink_within_budget(graph: Graph, cfg: ExportConfig, passes: list, train, labels, distill):
    """(student, rewrites, pruning plan, distillation history, budget section). ``passes``: the structural
    shrink passes; ``distill(student, x, labels) -> (student, history)`` (None: no fine-tuning)."""
    from .budget import measure

    metric, value, source = budget_of(cfg)
    fit_x, fit_y, hold_x, hold_y = (None, None, None, None) if train is None else split(train, labels)
    student, rewrites, plan = _build(graph, passes, None)
    history = None
    section = {"metric": metric, "value": value, "source": source, "measured_on": 0, "reverted": [],
               "within": None}
    if distill is not None and fit_x is not None:
        student, history = distill(student, fit_x, fit_y)
    if hold_x is None or not rewrites.active():
        section["note"] = ("not measured: fewer than "
                           f"{MIN_HOLD_OUT / HOLD_OUT:.0f} training samples" if hold_x is None else "nothing rewritten")
        return student, rewrites, plan, history, section
    section["measured_on"] = len(hold_x)
    now = measure(graph, student, hold_x, hold_y, metric)
    while not now.meets(metric, value) and rewrites.active():
        worst = _most_harmful(graph, passes, rewrites, hold_x, hold_y, metric)
        rewrites.spared[worst] = (f"reverted: with it the shrunk model lost {_lost(now, metric)} on "
                                  f"{len(hold_x)} held-out samples, over the budget {metric}:{value:g} ({source})")
        section["reverted"].append({"rewrite": worst[0], "layer": _name(worst[1]), "note": rewrites.spared[worst],
                                    "before": now.to_json()})
        log.info("shrink budget: %s %s reverted", worst[0], _name(worst[1]))
        student, rewrites, plan = _build(graph, passes, rewrites)
        if distill is not None:
            student, history = distill(student, fit_x, fit_y)
        now = measure(graph, student, hold_x, hold_y, metric)
    section.update(within=now.meets(metric, value), after=now.to_json())
    return student, rewrites, plan, history, section


def _lost(m, metric: str) -> str:
    return f"{m.top1_lost:.2f} top-1 points" if metric == "top1" else f"output SQNR {m.sqnr_db:.1f} dB"


def _name(layer) -> str:
    return layer if isinstance(layer, str) else "+".join(layer)


def _build(graph: Graph, passes: list, rewrites: Rewrites | None):
    """Run the structural passes leaving the spared rewrites out (``rewrites`` None: the first run, as
    configured); (student, the rewrites found (the first run) or given, pruning plan)."""
    from .exporter.passes import run_passes
    from .exporter.passes.prune import group_id

    spared = {} if rewrites is None else rewrites.spared
    for p in passes:
        if p.pass_name == "separable_convs" and rewrites is not None:
            p.nodes, p.cost = [n for n in rewrites.separable if ("separable", n) not in spared], None
        if p.pass_name == "prune_channels":
            p.spare = {k for kind, k in spared if kind == "prune"}
    student = run_passes(graph, passes) if passes else graph
    plan = next((p.plan for p in passes if p.pass_name == "prune_channels"), None)
    if rewrites is None:
        separable = next((list(p.replaced) for p in passes if p.pass_name == "separable_convs"), [])
        rewrites = Rewrites(separable, [group_id(g.key) for g in plan.groups if g.removed] if plan else [])
    return student, rewrites, plan


def _most_harmful(graph: Graph, passes: list, rewrites: Rewrites, x, labels, metric: str):
    """The active rewrite whose undistilled graph, with it alone, is furthest from the original float."""
    from .budget import measure

    scores = {}
    active = rewrites.active()
    for t in active:
        alone = Rewrites(rewrites.separable, rewrites.pruned, {o: "" for o in active if o != t} | rewrites.spared)
        student, _, _ = _build(graph, passes, alone)
        m = measure(graph, student, x, labels, metric)
        scores[t] = (-(m.top1_lost or 0.0), m.sqnr_db)
    return min(active, key=lambda t: (scores[t], str(t)))
