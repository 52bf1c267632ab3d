"""Quantization-friendliness check: find the graph patterns known to hurt int8, before exporting.

``lint_graph(graph, samples)`` returns Findings, each naming the rule, the node, the tensor, what was
measured and what to do about it. Static rules read only the graph; data rules (``SAMPLE_RULES``) run
the float graph on sample inputs and are skipped, with an info finding saying so, when none are given.
The thresholds are module constants; each comment says why it sits where it does.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..ir import OPS, Graph, Node, ops_where
from ..ir.quant import DEGENERATE_CHANNEL, live_channels
from .lint_stats import TensorStats, as_sample_array, collect_stats

log = logging.getLogger(__name__)

WARN, INFO = "warn", "info"

# max|x| / 99.9th percentile of |x| above this: 99.9% of the values share under 1/8 of the int8 codes,
# i.e. min-max calibration throws away 3 of the 8 bits for the sake of 0.1% of the values.
OUTLIER_RATIO = 8.0
OUTLIER_QUANTILE = 0.999
# Fewer non-zero values than this make a 99.9th percentile meaningless (no value would lie above it).
MIN_VALUES_FOR_PERCENTILE = 1000
# Concat shares one scale across its inputs: a 4x narrower input keeps under 1/4 of the codes (2 bits).
CONCAT_RANGE_RATIO = 4.0
# Per-tensor int8 weights: at a 100x spread the weakest channel gets ~1 of the 127 codes (mostly zeros).
WEIGHT_SPREAD_RATIO = 100.0
# Lint has not measured --equalize on this model; the export checks it and keeps it only if it helps.
EQUALIZE_HINT = ("export --equalize for Conv/Gemm -> ReLU -> Conv/Gemm pairs (edgepack keeps it only if "
                 "the int8 output error on the calibration samples does not grow)")
# A 5x5 window (25 compares per output) is where SPP-style pools start; 3x3 cascades do it exactly.
LARGE_POOL_AREA = 25
# The minima of the swish family: x*sigmoid(x) at x = -1.278, x*relu6(x+3)/6 at x = -1.5.
SILU_MIN = -0.2785
HARDSWISH_MIN = -0.375
PREPROCESS_OPS = ops_where(kind="elementwise")  # Sub, Div, Mul, Add
# Channel-wise ops a Softmax output may pass through on its way out without being computed on.
_TO_OUTPUT_OPS = ops_where(kind=lambda k: k in ("movement", "no_op"))  # Reshape, Transpose, Identity, Dropout

RULES: dict[str, str] = {
    "outlier-range": "activation range dominated by a few outliers (needs samples)",
    "concat-range-mismatch": "Concat inputs with very different ranges share one scale (needs samples)",
    "constant-pad": "constant padding with a non-zero value stretches the padded tensor's range",
    "input-normalisation": "normalisation/preprocessing on the graph input inside the model",
    "large-maxpool": "max pooling with a large window",
    "swish-negative-lobe": "SiLU/HardSwish: the small negative lobe spends int8 codes",
    "weight-channel-spread": "output-channel weight ranges differ by orders of magnitude",
    "softmax-not-output": "Softmax inside the model (fixed 1/256 output scale)",
}
SAMPLE_RULES = ("outlier-range", "concat-range-mismatch")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "warn" | "info"
    node: str | None
    tensor: str | None
    message: str
    suggestion: str
    value: float | None = None  # the measured figure the rule compared with its threshold

    def to_json(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        where = f" [{self.node}]" if self.node else ""
        return f"{self.severity}: {self.rule}{where}: {self.message} -> {self.suggestion}"


def lint_graph(graph: Graph, samples=None, *, per_channel_conv: bool = True,
               per_channel_gemm: bool = False) -> list[Finding]:
    """Findings for ``graph`` (float IR), in graph order. ``samples``: inputs shaped like the graph input
    (N, ...), a calibration SampleSet, or None to run only the static rules. ``per_channel_*`` say how
    Conv/Gemm weights will be quantized (edgepack's defaults: per channel for Conv, per tensor for Gemm)."""
    stats = collect_stats(graph, as_sample_array(graph, samples)) if samples is not None else None
    findings = (_input_normalisation(graph) + _constant_pad(graph, stats) + _large_maxpool(graph)
                + _swish(graph, stats) + _weight_spread(graph, per_channel_conv, per_channel_gemm)
                + _softmax_inside(graph))
    if stats is not None:
        findings += _outlier_range(graph, stats) + _concat_mismatch(graph, stats)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    rule_order = list(RULES)
    findings.sort(key=lambda f: (order.get(f.node, -1), rule_order.index(f.rule)))
    if stats is None:
        log.info("lint: no sample data, skipped %s", ", ".join(SAMPLE_RULES))
        findings.append(Finding("needs-samples", INFO, None, None,
                                f"rules {', '.join(SAMPLE_RULES)} need sample inputs and were skipped",
                                "pass sample inputs (edgepack lint MODEL --calib DATA)"))
    log.info("lint: %d findings (%d warnings)", len(findings), sum(f.severity == WARN for f in findings))
    return findings


# ---- static rules -----------------------------------------------------------------------------------

def _const_operand(graph: Graph, node: Node, tensor: str) -> bool:
    """``node`` combines ``tensor`` with a constant elementwise (or is a BatchNormalization of it)."""
    if node.op == "BatchNormalization":
        return node.inputs[0] == tensor
    if node.op not in PREPROCESS_OPS or tensor not in node.inputs:
        return False
    other = [i for i in node.inputs if i != tensor]
    return len(other) == 1 and graph.tensors[other[0]].is_const


def _input_normalisation(graph: Graph) -> list[Finding]:
    found = []
    for x in graph.inputs:
        for first in graph.consumers(x):
            if not _const_operand(graph, first, x):
                continue
            chain, t = [first], first.outputs[0]
            while t not in graph.outputs:
                nxt = graph.consumers(t)
                if len(nxt) != 1 or not _const_operand(graph, nxt[0], t):
                    break
                chain.append(nxt[0])
                t = nxt[0].outputs[0]
            steps = " -> ".join(f"{n.op} '{n.name}'" for n in chain)
            found.append(Finding(
                "input-normalisation", WARN, first.name, x,
                f"the graph input '{x}' is normalised inside the model ({steps}): the int8 input is "
                "quantized on the raw range and rounded again after each constant op",
                "move the normalisation into data loading (edgepack --mean/--std applies it to the sample "
                "data) and feed normalised inputs, or fold it into the first Conv's weights and bias "
                "(exact when that Conv has no zero padding)", float(len(chain))))
    return found


def _constant_pad(graph: Graph, stats: dict[str, TensorStats] | None) -> list[Finding]:
    found = []
    for n in graph.nodes:
        if n.op != "Pad" or n.attrs.get("mode", "constant") != "constant":
            continue
        value = float(n.attrs.get("value", 0.0))
        if value == 0.0:
            continue
        x = n.inputs[0]
        nxt = graph.consumers(n.outputs[0])
        fold = ("fold the padding into the next MaxPool's pads (pooling pads with -inf inside the kernel at no "
                "range cost)" if [c.op for c in nxt] == ["MaxPool"] else
                "pad with 0 (exact in int8) or fold the padding into the next Conv/pool's pads")
        severity, detail = WARN, ""
        st = stats.get(x) if stats else None
        if st is not None and st.count and math.isfinite(value):
            if st.lo <= value <= st.hi:
                severity, detail = INFO, f"; the value lies inside the observed range [{st.lo:.3g}, {st.hi:.3g}]"
            else:
                grown = (max(st.hi, value, 0.0) - min(st.lo, value, 0.0)) / max(st.span, 1e-12)
                detail = (f"; it widens the observed range [{st.lo:.3g}, {st.hi:.3g}] {grown:.1f}x, so every "
                          f"real value loses {math.log2(max(grown, 1.0)):.1f} bits")
        elif not math.isfinite(value):
            detail = "; int8 has no infinity, the padded cells become the ends of the range"
        found.append(Finding(
            "constant-pad", severity, n.name, x,
            f"Pad '{n.name}' pads with the constant {value:g}; Pad shares its input's int8 scale, so a value "
            f"outside the data range stretches it{detail}", fold, value))
    return found


def _large_maxpool(graph: Graph) -> list[Finding]:
    found = []
    for n in graph.nodes:
        if n.op != "MaxPool":
            continue
        kh, kw = (int(k) for k in n.attrs["kernel_shape"])
        if kh * kw < LARGE_POOL_AREA:
            continue
        strides = [int(s) for s in n.attrs.get("strides", (1, 1))]
        if kh == kw and kh % 2 == 1 and strides == [1, 1]:
            how = (f"replace it by {(kh - 1) // 2} chained 3x3 stride-1 max pools with padding 1 (exactly "
                   "equal, as YOLOv5's SPPF does)")
        else:
            how = "replace it by a cascade of 3x3 max pools (the last one strided) or a strided Conv"
        found.append(Finding(
            "large-maxpool", WARN, n.name, n.outputs[0],
            f"MaxPool '{n.name}' uses a {kh}x{kw} window: its output reuses the input's int8 scale but holds "
            f"only window maxima, which tend to crowd the top of that range and leave the lower codes unused; it "
            f"also costs {kh * kw} compares per output on an MCU", how, float(kh * kw)))
    return found


def _swish_sites(graph: Graph) -> list[tuple[Node, str, float]]:
    """(node producing the swish, its output, theoretical minimum) for HardSwish ops and the
    x * sigmoid(x) / x * hardsigmoid(x) patterns the frontends produce for SiLU and old HardSwish."""
    sites = []
    for n in graph.nodes:
        if n.op == "HardSwish":
            sites.append((n, "HardSwish", HARDSWISH_MIN))
        elif n.op == "Mul" and len(n.inputs) == 2:
            for a, b in (n.inputs, n.inputs[::-1]):
                gate = graph.producer(b)
                if gate is not None and gate.inputs[0] == a and gate.op in ("Sigmoid", "HardSigmoid"):
                    kind = "SiLU (x*sigmoid(x))" if gate.op == "Sigmoid" else "HardSwish (x*hardsigmoid(x))"
                    sites.append((n, kind, SILU_MIN if gate.op == "Sigmoid" else HARDSWISH_MIN))
                    break
    return sites


def _swish(graph: Graph, stats: dict[str, TensorStats] | None) -> list[Finding]:
    found = []
    for n, kind, lowest in _swish_sites(graph):
        y = n.outputs[0]
        st = stats.get(y) if stats else None
        if st is not None and st.count:
            lo, hi = min(st.lo, 0.0), max(st.hi, 0.0)
            codes = 255.0 * -lo / max(hi - lo, 1e-12)
            what = (f"observed range [{lo:.3g}, {hi:.3g}]: the negative lobe takes {codes:.0f} of the 256 "
                    "int8 codes")
            value = codes
        else:
            what = (f"its negative lobe reaches {lowest:g}, so an asymmetric int8 range [{lowest:g}, max] "
                    f"spends 255*{-lowest:g}/(max+{-lowest:g}) codes on it: many when max is small")
            value = lowest
        found.append(Finding(
            "swish-negative-lobe", INFO, n.name, y, f"{kind} at '{n.name}': {what}",
            "harmless when the positive range is wide; if this layer's SQNR is low, calibrate with "
            "--calibration mse, keep the layer at higher precision, or retrain with ReLU6", value))
    return found


def _channel_absmax(w: np.ndarray) -> np.ndarray:
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if w.size else np.zeros(w.shape[0])


def _weight_spread(graph: Graph, per_channel_conv: bool, per_channel_gemm: bool) -> list[Finding]:
    found = []
    for n in graph.nodes:
        if n.op not in ("Conv", "Gemm") or len(n.inputs) < 2:
            continue
        w = graph.const(n.inputs[1])
        if w is None or w.ndim < 2:
            continue
        amax = _channel_absmax(np.asarray(w, np.float64))
        live = np.flatnonzero(live_channels(amax))  # dead channels (|w| ~1e-30) are not a spread
        if live.size < 2:
            continue
        big, small = live[np.argmax(amax[live])], live[np.argmin(amax[live])]
        ratio = float(amax[big] / amax[small])
        if ratio <= WEIGHT_SPREAD_RATIO:
            continue
        dead = (f" ({amax.size - live.size} dead channels, |w| below {DEGENERATE_CHANNEL:g} x the largest, "
                "ignored)" if live.size < amax.size else "")
        text = (f"{n.op} '{n.name}': output-channel weight ranges span {ratio:.0f}x (channel {big} "
                f"|w| <= {amax[big]:.3g}, channel {small} |w| <= {amax[small]:.3g}){dead}")
        per_channel = per_channel_conv if n.op == "Conv" else per_channel_gemm
        if per_channel:
            severity = INFO
            text += ("; per-channel int8 weights absorb this, but these channels' outputs share one "
                     "per-tensor activation scale")
            how = f"try {EQUALIZE_HINT}"
        else:
            severity = WARN
            text += (f"; with per-tensor int8 weights channel {small} keeps only "
                     f"{127.0 * amax[small] / amax[big]:.1f} of 127 codes")
            how = (f"per-channel weights for this layer (export picks them for Gemm where they help), or try "
                   f"{EQUALIZE_HINT}")
        found.append(Finding("weight-channel-spread", severity, n.name, n.inputs[1], text, how, ratio))
    return found


def _reaches_output(graph: Graph, tensor: str) -> bool:
    """``tensor`` is a graph output, or only reshaped/transposed on its way to one."""
    while tensor not in graph.outputs:
        nxt = graph.consumers(tensor)
        if len(nxt) != 1 or nxt[0].op not in _TO_OUTPUT_OPS:
            return False
        tensor = nxt[0].outputs[0]
    return True


def _softmax_inside(graph: Graph) -> list[Finding]:
    return [Finding(
        "softmax-not-output", INFO, n.name, n.outputs[0],
        f"Softmax '{n.name}' feeds further layers: int8 fixes its output scale at 1/256, so probabilities "
        "below 1/512 become 0 and small differences vanish",
        "make Softmax the last op (or apply it outside the model), or keep it and its consumers at higher "
        "precision", None)
        for n in graph.nodes if n.op == "Softmax" and not _reaches_output(graph, n.outputs[0])]


# ---- data rules -------------------------------------------------------------------------------------

def _outlier_range(graph: Graph, stats: dict[str, TensorStats]) -> list[Finding]:
    found = []
    for name in graph.activations():
        producer = graph.producer(name)
        if producer is not None and OPS[producer.op].quant != "calibrated":
            continue  # shares its input's range (reported there) or has fixed parameters
        st = stats.get(name)
        if st is None or st.count - st.zeros < MIN_VALUES_FOR_PERCENTILE:
            continue
        typical = st.abs_quantile(OUTLIER_QUANTILE)
        if not typical or st.absmax / typical <= OUTLIER_RATIO:
            continue
        ratio = st.absmax / typical
        codes = 255.0 * typical / max(st.span, 1e-12)
        where = producer.name if producer is not None else None
        found.append(Finding(
            "outlier-range", WARN, where, name,
            f"tensor '{name}' spans [{st.lo:.3g}, {st.hi:.3g}] but 99.9% of its non-zero values have "
            f"|x| <= {typical:.3g} ({ratio:.0f}x less): with min-max calibration they share about "
            f"{codes:.0f} of the 256 int8 codes",
            "calibrate with --calibration percentile or --calibration mse (clips the rare outliers); if "
            "accuracy still drops, bound the layer in training (e.g. ReLU6/clipping)", ratio))
    return found


def _concat_mismatch(graph: Graph, stats: dict[str, TensorStats]) -> list[Finding]:
    found = []
    for n in graph.nodes:
        if n.op != "Concat":
            continue
        spans = {i: stats[i].span for i in dict.fromkeys(n.inputs)
                 if i and i in stats and stats[i].count and stats[i].span > 0}
        if len(spans) < 2:
            continue
        wide, narrow = max(spans, key=spans.get), min(spans, key=spans.get)
        ratio = spans[wide] / spans[narrow]
        if ratio <= CONCAT_RANGE_RATIO:
            continue
        union = max(max(stats[i].hi for i in spans), 0.0) - min(min(stats[i].lo for i in spans), 0.0)
        codes = 255.0 * spans[narrow] / union
        a, b = stats[wide], stats[narrow]
        found.append(Finding(
            "concat-range-mismatch", WARN, n.name, narrow,
            f"Concat '{n.name}' joins '{wide}' [{a.lo:.3g}, {a.hi:.3g}] and '{narrow}' [{b.lo:.3g}, {b.hi:.3g}] "
            f"({ratio:.1f}x apart): int8 gives the output one scale, so '{narrow}' keeps about {codes:.0f} "
            "of the 256 codes",
            f"bring the branches to similar ranges before the Concat (e.g. a scale or BatchNorm on '{narrow}' "
            "in training), or keep this Concat and its inputs at higher precision", ratio))
    return found
