"""One rule per ONNX op: read the node (attributes, constant inputs, static shapes) and emit IR nodes
with exactly the normalised attributes documented in ir/ops.py."""
from __future__ import annotations

import math

import numpy as np
import onnx

from ..ir import OPS, ops_where
from .onnx_builder import Builder, unsupported_variant
from .onnx_lowering import LOWERING_RULES, conv1d, global_average_pool1d, pool1d
from .onnx_recurrent import RECURRENT_RULES


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _input(node, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


def _used(b: Builder, node, i: int) -> bool:
    return i < len(node.output) and node.output[i] != "" and node.output[i] in b.used


# ---- elementwise and activations ---------------------------------------------------------------
def _same(op: str, **defaults):
    """Rule for an op that keeps its name; ``defaults`` are its float attributes."""
    def rule(b: Builder, node, attrs):
        arity = OPS[op].max_inputs
        values = {k: float(attrs.get(k, v)) for k, v in defaults.items()}
        b.emit(op, list(node.input[:arity]), [node.output[0]], values)
    return rule


def _cast(b: Builder, node, attrs):
    if attrs.get("to") != onnx.TensorProto.FLOAT:
        to = onnx.TensorProto.DataType.Name(attrs.get("to", 0)).lower()
        raise unsupported_variant("Cast", b.current, f"cast to {to}; only float32 models are handled")
    b.emit("Identity", [node.input[0]], [node.output[0]])


def _dropout(b: Builder, node, attrs):
    if _used(b, node, 1):
        raise unsupported_variant("Dropout", b.current, "its mask output is used")
    b.emit("Dropout", [node.input[0]], [node.output[0]])


def _clip(b: Builder, node, attrs):
    lo = b.need_const(node, 1, "min") if _input(node, 1) else None
    hi = b.need_const(node, 2, "max") if _input(node, 2) else None
    b.emit("Clip", [node.input[0]], [node.output[0]],
           {"min": -math.inf if lo is None else float(lo), "max": math.inf if hi is None else float(hi)})


def _softmax(b: Builder, node, attrs):
    shape = b.shape(node.input[0])
    axis = attrs.get("axis", 1 if b.opset < 13 else -1) % len(shape)
    if b.opset < 13:
        # Before opset 13 Softmax flattens dims axis.. into one; that equals a per-axis softmax only
        # when at most one of those dims is larger than 1.
        big = [i for i in range(axis, len(shape)) if shape[i] > 1]
        if len(big) > 1:
            raise unsupported_variant("Softmax", b.current,
                                      f"opset {b.opset} softmax over flattened dims {axis}.. of "
                                      f"shape {shape}; only the last axis is allowed "
                                      "(re-export with opset >= 13)")
        axis = big[0] if big else len(shape) - 1
    b.emit("Softmax", [node.input[0]], [node.output[0]], {"axis": axis})


def _batchnorm(b: Builder, node, attrs):
    if attrs.get("training_mode", 0):
        raise unsupported_variant("BatchNormalization", b.current, "training_mode=1")
    if _used(b, node, 1) or _used(b, node, 2):
        raise unsupported_variant("BatchNormalization", b.current, "running mean/var outputs are used")
    for i, what in enumerate(("scale", "bias", "mean", "var"), start=1):
        b.need_const(node, i, what)
    b.emit("BatchNormalization", list(node.input[:5]), [node.output[0]],
           {"epsilon": float(attrs.get("epsilon", 1e-5))})


# ---- convolution and pooling ------------------------------------------------------------------
def _spatial_pads(b: Builder, node, attrs, kernel, strides, dilations) -> list[int]:
    """pads as [top, left, bottom, right], auto_pad resolved against the static input shape."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "NOTSET":
        return [int(p) for p in attrs.get("pads", [0] * (2 * len(kernel)))]
    if auto == "VALID":
        return [0] * (2 * len(kernel))
    begin, end = [], []
    for size, k, s, d in zip(b.shape(node.input[0])[2:], kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return begin + end


def _conv(b: Builder, node, attrs):
    w = b.need_const(node, 1, "weight")
    if w.ndim not in (3, 4):
        raise unsupported_variant("Conv", b.current, f"{w.ndim - 2}-D convolution; only 1-D and 2-D "
                                  "(NCHW) convolution is supported")
    if _input(node, 2):
        b.need_const(node, 2, "bias")
    nd = w.ndim - 2
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    strides = [int(s) for s in attrs.get("strides", [1] * nd)]
    dilations = [int(d) for d in attrs.get("dilations", [1] * nd)]
    pads = _spatial_pads(b, node, attrs, kernel, strides, dilations)
    if nd == 1:
        conv1d(b, node, strides, pads, dilations, int(attrs.get("group", 1)))
        return
    b.emit("Conv", [i for i in node.input[:3] if i], [node.output[0]],
           {"strides": strides, "pads": pads, "dilations": dilations, "group": int(attrs.get("group", 1))})


def _pool(op: str):
    def rule(b: Builder, node, attrs):
        kernel = [int(k) for k in attrs.get("kernel_shape", [])]
        nd = len(kernel)
        if nd not in (1, 2) or b.rank(node.input[0]) != nd + 2:
            raise unsupported_variant(op, b.current, f"{nd}-D pooling; only 1-D and 2-D (NCHW) "
                                      "pooling is supported")
        dilations = [int(d) for d in attrs.get("dilations", [1] * nd)]
        if dilations != [1] * nd:
            raise unsupported_variant(op, b.current, f"dilations {dilations}; only 1")
        if _used(b, node, 1):
            raise unsupported_variant(op, b.current, "its indices output is used")
        strides = [int(s) for s in attrs.get("strides", [1] * nd)]
        pads = _spatial_pads(b, node, attrs, kernel, strides, dilations)
        ceil, include = int(attrs.get("ceil_mode", 0)), int(attrs.get("count_include_pad", 0))
        if nd == 1:
            pool1d(b, op, node, kernel, strides, pads, ceil, include)
            return
        b.emit(op, [node.input[0]], [node.output[0]],
               {"kernel_shape": kernel, "strides": strides, "pads": pads, "ceil_mode": ceil,
                "count_include_pad": include})
    return rule


def _global_average_pool(b: Builder, node, attrs):
    if b.rank(node.input[0]) == 3:
        global_average_pool1d(b, node)
        return
    if b.rank(node.input[0]) != 4:
        raise unsupported_variant("GlobalAveragePool", b.current, "only 3-D (NCT) or 4-D (NCHW) input")
    b.emit("GlobalAveragePool", [node.input[0]], [node.output[0]])


# ---- fully connected ---------------------------------------------------------------------------
def _gemm(b: Builder, node, attrs):
    x, y = node.input[0], node.output[0]
    if b.const(x) is not None:
        raise unsupported_variant("Gemm", b.current, "constant first input; A must be an activation")
    w = b.need_const(node, 1, "B (weights)")
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    w_name = node.input[1]
    if not attrs.get("transB", 0) or alpha != 1.0:
        w = w if attrs.get("transB", 0) else w.T
        w_name = b.new_const(f"{node.input[1]}_gemm", _f32(w * alpha))
    if attrs.get("transA", 0):
        m, k = b.shape(x)
        xt = b.new_tensor(f"{x}_transposed", (k, m))
        b.emit("Transpose", [x], [xt], {"perm": [1, 0]}, suffix="transpose_a")
        x = xt
    c = b.need_const(node, 2, "C (bias)") if _input(node, 2) and beta != 0.0 else None
    n_out = w.shape[0]
    if c is None:
        b.emit("Gemm", [x, w_name], [y])
    elif c.size in (1, n_out) and (c.ndim < 2 or c.shape[0] == 1):
        bias = _f32(np.broadcast_to(c.reshape(-1) * beta, (n_out,)))
        same = beta == 1.0 and c.shape == (n_out,)
        b.emit("Gemm", [x, w_name, node.input[2] if same else b.new_const(f"{node.input[2]}_gemm", bias)],
               [y])
    else:  # a bias that differs per row stays a separate Add
        mid = b.new_tensor(f"{y}_matmul", b.shape(y))
        b.emit("Gemm", [x, w_name], [mid])
        b.emit("Add", [mid, b.new_const(f"{node.input[2]}_gemm", _f32(c * beta))], [y], suffix="bias")


def _matmul(b: Builder, node, attrs):
    a, w_in, y = node.input[0], node.input[1], node.output[0]
    w = b.const(w_in)
    if w is None or w.ndim != 2 or b.const(a) is not None or b.rank(a) < 2:
        b.emit("MatMul", [a, w_in], [y])
        return
    w_name = b.new_const(f"{w_in}_t", _f32(w.T))
    if b.rank(a) == 2:
        b.emit("Gemm", [a, w_name], [y])
        return
    k, n_out = w.shape
    rows = int(np.prod(b.shape(a)[:-1]))
    flat = b.new_tensor(f"{a}_2d", (rows, k))
    out2d = b.new_tensor(f"{y}_2d", (rows, n_out))
    b.emit("Reshape", [a], [flat], {"shape": [rows, k]}, suffix="to_2d")
    b.emit("Gemm", [flat, w_name], [out2d])
    b.emit("Reshape", [out2d], [y], {"shape": list(b.shape(y))}, suffix="from_2d")


# ---- shape ops ---------------------------------------------------------------------------------
def _reshape(b: Builder, node, attrs):
    """Flatten, Squeeze, Unsqueeze and Reshape: the inferred static output shape is the answer."""
    b.emit("Reshape", [node.input[0]], [node.output[0]], {"shape": list(b.shape(node.output[0]))})


def _concat(b: Builder, node, attrs):
    axis = int(attrs["axis"]) % b.rank(node.output[0])
    b.emit("Concat", [i for i in node.input if i], [node.output[0]], {"axis": axis})


def _transpose(b: Builder, node, attrs):
    rank = b.rank(node.input[0])
    perm = [int(p) for p in attrs.get("perm", list(range(rank))[::-1])]
    b.emit("Transpose", [node.input[0]], [node.output[0]], {"perm": perm})


def _pad(b: Builder, node, attrs):
    rank = b.rank(node.input[0])
    pads = [int(p) for p in b.need_const(node, 1, "pads").reshape(-1)]
    if _input(node, 3):  # opset 18: pads given only for some axes
        axes = [int(a) % rank for a in b.need_const(node, 3, "axes").reshape(-1)]
        full = [0] * (2 * rank)
        for j, ax in enumerate(axes):
            full[ax], full[rank + ax] = pads[j], pads[len(axes) + j]
        pads = full
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise unsupported_variant("Pad", b.current, f"mode '{mode}' (allowed: constant, reflect, edge)")
    if any(p < 0 for p in pads):
        raise unsupported_variant("Pad", b.current, f"negative pads {pads} (cropping)")
    value = float(b.need_const(node, 2, "constant_value").reshape(-1)[0]) if _input(node, 2) else 0.0
    b.emit("Pad", [node.input[0]], [node.output[0]], {"pads": pads, "mode": mode, "value": value})


def _resize(b: Builder, node, attrs):
    x, y = node.input[0], node.output[0]
    in_shape, out_shape = b.shape(x), b.shape(y)
    mode = attrs.get("mode", "nearest")
    ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
    problem = None
    if len(in_shape) != 4 or tuple(in_shape[:2]) != tuple(out_shape[:2]):
        problem = f"resizes {in_shape} to {out_shape}; only H and W of an NCHW tensor may change"
    elif mode not in ("nearest", "linear"):
        problem = f"mode '{mode}' (allowed: nearest, linear)"
    elif ctm in ("tf_crop_and_resize", "tf_half_pixel_for_nn"):
        problem = f"coordinate_transformation_mode '{ctm}'"
    elif attrs.get("antialias", 0):
        problem = "antialias=1"
    if problem:
        raise unsupported_variant("Resize", b.current, problem)
    b.emit("Resize", [x], [y], {"mode": mode, "size": [int(out_shape[2]), int(out_shape[3])],
                                "coordinate_transformation_mode": ctm,
                                "nearest_mode": attrs.get("nearest_mode", "round_prefer_floor")})


def _reduce_mean(b: Builder, node, attrs):
    rank = b.rank(node.input[0])
    if _input(node, 1):
        axes = b.need_const(node, 1, "axes").reshape(-1).tolist()
    else:
        axes = list(attrs.get("axes", []))
    if not axes and attrs.get("noop_with_empty_axes", 0):
        b.emit("Identity", [node.input[0]], [node.output[0]])
        return
    axes = sorted({int(a) % rank for a in axes}) if axes else list(range(rank))
    keepdims = int(attrs.get("keepdims", 1))
    if rank == 4 and axes == [2, 3]:
        # A spatial mean is a global average pool: one canonical op, which onnxruntime runs as an
        # int8 kernel (QLinearGlobalAveragePool) where a QDQ ReduceMean stays in float.
        if keepdims:
            b.emit("GlobalAveragePool", [node.input[0]], [node.output[0]])
        else:
            n, c = b.shape(node.input[0])[:2]
            pooled = b.new_tensor(node.output[0] + "/pooled", (n, c, 1, 1))
            b.emit("GlobalAveragePool", [node.input[0]], [pooled])
            b.emit("Reshape", [pooled], [node.output[0]], {"shape": [n, c]}, suffix="squeeze")
        return
    b.emit("ReduceMean", [node.input[0]], [node.output[0]], {"axes": axes, "keepdims": keepdims})


RULES = {
    **{op: _same(op) for op in ops_where(plain_onnx=True)},  # Add, Sub, Mul, Div, Relu, Sigmoid, ...
    "HardSwish": _same("HardSwish"),
    "Rsqrt": _same("Rsqrt"),  # from the Sqrt + Reciprocal pattern
    "LeakyRelu": _same("LeakyRelu", alpha=0.01),
    "HardSigmoid": _same("HardSigmoid", alpha=0.2, beta=0.5),
    "Cast": _cast,
    "Dropout": _dropout,
    "Clip": _clip,
    "Softmax": _softmax,
    "BatchNormalization": _batchnorm,
    "Conv": _conv,
    "MaxPool": _pool("MaxPool"),
    "AveragePool": _pool("AveragePool"),
    "GlobalAveragePool": _global_average_pool,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Flatten": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape, "Reshape": _reshape,
    "Concat": _concat,
    "Transpose": _transpose,
    "Pad": _pad,
    "Resize": _resize,
    "ReduceMean": _reduce_mean,
    **LOWERING_RULES,  # ConvTranspose, LayerNormalization, Gelu
    **RECURRENT_RULES,  # LSTM, GRU: unrolled over the time steps
}
