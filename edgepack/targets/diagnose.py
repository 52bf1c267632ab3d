"""Why one layer of an int8 .tflite loses accuracy, from the file and the data, and the fix to apply.

Causes looked for, each measured rather than guessed:
- fixed output scale (SOFTMAX, LOGISTIC, TANH): TFLite fixes these params; nothing to calibrate;
- clipping: share of the float values (and of their energy) outside the int8 range the observer chose;
- dead channels: output channels whose |w| range is below ir.quant.DEGENERATE_CHANNEL of the largest;
- int32 bias near saturation (|q| > 2^30): the weight scale is too small for the bias;
- per-tensor weights whose channels differ widely (largest / smallest channel range > SPREAD_RATIO).
Works on any .tflite (edgepack's or another tool's): weights and biases are read from the file.
"""
from __future__ import annotations

import numpy as np

from ..ir import ops_where, tflite_builtins
from ..ir.quant import BIAS_LIMIT, live_channels

FIXED_SCALE_OPS = tflite_builtins(*ops_where(quant="fixed"))  # SOFTMAX, LOGISTIC, TANH
WEIGHTED_OPS = tflite_builtins(*ops_where(kind="layer"))  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ...
CLIP_ENERGY = 0.01  # clipped values carrying >= 1% of the tensor's energy hurt visibly
SPREAD_RATIO = 100.0


def clipping(ref: np.ndarray, scale: float, zero_point: int) -> dict:
    """Share of float values outside the int8 range [s*(-128-z), s*(127-z)] and of their energy."""
    lo, hi = scale * (-128 - zero_point), scale * (127 - zero_point)
    ref = np.asarray(ref, np.float64).ravel()
    out = (ref < lo - scale / 2) | (ref > hi + scale / 2)
    energy = float(np.sum(ref * ref))
    cut = np.where(ref > hi, ref - hi, np.where(ref < lo, ref - lo, 0.0))
    return {"clipped_fraction": float(np.mean(out)) if ref.size else 0.0,
            "clipped_energy": float(np.sum(cut * cut) / energy) if energy > 0 else 0.0}


def const_arrays(data: bytes) -> dict[int, np.ndarray]:
    """Tensor index -> stored values of every int8/int32 constant (weights and biases) of the file."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    sub, out = model.Subgraphs(0), {}
    for k in range(sub.TensorsLength()):
        t = sub.Tensors(k)
        dtype = {schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32}.get(t.Type())
        buf = model.Buffers(t.Buffer())
        if dtype is not None and buf.DataLength():
            out[k] = buf.DataAsNumpy().view(dtype).reshape(t.ShapeAsNumpy())
    return out


def diagnose(row: dict, producer, info, consts: dict[int, np.ndarray]) -> list[dict]:
    """Causes of one per-layer row (with its clipping figures); each {cause, detail, fix}."""
    causes = []
    if row["op"] in FIXED_SCALE_OPS:
        causes.append({"cause": "fixed output scale",
                       "detail": f"{row['op']}'s int8 output params are fixed by TFLite (scale 1/256 or 1/128)",
                       "fix": "nothing to calibrate here: its error comes from its input, see the layer before"})
        return causes
    if row.get("clipped_energy", 0.0) >= CLIP_ENERGY:
        causes.append({"cause": "clipping",
                       "detail": f"{row['clipped_fraction']:.2%} of the values, {row['clipped_energy']:.1%} of "
                                 "the signal energy, lie outside the int8 range",
                       "fix": "--calibration minmax (keeps the whole range) or --percentile 99.999"})
    if producer is not None and producer.op in WEIGHTED_OPS and len(producer.inputs) > 1:
        causes += _weight_causes(producer, info, consts)
    if not causes:
        causes.append({"cause": "rounding of a wide range",
                       "detail": "no clipping, dead channel or bias problem found: the range is wide for 8 bits",
                       "fix": "--calibration percentile or mse (trade a little clipping for a finer step)"})
    return causes


def _weight_causes(op, info, consts) -> list[dict]:
    causes = []
    w_t = info.tensors[op.inputs[1]]
    w = consts.get(op.inputs[1])
    if w is None:
        return causes
    scales = np.asarray(w_t.scale, np.float64)
    axis = w_t.quantized_dimension if scales.size > 1 else (3 if op.op == "DEPTHWISE_CONV_2D" else 0)
    moved = np.moveaxis(w.astype(np.float64), axis, 0).reshape(w.shape[axis], -1)
    ranges = np.abs(moved).max(axis=1) * (scales if scales.size > 1 else scales[0])
    dead = int(np.sum(~live_channels(ranges)))
    live = ranges[live_channels(ranges)]
    if scales.size > 1 and dead:  # with their own scales, all-zero channels were (almost) zero in float
        causes.append({"cause": "dead channels", "detail": f"{dead} of {ranges.size} output channels have "
                       "(almost) zero weights: their output is the bias alone",
                       "fix": "harmless when their bias fits int32 (edgepack floors their weight scale); "
                              "prune them (--prune) to save the work"})
    elif scales.size == 1 and (dead or (live.size > 1 and live.max() > SPREAD_RATIO * live.min())):
        zeros = f"; {dead} of {ranges.size} channels quantize to all-zero weights" if dead else ""
        causes.append({"cause": "per-tensor weights, channels differ widely",
                       "detail": f"channel weight ranges span {live.max() / live.min():.0f}x under one "
                                 f"scale{zeros}",
                       "fix": "per-channel weights for this layer (edgepack picks them for Gemm where they "
                              "help), or try export --equalize"})
    if len(op.inputs) > 2 and op.inputs[2] >= 0 and op.inputs[2] in consts:
        q = np.abs(consts[op.inputs[2]].astype(np.int64))
        if q.size and q.max() > BIAS_LIMIT:
            causes.append({"cause": "int32 bias near saturation",
                           "detail": f"{int(np.sum(q > BIAS_LIMIT))} bias entries above 2^30 (max {q.max():,})",
                           "fix": "re-export with edgepack (it floors the weight scale so every bias fits)"})
    return causes


# ---- TFLM against LiteRT's reference: FULLY_CONNECTED's double rounding, carried along a chain -------------
FC_ROUNDING = "accumulated FC rounding at TFLM"


def fc_chain(info) -> list:
    """The FULLY_CONNECTED ops on the path from the (first) output back to the input, output first (each
    op followed through its data input)."""
    producers = {o: op for op in info.ops for o in op.outputs}
    chain, op, seen = [], producers.get(info.outputs[0]) if info.outputs else None, set()
    while op is not None and id(op) not in seen:
        seen.add(id(op))
        if op.op == "FULLY_CONNECTED":
            chain.append(op)
        op = producers.get(op.inputs[0]) if op.inputs else None
    return chain


def fc_rounding(info, max_lsb: int, identical_fraction: float, sqnr: dict | None = None) -> dict | None:
    """The cause when TFLM and LiteRT's reference differ by more than the 1 LSB one FULLY_CONNECTED can
    make, after a chain of them: TFLM requantizes with two roundings (high multiply, rounding shift), the
    reference with one; each layer adds up to 1 LSB and the next layers' weights carry it on. The fix
    names the chain's per-tensor layers as paste-able settings (per-channel weights leave fewer values on
    a rounding edge: on a 10-Dense autoencoder the share of differing outputs fell from 16% to 10%)."""
    chain = fc_chain(info)
    if len(chain) < 2 or max_lsb < 2:
        return None
    names = [info.tensors[op.outputs[0]].name for op in reversed(chain)]
    per_tensor = [info.tensors[op.outputs[0]].name for op in reversed(chain)
                  if len(info.tensors[op.inputs[1]].scale) <= 1]
    judged = ""
    if sqnr and None not in (sqnr.get("tflm"), sqnr.get("reference")):
        judged = (f"; against float TFLM gives {sqnr['tflm']:.1f} dB, the reference {sqnr['reference']:.1f} dB: "
                  "the difference is the runtime's arithmetic, not calibration")
    detail = (f"TFLM and LiteRT's reference differ by up to {max_lsb} LSB at the output "
              f"({1 - identical_fraction:.2%} of the values) after a chain of {len(chain)} FULLY_CONNECTED "
              f"layers: TFLM rounds each one's requantization twice, the reference once, up to 1 LSB per layer, "
              f"carried on by the next layers{judged}")
    if per_tensor:
        settings = "\n".join(f'[layers."{n}"]\nper_channel = true' for n in per_tensor)
        fix = (f"per-channel weights on the chain's {len(per_tensor)} per-tensor FC layer(s) (fewer values on a "
               f"rounding edge): " + " ".join(f'[layers."{n}"] per_channel = true' for n in per_tensor)
               + " in the config file, or " + " ".join(f"--layer {n}:per_channel=true" for n in per_tensor))
    else:
        settings = ""
        fix = ("none edgepack can apply yet: every FC of the chain already has per-channel weights (int16 "
               'layers, precision = "int16", are planned); judge the file by TFLM\'s own SQNR against float')
    return {"cause": FC_ROUNDING, "detail": detail, "fix": fix, "settings": settings, "fc_layers": names,
            "per_tensor_fc_layers": per_tensor}
