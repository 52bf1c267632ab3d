"""The fixes of the accuracy budget (budget.py), cheapest first: one small registered function each.

A step looks at the current state (``StepContext``) and proposes settings, never a graph: global settings
(``{"calibration": "auto"}``) and per-layer ones (``{"layers": {node: {"precision": "int16"}}}``). The
ladder rebuilds the int8 graph from them with the export's own calibrate and fix stages, so the settings a
step leaves are exactly what reproduces its result. A step returns a string instead when it does not
apply (the reason goes into the report). Adding a fix = one ``@ladder_step`` function here, in cost order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .config import ExportConfig

QAT_EPOCHS = 15  # fake-quant distillation epochs the ladder tries (early stopping keeps the best epoch)
MIN_LAYER_GAIN_DB = 0.05  # a layer whose promotion alone moves the output SQNR less is not a candidate


@dataclass
class StepContext:
    cfg: ExportConfig  # the settings of the current (best so far) int8 graph
    graph: Any  # the float graph
    rules: Any  # calibration.quantize.QuantRules of the current int8 graph
    profile: Any  # targets.profile.TargetProfile
    has_train: bool  # --train data was given
    worst: Callable[[], list[dict]]  # the layers losing most dB, worst first (computed on demand)
    # the current int8 graph with {node: "int16" | "float"} marks, measured against float (budget_measure.py);
    # ranking=True: on the first samples only
    simulate: Callable[..., Any] | None = None
    budget: tuple[str, float] = ("top1", 1.0)  # (metric, value) to meet
    qgraph: Any = None  # the current int8 graph (its ops can differ: a global pool written as MEAN)


@dataclass(frozen=True)
class Step:
    name: str
    what: str  # one line for the report
    propose: Callable[[StepContext], "dict | str"]


STEPS: list[Step] = []


def ladder_step(name: str, what: str):
    """Register ``propose(ctx) -> settings dict | reason string`` as the next rung of the ladder."""
    def register(fn):
        STEPS.append(Step(name, what, fn))
        return fn
    return register


@ladder_step("ranges", "per-tensor activation ranges chosen by measured int8 error (--calibration auto)")
def _ranges(ctx: StepContext):
    if ctx.cfg.calibration == "auto":
        return "already on (--calibration auto)"
    return {"calibration": "auto"}


@ladder_step("per_channel_fc", "per-channel weights on every fully connected layer")
def _per_channel_fc(ctx: StepContext):
    already = ctx.rules.per_channel_nodes if ctx.rules is not None else frozenset()
    gemms = [n.name for n in ctx.graph.nodes if n.op == "Gemm" and ctx.graph.const(n.inputs[1]) is not None
             and n.name not in already and ctx.cfg.layer(n.name, n.op).per_channel is not False]
    if not gemms:
        return "no per-tensor fully connected layer left"
    return {"layers": {name: {"per_channel": True} for name in gemms}}


@ladder_step("bias_correction", "per-channel empirical bias correction (--bias-correction auto)")
def _bias_correction(ctx: StepContext):
    if ctx.cfg.bias_correction == "auto":
        return "already on (--bias-correction auto)"
    return {"bias_correction": "auto"}


@ladder_step("adaround", "learned weight rounding, layer by layer on calibration data (--adaround)")
def _adaround(ctx: StepContext):
    if getattr(ctx.cfg, "adaround", False):
        return "already on (--adaround)"
    return {"adaround": True}


@ladder_step("int16", "int16 activations (16x8) for the layers whose promotion (with the layers reading them) "
                      "measurably helps the output most, as few as meet the budget")
def _int16(ctx: StepContext):
    if "int16" not in ctx.profile.dtypes:
        return f"{ctx.profile.name} does not run int16 activations"
    return _promote(ctx, "int16", lambda node: _widens(ctx, node))


def _widens(ctx: StepContext, node) -> bool:
    """``node`` is int8 now and the target runs its op in 16x8."""
    from .precision import int16_refusal

    return (ctx.cfg.layer(node.name, node.op).precision in (None, "int8")
            and int16_refusal(node.op, ctx.profile.runtime) is None)


@ladder_step("float_layer", "float for the layers whose float output helps most, as few as meet the budget "
                            "(phone and host targets only)")
def _float_layer(ctx: StepContext):
    if ctx.profile.kind not in ("phone", "host"):
        return f"float layers only on phone/host targets ({ctx.profile.name} is {ctx.profile.kind})"
    return _promote(ctx, "float", lambda node: ctx.cfg.layer(node.name, node.op).precision != "float")


def _promote(ctx: StepContext, precision: str, can: Callable):
    """Each layer that ``can`` take ``precision``, together with its readers that can (an int16 or float
    output read by an int8 layer is read through an int8 copy), is tried alone in the simulation and ranked
    by the output SQNR it gives; then the best groups are added in that order (then every layer that can)
    until the budget holds.
    Proposes the smallest such set (or, when none holds, the set that measured best)."""
    graph, groups = ctx.qgraph if ctx.qgraph is not None else ctx.graph, {}
    for node in graph.nodes:
        if can(node):
            groups[node.name] = [node.name] + [r.name for out in node.outputs for r in graph.consumers(out)
                                               if can(r)]
    if not groups:
        return f"no layer left that can run in {precision}"
    base = ctx.simulate({}, ranking=True).sqnr_db
    alone = {name: ctx.simulate(dict.fromkeys(group, precision), ranking=True).sqnr_db
             for name, group in groups.items()}
    ranked = sorted((n for n in groups if alone[n] > base + MIN_LAYER_GAIN_DB), key=lambda n: -alone[n])
    if not ranked:
        return f"no layer in {precision} moves the output SQNR by {MIN_LAYER_GAIN_DB} dB or more"
    chosen, best = {}, None
    everything = [n for group in groups.values() for n in group]  # last: every layer that can (pairs can help
    for more in [groups[n] for n in ranked] + [everything]:       # where neither alone does)
        chosen.update(dict.fromkeys(more, precision))
        got = ctx.simulate(chosen)
        if best is None or got.key() < best[0].key():
            best = (got, dict(chosen))
        if got.meets(*ctx.budget):
            break
    return {"layers": {n: {"precision": precision} for n in best[1]}}


@ladder_step("qat", f"fake-quant distillation from float ({QAT_EPOCHS} epochs, --qat-epochs; needs --train)")
def _qat(ctx: StepContext):
    if not ctx.has_train:
        return "needs --train data"
    if ctx.cfg.qat_epochs:
        return f"already on (--qat-epochs {ctx.cfg.qat_epochs})"
    return {"qat_epochs": QAT_EPOCHS}
