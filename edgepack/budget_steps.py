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
INT16_LAYERS = 2  # the worst layers moved to int16 at once


@dataclass
class StepContext:
    cfg: ExportConfig  # the settings of the current (best so far) int8 graph
    graph: Any  # the float graph
    rules: Any  # calibration.quantize.QuantRules of the current int8 graph
    profile: Any  # targets.profile.TargetProfile
    has_train: bool  # --train data was given
    worst: Callable[[], list[dict]]  # the layers losing most dB, worst first (computed on demand)


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


@ladder_step("int16", f"int16 activations (16x8) for the {INT16_LAYERS} layers that lose most and the layers "
                      "reading them")
def _int16(ctx: StepContext):
    if "int16" not in ctx.profile.dtypes:
        return f"{ctx.profile.name} does not run int16 activations"
    nodes = [r["node"] for r in ctx.worst() if _widens(ctx, ctx.graph.node(r["node"]))]
    if not nodes:
        return "no int8 layer left to widen"
    chosen = {}  # an int16 output only pays off where its readers read int16 too (else they read an int8 copy)
    for name in nodes[:INT16_LAYERS]:
        chosen[name] = None
        for out in ctx.graph.node(name).outputs:
            chosen.update((r.name, None) for r in ctx.graph.consumers(out) if _widens(ctx, r))
    return {"layers": {n: {"precision": "int16"} for n in chosen}}


def _widens(ctx: StepContext, node) -> bool:
    """``node`` is int8 now and the target runs its op in 16x8."""
    from .precision import int16_refusal

    return (ctx.cfg.layer(node.name, node.op).precision in (None, "int8")
            and int16_refusal(node.op, ctx.profile.runtime) is None)


@ladder_step("float_layer", "the layer that loses most kept in float (phone and host targets only)")
def _float_layer(ctx: StepContext):
    if ctx.profile.kind not in ("phone", "host"):
        return f"float layers only on phone/host targets ({ctx.profile.name} is {ctx.profile.kind})"
    nodes = [r["node"] for r in ctx.worst() if ctx.cfg.layer(r["node"], r["op"]).precision != "float"]
    if not nodes:
        return "no quantized layer left"
    return {"layers": {nodes[0]: {"precision": "float"}}}


@ladder_step("qat", f"fake-quant distillation from float ({QAT_EPOCHS} epochs, --qat-epochs; needs --train)")
def _qat(ctx: StepContext):
    if not ctx.has_train:
        return "needs --train data"
    if ctx.cfg.qat_epochs:
        return f"already on (--qat-epochs {ctx.cfg.qat_epochs})"
    return {"qat_epochs": QAT_EPOCHS}
