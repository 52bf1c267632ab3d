"""The latency cost model of latency.py applied to a .tflite file's operators (for `edgepack validate`
of files edgepack did not make, where there is no IR graph). Same kinds, same coefficients."""
from __future__ import annotations

import numpy as np

from .latency import LatencyEstimate, NodeLatency, _grouped
from .profile import TargetProfile
from .tflite_file import TfliteModel, _macs

_ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "RELU", "RELU6", "LEAKY_RELU", "LOGISTIC", "TANH", "HARD_SWISH",
                "MINIMUM", "MAXIMUM", "QUANTIZE", "DEQUANTIZE", "SQUARED_DIFFERENCE", "RSQRT", "EXP", "GELU"}
_POOLING = {"MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "SUM", "REDUCE_MAX"}
_NOT_RUN = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}  # TFLM runs these in place or as a copy-free view


def op_kind(model: TfliteModel, op) -> str | None:
    if op.op in _NOT_RUN:
        return None
    if op.op == "CONV_2D":
        w = model.tensors[op.inputs[1]].shape  # OHWI
        return "pointwise" if tuple(w[1:3]) == (1, 1) else "conv"
    if op.op == "DEPTHWISE_CONV_2D":
        return "depthwise"
    if op.op == "TRANSPOSE_CONV":
        return "conv"
    if op.op in ("FULLY_CONNECTED", "BATCH_MATMUL"):
        return "fully_connected"
    if op.op in _ELEMENTWISE:
        return "elementwise"
    if op.op in _POOLING:
        return "pooling"
    return "other"


def estimate_latency_tflite(model: TfliteModel, profile: TargetProfile) -> LatencyEstimate:
    """Pooling work is taken as the elements of the input (exact for global pools and for windows equal
    to their stride; the pool options are not read)."""
    hz = profile.clock_mhz * 1e6
    rows = []
    for op in model.ops:
        kind = op_kind(model, op)
        if kind is None:
            continue
        outputs = sum(int(np.prod(model.tensors[o].shape)) for o in op.outputs)
        if kind == "pooling":
            work = int(np.prod(model.tensors[op.inputs[0]].shape))
        elif op.op == "TRANSPOSE_CONV":  # every input element meets Cout*kh*kw weights (OHWI)
            w, x = model.tensors[op.inputs[1]].shape, model.tensors[op.inputs[2]].shape
            work = int(np.prod(x)) * int(np.prod(w[:3]))
        elif op.op == "BATCH_MATMUL":
            a, b = model.tensors[op.inputs[0]].shape, model.tensors[op.inputs[1]].shape
            work = outputs * int(a[-1])
        else:
            work = _macs(op, model.tensors)
        cycles = profile.cost[kind].cycles(work, outputs)
        name = model.tensors[op.outputs[0]].name
        rows.append(NodeLatency(name, op.op, kind, int(work), int(outputs), cycles, cycles / hz * 1e3))
    total = sum(r.cycles for r in rows)
    return LatencyEstimate(target=profile.name, clock_mhz=profile.clock_mhz, cost_status=profile.cost_status,
                           total_cycles=total, total_ms=total / hz * 1e3, nodes=tuple(rows),
                           per_op=_grouped(rows, "op"), per_kind=_grouped(rows, "kind"))
