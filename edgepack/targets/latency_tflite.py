"""The latency cost model of latency.py applied to a .tflite file's operators (for `edgepack validate`
of files edgepack did not make, where there is no IR graph). Same kinds, same coefficients."""
from __future__ import annotations

import numpy as np

from ..ir import ops_where, tflite_builtins
from .latency import LatencyEstimate, price
from .profile import TargetProfile
from .tflite_file import TfliteModel, op_macs

# The builtins of the IR ops of each cost kind, plus builtins no IR op writes (other converters' files).
_ELEMENTWISE = tflite_builtins(*ops_where(cost="elementwise")) | {"QUANTIZE", "DEQUANTIZE", "SQUARED_DIFFERENCE",
                                                                   "EXP"}
_POOLING = tflite_builtins(*ops_where(cost="pooling")) | {"SUM", "REDUCE_MAX"}
_FULLY_CONNECTED = tflite_builtins(*ops_where(cost="fully_connected"))
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
    if op.op in _FULLY_CONNECTED:
        return "fully_connected"
    if op.op in _ELEMENTWISE:
        return "elementwise"
    if op.op in _POOLING:
        return "pooling"
    return "other"


def estimate_latency_tflite(model: TfliteModel, profile: TargetProfile) -> LatencyEstimate:
    """Pooling work is taken as the elements of the input (exact for global pools and for windows equal
    to their stride; the pool options are not read)."""
    work = []
    for op in model.ops:
        kind = op_kind(model, op)
        if kind is None:
            continue
        outputs = sum(int(np.prod(model.tensors[o].shape)) for o in op.outputs)
        macs = int(np.prod(model.tensors[op.inputs[0]].shape)) if kind == "pooling" else op_macs(op, model.tensors)
        work.append((model.tensors[op.outputs[0]].name, op.op, kind, macs, outputs))
    return price(work, profile)
