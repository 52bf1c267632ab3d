"""Empirical bias correction: fold the mean int8-vs-float error of each conv/FC output channel into its bias.

Rounding int8 weights (and clipping activations) shifts the mean of a layer's output; the shift is a
per-channel constant that the next layers amplify (depthwise convs with few weights per channel are the
usual victims). Walking the graph in topological order on the calibration samples, fake-quantized with
the chosen parameters (upstream corrections already in place), each Conv/Gemm's pre-activation output is
compared with float; the per-channel mean error is subtracted from the float bias. A layer keeps its
correction only when its int8 output (after activation and output quantization) gets closer to float, and
the whole set is kept only when the model output SQNR does not drop (``rewrite_check``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edgepack.input_batch import as_float32
from ..ir import Graph
from .output_error import db_or_none, ratio_to_db
from .quantize import QuantRules, quantize_graph

log = logging.getLogger(__name__)

CORRECTED_OPS = ("Conv", "Gemm")


@dataclass
class BiasCorrection:
    graph: Graph  # the float graph with corrected biases (or the input graph when nothing was kept)
    layers: list[dict] = field(default_factory=list)
    sqnr_without_db: float = float("nan")
    sqnr_with_db: float = float("nan")
    kept: bool = False
    deltas: dict[str, list[float]] = field(default_factory=dict)  # bias tensor -> value subtracted


    def to_json(self) -> dict:
        return {"rule": "per conv/FC layer, the mean int8 error of each output channel on the calibration "
                        "samples is folded into the bias, kept where the layer's int8 output gets closer to "
                        "float and when the model output SQNR does not drop",
                "kept": self.kept, "layers_corrected": sum(1 for r in self.layers if r["kept"]),
                "output_sqnr_db": {"without": db_or_none(self.sqnr_without_db), "with": db_or_none(self.sqnr_with_db)},
                "layers": self.layers}

    @property
    def note(self) -> str:
        if not self.kept:
            return (f"bias correction not kept (model output SQNR {self.sqnr_without_db:.1f} dB without, "
                    f"{self.sqnr_with_db:.1f} dB with)")
        return (f"bias correction on {sum(1 for r in self.layers if r['kept'])} of {len(self.layers)} conv/FC "
                f"layers: model output SQNR {self.sqnr_without_db:.1f} -> {self.sqnr_with_db:.1f} dB")


def correct_biases(graph: Graph, ranges: dict, rules: QuantRules, x: np.ndarray) -> BiasCorrection:
    """Measure and fold per-channel bias corrections for ``graph`` quantized with ``ranges`` on samples ``x``."""
    import torch

    from ..ir.torch_exec import run, to_module
    from .output_error import output_sqnr_db

    x = as_float32(x)
    q = quantize_graph(graph, ranges, rules)
    qmod, fmod = to_module(q, fake_quant=True).eval(), to_module(graph).eval()
    ref = {k: torch.from_numpy(v) for k, v in run(graph, [x], keep="all").items()}
    result = BiasCorrection(graph)
    corrected = graph.copy()
    last_use = {i: idx for idx, n in enumerate(graph.nodes) for i in n.inputs}
    env = {}
    for name in graph.inputs:
        env[name] = _quantized(ref[name], q, name)
    with torch.no_grad():
        for idx, n in enumerate(graph.nodes):
            out = n.outputs[0]
            if _correctable(graph, n):
                record, delta = _correct_one(n, qmod, fmod, env, ref, q)
                result.layers.append(record)
                if record["kept"]:
                    result.deltas[n.inputs[2]] = [float(v) for v in delta]
                    bias = corrected.tensors[n.inputs[2]]
                    bias.data = (np.asarray(bias.data, np.float64) - delta).astype(bias.data.dtype)
            env[out] = _quantized(qmod.node_value(n, env), q, out)
            for i in set(n.inputs):  # keep memory flat: drop values no later node reads
                if last_use.get(i) == idx and i in env:
                    del env[i]
        ref_out = {o: ref[o].numpy() for o in graph.outputs}
        result.sqnr_without_db = output_sqnr_db(ref_out, run(q, [x], fake_quant=True), graph.outputs)
        if any(r["kept"] for r in result.layers):
            q2 = quantize_graph(corrected, ranges, rules)
            result.sqnr_with_db = output_sqnr_db(ref_out, run(q2, [x], fake_quant=True), graph.outputs)
        else:
            result.sqnr_with_db = result.sqnr_without_db
    result.kept = bool(result.sqnr_with_db > result.sqnr_without_db)
    if result.kept:
        result.graph = corrected
    else:
        result.deltas = {}
    log.info(result.note)
    return result


def _correctable(graph: Graph, n) -> bool:
    return (n.op in CORRECTED_OPS and len(n.inputs) > 2 and bool(n.inputs[2])
            and graph.const(n.inputs[1]) is not None and graph.const(n.inputs[2]) is not None)


def _quantized(value, q: Graph, name: str):
    from ..ir.torch_exec import fake_quant_activation

    qp = q.tensors[name].quant if name in q.tensors else None
    return fake_quant_activation(value, qp) if qp is not None and value.is_floating_point() else value


def _channel_mean(err, op: str):
    """Mean over every axis but the output channels (axis 1 for Conv NCHW, the last for Gemm)."""
    axis = 1 if op == "Conv" else err.dim() - 1
    dims = tuple(d for d in range(err.dim()) if d != axis)
    return err.double().mean(dim=dims)


def _correct_one(n, qmod, fmod, env, ref, q):
    """(record, per-channel delta to subtract from the float bias) for one layer; the module's bias is
    updated in place when the correction is kept, so later layers see it."""
    from ..ir.torch_exec import apply_activation

    out = n.outputs[0]
    raw_q = qmod.node_value(n, env, activation=False)
    raw_f = fmod.node_value(n, {i: ref[i] for i in n.inputs if i in ref}, activation=False)
    delta = _channel_mean(raw_q - raw_f, n.op)
    shape = [1] * raw_q.dim()
    shape[1 if n.op == "Conv" else raw_q.dim() - 1] = len(delta)
    before = _quantized(apply_activation(n, raw_q), q, out)
    after = _quantized(apply_activation(n, raw_q - delta.reshape(shape).to(raw_q.dtype)), q, out)
    ref64 = ref[out].double()
    err_before = float(((before.double() - ref64) ** 2).sum())
    err_after = float(((after.double() - ref64) ** 2).sum())
    kept = err_after < err_before
    if kept:
        param = getattr(qmod, qmod.attr_of[n.inputs[2]])
        param.data -= delta.to(param.dtype)
    signal = max(float((ref64 ** 2).sum()), 1e-30)
    record = {"node": n.name, "channels": int(len(delta)), "kept": bool(kept),
              "mean_shift_max": round(float(delta.abs().max()), 6),
              "error_db_before": db_or_none(ratio_to_db(err_before / signal)), "error_db_after": db_or_none(ratio_to_db(err_after / signal))}
    return record, delta.numpy()


def apply_bias_deltas(graph: Graph, deltas: dict[str, list[float]]) -> Graph:
    """A copy of ``graph`` with recorded corrections (calibration.json) subtracted from its biases."""
    g = graph.copy()
    for name, delta in deltas.items():
        t = g.tensors.get(name)
        if t is None or t.data is None or t.data.shape != (len(delta),):
            from ..errors import DataError

            raise DataError(f"calibration file: bias correction for '{name}' does not match this model")
        t.data = (np.asarray(t.data, np.float64) - np.asarray(delta)).astype(t.data.dtype)
    return g
