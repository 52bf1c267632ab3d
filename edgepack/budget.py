"""--accuracy-budget: measure the int8 graph against float, then climb a ladder of fixes until it holds.

The budget is ``top1:POINTS`` (points of top-1 agreement with float lost, or of accuracy when labels are
given) or ``sqnr:DB`` (output SQNR at least). The int8 graph is measured in the fake-quant simulation
(ir.torch_exec, int8 weights and int32 biases rounded as the files hold them) on all the validation samples
(the calibration samples without --val), up to MAX_SAMPLES, not just --val-limit's share: on 200 samples one
top-1 point is 2 samples. Then the fixes of budget_steps.py are tried in order, cheapest
first, each one rebuilt with the export's own calibrate and fix stages from the settings it proposes; a
fix is kept only when it measurably helps. The ladder stops when the budget holds or after --budget-time.

The report's ``budget`` section lists every rung: its measured gain, its cost (flash, TFLM arena and
estimated latency on the target), its time, and the settings (TOML) that reproduce it. A budget that
cannot be met names the layers that stop it (those whose float version gives the output most back, in the
simulation) and makes the export exit 3.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable

import numpy as np

from .budget_measure import Measure, Simulator, measure  # noqa: F401  (measure: its old import path)
from .budget_steps import STEPS, StepContext
from .calibration.output_error import db_or_none, output_sqnr_db
from .config import ExportConfig, parse_budget
from .errors import ConfigError

log = logging.getLogger(__name__)

MIN_SQNR_GAIN_DB = 0.3  # a fix that leaves top-1 unchanged must buy at least this much output SQNR
MAX_SAMPLES = 2048  # the budget is measured on all the samples given, up to this many
WORST_LAYERS = 3
FLOAT_INPUT_DB = 100.0  # what a layer reading the float input is counted as starting from
_NOT_SETTINGS = ("accuracy_budget", "budget_time", "lint", "layers", "force", "validate", "fail_on_budget")


def helps(new: Measure, old: Measure, metric: str) -> bool:
    """Measurably better: fewer top-1 points lost (or as few and more SQNR), or more output SQNR."""
    if metric == "top1" and new.top1_lost != old.top1_lost:
        return new.top1_lost < old.top1_lost
    return new.sqnr_db >= old.sqnr_db + MIN_SQNR_GAIN_DB


def costs(qgraph, profile) -> dict:
    """Flash (the int8 .tflite), TFLM arena (estimated) and estimated latency on the target."""
    from .exporter.emit_tflite import to_tflite
    from .targets.latency import estimate_latency
    from .targets.memory import estimate_memory

    data = to_tflite(qgraph, int8=True)
    return {"flash_bytes": len(data), "arena_bytes": estimate_memory(data).arena_bytes,
            "latency_ms": round(estimate_latency(qgraph, profile).total_ms, 4)}


def worst_layers(graph, qgraph, x: np.ndarray, n: int = WORST_LAYERS) -> list[dict]:
    """The layers that lose most: output SQNR of each node (fake-quant vs float) and the dB it loses
    against the best of its inputs, most lost first."""
    from .ir.torch_exec import run

    x = x[:64]
    ref, got = run(graph, [x], keep="all"), run(qgraph, [x], fake_quant=True, keep="all")
    db = {t: output_sqnr_db(ref, got, [t]) for t in ref if t in got}
    rows = []
    for node in graph.nodes:
        outs = [db[t] for t in node.outputs if t in db]
        ins = [db[t] for t in node.inputs if t in db]
        if not outs or not np.isfinite(min(outs)):
            continue
        before = max([v for v in ins if np.isfinite(v)], default=FLOAT_INPUT_DB)  # graph inputs: float
        lost = min(before, FLOAT_INPUT_DB) - min(outs)
        rows.append({"node": node.name, "op": node.op, "output_sqnr_db": db_or_none(min(outs)),
                     "db_lost": db_or_none(lost), "_key": lost})
    rows.sort(key=lambda r: -r["_key"])
    return [{k: v for k, v in r.items() if k != "_key"} for r in rows[:n]]


def stopping_layers(graph, qgraph, simulator: Simulator, x: np.ndarray, n: int = WORST_LAYERS,
                    bias_deltas: dict | None = None) -> list[dict]:
    """The layers that stop an unmet budget: each one (with the layers reading it) kept in float in the
    simulation, ranked by the output SQNR that gives back (``output_db_if_float``); with its own SQNR and
    the dB it loses (worst_layers), which alone can point at a layer the output barely reads."""
    own = {r["node"]: r for r in worst_layers(graph, qgraph, x, n=len(graph.nodes))}
    base = simulator.measure(qgraph, ranking=True).sqnr_db
    rows = []
    for node in qgraph.nodes:
        if node.name not in own:
            continue
        group = [node.name] + [r.name for out in node.outputs for r in qgraph.consumers(out)]
        got = simulator.measure(qgraph, dict.fromkeys(group, "float"), True, bias_deltas).sqnr_db
        rows.append((got, {**own[node.name], "output_db_if_float": db_or_none(got - base)}))
    rows.sort(key=lambda r: -r[0])
    return [r for _, r in rows[:n]]


def settings_of(cfg: ExportConfig, base: ExportConfig) -> dict:
    """The settings (beyond ``base``) and the per-layer table that reproduce ``cfg``'s int8 graph."""
    changed = {k: getattr(cfg, k) for k in ExportConfig.keys()
               if k not in _NOT_SETTINGS and getattr(cfg, k) != getattr(base, k)}
    layers = {name: s.given() for name, s in sorted(cfg.layers.items())}
    return {"settings": changed, "layers": layers, "toml": to_toml(changed, layers)}


def to_toml(settings: dict, layers: dict) -> str:
    def value(v):
        return ("true" if v else "false") if isinstance(v, bool) else repr(v) if isinstance(v, (int, float)) \
            else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"{k} = {value(v)}" for k, v in settings.items()]
    for name, values in layers.items():
        lines.append(f'[layers."{name}"]')
        lines += [f"{k} = {value(v)}" for k, v in values.items()]
    return "\n".join(lines) + ("\n" if lines else "")


def rebuild(s, cfg: ExportConfig, stages):
    """A copy of the export state ``s`` run again through ``stages`` (calibrate, QAT) with ``cfg``."""
    state = dataclasses.replace(s, cfg=cfg.replace(lint=False), checks=list(s.checks), paths={},
                                report=dataclasses.replace(s.report, notes=[], calibration={}))
    for stage in stages:
        state = stage(state)
    return state


def meet_budget(s, stages: tuple[Callable, ...], x: np.ndarray | None, labels, where: str = "samples") -> object:
    """Climb the ladder from the export state ``s`` (calibrated, QAT done); each candidate runs the export's
    ``stages`` (calibrate, QAT) again with its settings. The best state found is returned with
    ``report.budget`` filled in."""
    metric, value = parse_budget(s.cfg.accuracy_budget)
    if x is None or not len(x):
        raise ConfigError("--accuracy-budget needs samples to measure on (--calib or --val)", "accuracy_budget")
    x = np.asarray(x[:MAX_SAMPLES], np.float32)
    labels = None if labels is None else np.asarray(labels)[:MAX_SAMPLES]
    shape = s.graph.tensors[s.graph.outputs[0]].shape
    if metric == "top1" and int(np.prod(shape[1:])) < 2:
        raise ConfigError(f"accuracy budget top1 needs a classifier output (one score per class); output "
                          f"'{s.graph.outputs[0]}' has shape {list(shape)}: use sqnr:DB", "accuracy_budget")
    start, base = time.monotonic(), s.cfg
    current, now = s, measure(s.graph, s.qgraph, x, labels, metric)
    simulator = Simulator(s.graph, x, labels, metric)
    rows = [{"step": "start", "kept": True, "measured": now.to_json(), "cost": costs(s.qgraph, s.profile),
             "seconds": 0.0, **settings_of(base, base)}]
    for step in STEPS:
        row = {"step": step.name, "what": step.what}
        if now.meets(metric, value):
            rows.append({**row, "skipped": "budget met"})
            continue
        if time.monotonic() - start > base.budget_time:
            rows.append({**row, "skipped": f"time limit ({base.budget_time:g} s, --budget-time) reached"})
            continue
        proposal = step.propose(_context(current, x, simulator, (metric, value)))
        if isinstance(proposal, str):
            rows.append({**row, "skipped": proposal})
            continue
        t0 = time.monotonic()
        cfg = _apply(current.cfg, proposal)
        candidate = rebuild(s, cfg, stages)
        got = measure(s.graph, candidate.qgraph, x, labels, metric)
        kept = helps(got, now, metric)
        cost = costs(candidate.qgraph, s.profile)
        before = next(r["cost"] for r in reversed(rows) if r.get("kept"))
        rows.append({**row, "kept": kept, "measured": got.to_json(), "gain": _gain(got, now),
                     "cost": cost, "cost_delta": {k: round(cost[k] - before[k], 4) for k in cost},
                     "seconds": round(time.monotonic() - t0, 2), **settings_of(cfg, base)})
        log.info("budget step %s: %s %s", step.name, "kept" if kept else "dropped", got.to_json())
        if kept:
            current, now = candidate, got
    on = (f"{len(x)} samples of {where}, in the fake-quant int8 simulation (one top-1 point = {len(x) / 100:g} "
          "samples; the runtimes' figures are in validation)")
    return _finish(s, current, base, rows, (metric, value, on), now, simulator, time.monotonic() - start)


def _context(state, x, simulator: Simulator, budget: tuple[str, float]) -> StepContext:
    cache = {}

    def worst():
        if "rows" not in cache:
            cache["rows"] = worst_layers(state.graph, state.qgraph, x, n=8)
        return cache["rows"]

    def simulate(marks: dict[str, str], ranking: bool = False) -> Measure:
        return simulator.measure(state.qgraph, marks, ranking, _deltas(state))

    return StepContext(state.cfg, state.graph, state.rules, state.profile,
                       state.given.train is not None, worst, simulate, budget, state.qgraph)


def _deltas(state) -> dict:
    """The bias corrections folded into ``state``'s int8 graph (bias tensor -> delta)."""
    return getattr(state.calibration, "bias_deltas", None) or {}


def _apply(cfg: ExportConfig, proposal: dict) -> ExportConfig:
    proposal = dict(proposal)
    layers = {name: ls.given() for name, ls in cfg.layers.items()}
    for name, values in proposal.pop("layers", {}).items():
        layers.setdefault(name, {}).update(values)
    return cfg.replace(layers=layers, **proposal)


def _gain(new: Measure, old: Measure) -> dict:
    gain = {"sqnr_db": db_or_none(new.sqnr_db - old.sqnr_db)}
    if new.top1_lost is not None:
        gain["top1_points"] = round(old.top1_lost - new.top1_lost, 3)
    return gain


def _finish(s, best, base: ExportConfig, rows, budget: tuple, now: Measure, simulator: Simulator, seconds: float):
    """Adopt the best state into ``s`` and write the report's budget section (and a note)."""
    metric, value, measured_on = budget
    if best is not s:
        s.qgraph, s.ranges, s.rules, s.calibration = best.qgraph, best.ranges, best.rules, best.calibration
        s.cfg = best.cfg.replace(lint=s.cfg.lint)
        s.report.calibration = best.report.calibration
    met = now.meets(metric, value)
    kept = [r["step"] for r in rows[1:] if r.get("kept")]
    s.report.budget = {"budget": base.accuracy_budget, "metric": metric, "value": value, "met": met,
                       "measured": now.to_json(), "measured_on": measured_on, "seconds": round(seconds, 2),
                       "steps": rows, "reproduce": settings_of(s.cfg, base)}
    what = (f"accuracy budget {base.accuracy_budget} " + ("met" if met else "NOT met")
            + f" ({_describe(now, metric)}; fixes kept: {', '.join(kept) or 'none'})")
    if not met:
        s.report.budget["stopped_by"] = stopping_layers(s.graph, s.qgraph, simulator, simulator.x,
                                                        bias_deltas=_deltas(s))
        what += "; the layers that stop it: " + ", ".join(
            f"{r['node']} (+{r['output_db_if_float']} dB at the output in float)" for r in s.report.budget["stopped_by"])
    s.report.notes.append(what)
    return s


def _describe(m: Measure, metric: str) -> str:
    if metric == "top1":
        return f"{m.top1_lost:.2f} top-1 points lost, output SQNR {m.sqnr_db:.1f} dB"
    return f"output SQNR {m.sqnr_db:.1f} dB"


def missed(report) -> str | None:
    """The one-line reason an export must exit 3 for its accuracy budget, or None."""
    budget = getattr(report, "budget", None) or {}
    if not budget or budget.get("met"):
        return None
    layers = ", ".join(r["node"] for r in budget.get("stopped_by", []))
    return (f"accuracy budget {budget['budget']} not met ({_describe_json(budget['measured'], budget['metric'])} "
            f"after the fixes); the layers that stop it: {layers or 'none found'}")


def _describe_json(m: dict, metric: str) -> str:
    if metric == "top1":
        return f"{m['top1_points_lost']} top-1 points lost"
    return f"output SQNR {m['sqnr_db']} dB"
