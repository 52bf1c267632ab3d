"""Ranges + the TFLite int8 rules -> QuantParams on every tensor of the graph.

- activations: int8 asymmetric per-tensor, range widened to contain 0;
- ops whose output must reuse the input's params (ir.OPS quant="same_as_input": reshape, pooling, pad,
  concat, transpose, resize) put their input(s) and output in one group sharing one range (the union);
- ops with fixed params (softmax, sigmoid: 1/256, -128; tanh: 1/128, 0) impose them on their group;
- weights: int8 symmetric per output channel for Conv (IR axis 0) and ConvTranspose (IR axis 1),
  for Gemm per-tensor, or per-channel on the nodes ``QuantRules.per_channel_nodes`` names (fc_weights.py
  picks them from data: TFLM spends persistent arena on per-channel FC);
- bias: int32, scale = input scale x weight scale (per channel), zero-point 0; a weight scale is raised
  where the bias would not fit int32 otherwise (``weight_params``);
- other constants (operands of Add/Mul/...): int8 asymmetric per-tensor from their own values.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError
from ..ir import OPS, Graph, QuantParams
from ..ir.quant import bias_safe_weight_scales, params_from_range, symmetric_weight_params
from .scale_check import check_ranges, check_scales

log = logging.getLogger(__name__)


# Ops with a weight input (position 1) and a bias (position 2) -> the IR axis of the weight's output
# channels (per-channel scales): Conv (Cout, Cin/g, kh, kw), ConvTranspose (Cin, Cout/g, kh, kw), Gemm.
WEIGHT_AXIS = {op: s.weight_axis for op, s in OPS.items() if s.weight_axis is not None}


@dataclass(frozen=True)
class QuantRules:
    per_channel_conv: bool = True
    per_channel_gemm: bool = False
    per_channel_nodes: frozenset[str] = frozenset()  # Gemm nodes with per-channel weights (fc_weights.py)
    per_tensor_nodes: frozenset[str] = frozenset()  # Conv nodes kept per-tensor (a per-layer setting)


class _Groups:
    """Union-find over tensor names that must share quantization parameters."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def shared_groups(graph: Graph) -> _Groups:
    groups = _Groups()
    for name in graph.activations():
        groups.find(name)
    for node in graph.nodes:
        if OPS[node.op].quant == "same_as_input":
            for i in node.inputs:
                if i and not graph.tensors[i].is_const:
                    groups.union(i, node.outputs[0])
    return groups


def activation_params(graph: Graph, ranges: dict[str, tuple[float, float]]) -> dict[str, QuantParams]:
    """QuantParams of every activation tensor, honouring shared and fixed parameters."""
    groups = shared_groups(graph)
    fixed: dict[str, QuantParams] = {}
    for node in graph.nodes:
        spec = OPS[node.op]
        if spec.quant == "fixed":
            root = groups.find(node.outputs[0])
            fixed.setdefault(root, QuantParams.per_tensor(spec.fixed[0], spec.fixed[1]))
    union: dict[str, tuple[float, float]] = {}
    for name in graph.activations():
        if name not in ranges:
            raise DataError(f"calibration has no range for tensor '{name}' "
                            "(the calibration file does not match this model)")
        lo, hi = ranges[name]
        root = groups.find(name)
        plo, phi = union.get(root, (lo, hi))
        union[root] = (min(plo, lo), max(phi, hi))
    params = {}
    for name in graph.activations():
        root = groups.find(name)
        params[name] = fixed.get(root) or params_from_range(*union[root])
    return params


def quantize_graph(graph: Graph, ranges: dict[str, tuple[float, float]],
                   rules: QuantRules = QuantRules()) -> Graph:
    """Return a copy of ``graph`` with ``Tensor.quant`` set on every tensor that int8 inference uses."""
    check_ranges({name: ranges[name] for name in graph.activations() if name in ranges})
    g = graph.copy()
    act = activation_params(g, ranges)
    for name, qp in act.items():
        g.tensors[name].quant = qp
    for node in g.nodes:
        weight_pos = OPS[node.op].weights
        for pos, name in enumerate(node.inputs):
            if not name:
                continue
            t = g.tensors[name]
            if not t.is_const or t.quant is not None or not t.dtype.startswith("float"):
                continue
            if node.op in WEIGHT_AXIS and pos == 1:
                per_channel = (rules.per_channel_gemm or node.name in rules.per_channel_nodes
                               if node.op == "Gemm" else rules.per_channel_conv
                               and node.name not in rules.per_tensor_nodes)
                if node.op == "ConvTranspose" and int(node.attrs.get("group", 1)) != 1:
                    per_channel = False  # axis 1 holds Cout/group channels only
                t.quant = weight_params(g, node, per_channel)
            elif node.op in WEIGHT_AXIS and pos == 2:
                t.quant = _bias_params(g, node)
            elif pos not in weight_pos:
                t.quant = params_from_range(float(t.data.min()), float(t.data.max()))
    check_scales(g)
    return g


def weight_params(g: Graph, node, per_channel: bool) -> QuantParams:
    """Symmetric int8 weight params of a Conv/ConvTranspose/Gemm, each scale floored so that the node's
    int32 bias fits (dead channels: weights ~1e-30, bias != 0; see ir.quant.bias_safe_weight_scales)."""
    w = g.tensors[node.inputs[1]].data
    qp = symmetric_weight_params(w, WEIGHT_AXIS[node.op] if per_channel else None)
    if on_int8_grid(w):  # e.g. clustered weights: one layer scale keeps them exact (K values stay K)
        shared = symmetric_weight_params(w, None).scale[0]
        qp = QuantParams.per_channel([shared] * len(qp.scale), qp.axis) if qp.axis is not None else \
            QuantParams.per_tensor(shared, 0)
    bias = g.const(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    in_q = g.tensors[node.inputs[0]].quant
    if bias is None or in_q is None:
        return qp
    scales = bias_safe_weight_scales(qp.scale, bias, in_q.scale[0])
    raised = int(np.sum(scales > np.asarray(qp.scale) * (1 + 1e-6)))
    if raised:
        log.info("node '%s': %d weight scale(s) floored so that the int32 bias fits", node.name, raised)
    if qp.axis is None:
        return QuantParams.per_tensor(float(scales[0]), 0)
    return QuantParams.per_channel(scales, qp.axis)


def on_int8_grid(w: np.ndarray) -> bool:
    """True when every weight is an integer multiple of max|w| / 127 and the layer has at most 255 distinct
    values: int8 with that one scale is lossless (a trained float layer is never on such a grid)."""
    w = np.asarray(w, np.float64)
    amax = float(np.max(np.abs(w))) if w.size else 0.0
    if w.size < 2 or amax == 0.0:
        return False
    q = w.ravel() / (amax / 127.0)
    if np.any(np.abs(q[:256] - np.round(q[:256])) >= 1e-3):  # cheap rejection of ordinary float weights
        return False
    return bool(np.all(np.abs(q - np.round(q)) < 1e-3)) and np.unique(q.round()).size <= 255


def _bias_params(g: Graph, node) -> QuantParams:
    in_scale = g.tensors[node.inputs[0]].quant.scale[0]
    w = g.tensors[node.inputs[1]].quant
    scales = np.asarray(w.scale, np.float64) * in_scale
    if w.axis is None:
        n = g.tensors[node.inputs[2]].shape[0]
        scales = np.full(n, scales[0])
    return QuantParams.per_channel(scales, axis=0, dtype="int32")


# ---- calibration.json ----------------------------------------------------------------------------

def save_calibration(graph: Graph, ranges: dict, method: str, per_channel_nodes=(),
                     methods: dict[str, str] | None = None, bias_deltas: dict | None = None,
                     adaround_flips: dict | None = None) -> str:
    """calibration.json: per activation tensor the method (``methods``: per tensor, e.g. auto's choice),
    observed range, scale and zero-point, the weight layers given per-channel scales and the bias
    corrections (so a reuse of the file gives the same model)."""
    entries = {}
    for name in graph.activations():
        qp = graph.tensors[name].quant
        entries[name] = {"method": (methods or {}).get(name, method), "range": [float(v) for v in ranges[name]],
                         "scale": qp.scale[0] if qp else None, "zero_point": qp.zero_point[0] if qp else None}
    data = {"format": "edgepack-calibration/1", "method": method, "tensors": entries,
            "per_channel_weights": sorted(per_channel_nodes)}
    if bias_deltas:  # per-channel bias corrections, re-applied when the file is reused
        data["bias_correction"] = bias_deltas
    if adaround_flips:  # learned weight roundings (packed masks of weights rounded away from nearest)
        data["adaround"] = adaround_flips
    return json.dumps(data, indent=2, sort_keys=True)


def load_per_channel_nodes(text: str) -> frozenset[str] | None:
    """The weight layers a calibration.json gave per-channel scales (None: the file predates the choice)."""
    names = json.loads(text).get("per_channel_weights")
    return None if names is None else frozenset(str(n) for n in names)


def load_bias_deltas(text: str) -> dict[str, list[float]]:
    """The bias corrections a calibration.json recorded (empty when none)."""
    try:
        return {k: [float(v) for v in vs] for k, vs in json.loads(text).get("bias_correction", {}).items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"calibration file: bias_correction: {exc}") from None


def load_adaround_flips(text: str) -> dict[str, str]:
    """The learned weight roundings a calibration.json recorded (empty when none)."""
    flips = json.loads(text).get("adaround", {})
    if not isinstance(flips, dict) or not all(isinstance(v, str) for v in flips.values()):
        raise ConfigError("calibration file: adaround: expected {weight tensor: packed mask}")
    return {str(k): v for k, v in flips.items()}


def load_calibration(text: str, where: str = "calibration file") -> dict[str, tuple[float, float]]:
    try:
        data = json.loads(text)
        if data.get("format") != "edgepack-calibration/1":
            raise ValueError("not an edgepack calibration file")
        return {k: (float(v["range"][0]), float(v["range"][1])) for k, v in data["tensors"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
