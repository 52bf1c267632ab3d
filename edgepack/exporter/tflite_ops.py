"""Per-op writers of the TFLite emitter: IR op -> TFLite builtin operators.

``WRITERS`` maps every op of ``ir.OPS`` that can be emitted to a function ``(ctx, node)``;
``NOT_EMITTED`` lists, with the reason, the ops the passes must remove first. Op versions follow
TFLite's op_version.cc for the tensor types written (int8 kernels are version 2-4).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedOpError
from ..ir import OPS, ops_where
from ..ir.quant import QuantParams, params_from_range, quantize_array
from .layout import NHWC, file_transpose_perm, identity, padding_plan, resize_flags, stored_axis
from .tflite_builder import (Activation, BuiltinOp, Options, Padding, TfliteExportError, same_params,
                             tfl)
from .tflite_ops_conv import write_conv_transpose, write_grouped_conv
from .tflite_ops_simple import LOWERED_FIRST, SIMPLE_WRITERS
from .tflite_versions import version  # noqa: F401  (re-exported: emit_tflite imports it from here)

_FUSED = {None: Activation.NONE, "Relu": Activation.RELU, "Relu6": Activation.RELU6}


def _fused(node) -> int:
    act = node.attrs.get("activation")
    if act not in _FUSED:
        raise TfliteExportError(f"node '{node.name}': fused activation '{act}' cannot be written "
                                f"(allowed: Relu, Relu6)")
    return _FUSED[act]


# ---- spatial padding --------------------------------------------------------------------
def _explicit_pad(ctx, node, x_idx, x_name, pads_hw, lowest: bool) -> int:
    """PAD with zeros (the zero-point in int8), or PADV2 with the lowest value for max pooling."""
    n, h, w, c = ctx.b.shape(x_idx)
    (t, b), (l, r) = pads_hw
    out = ctx.temp(f"{node.name}/pad", (n, h + t + b, w + l + r, c), ctx.quant(x_name))
    paddings = ctx.b.add_int32(f"{node.name}/paddings", [[0, 0], [t, b], [l, r], [0, 0]])
    if not lowest:
        ctx.op(BuiltinOp.PAD, [x_idx, paddings], [out], Options.PadOptions, tfl.PadOptionsT())
        return out
    if ctx.int8:
        lowest = np.array([-32768 if ctx.mode == "int16" else -128], ctx.act_dtype)
        value = ctx.b.add_const(f"{node.name}/pad_value", lowest, ctx.act_dtype, ctx.quant(x_name))
    else:
        value = ctx.b.add_const(f"{node.name}/pad_value", np.array([np.finfo(np.float32).min], np.float32))
    ctx.op(BuiltinOp.PADV2, [x_idx, paddings, value], [out], Options.PadV2Options, tfl.PadV2OptionsT())
    return out


def _spatial_input(ctx, node, kernel, mode: str):
    """NHWC input of a conv/pool with its padding; mode: conv | max | avg_include | avg_exclude."""
    x = node.inputs[0]
    xi = ctx.input(x, NHWC)
    strides = tuple(node.attrs.get("strides", (1, 1)))
    dil = tuple(node.attrs.get("dilations", (1, 1)))
    pads = tuple(node.attrs.get("pads", (0, 0, 0, 0)))
    # TFLite's SAME average excludes the padding: only right when ONNX excludes it too
    kind, explicit = padding_plan(ctx.shape(x)[2:], ctx.shape(node.outputs[0])[2:], kernel,
                                  strides, dil, pads, allow_same=mode != "avg_include")
    padding = Padding.SAME if kind == "SAME" else Padding.VALID
    if explicit and mode == "avg_exclude":
        raise TfliteExportError(f"node '{node.name}': AveragePool with pads {list(pads)} that exclude "
                                f"the padding has no exact TFLite equivalent")
    if explicit:
        xi = _explicit_pad(ctx, node, xi, x, explicit, lowest=mode == "max")
    return xi, padding, strides, dil


# ---- writers ----------------------------------------------------------------------------
def write_conv(ctx, node):
    x, w_name = node.inputs[0], node.inputs[1]
    w = ctx.const_weight(node)
    cout, cin_g, kh, kw = w.shape
    cin = ctx.shape(x)[1]
    group = int(node.attrs.get("group", 1))
    depthwise = group > 1 and group == cin and cin_g == 1
    xi, padding, strides, dil = _spatial_input(ctx, node, (kh, kw), "conv")
    if group != 1 and not depthwise:  # one CONV_2D per group between SLICEs and a CONCATENATION
        opts = tfl.Conv2DOptionsT(padding=padding, strideW=strides[1], strideH=strides[0],
                                  fusedActivationFunction=_fused(node), dilationWFactor=dil[1],
                                  dilationHFactor=dil[0])
        write_grouped_conv(ctx, node, np.asarray(w, np.float32), xi, opts)
        return
    perm = (1, 2, 3, 0) if depthwise else (0, 2, 3, 1)  # OIHW -> 1HWO | OHWI
    wi, wq = ctx.weight(w_name, np.asarray(w, np.float32), perm, per_channel=True)
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else f"{node.name}/bias"
    bi = ctx.bias(b_name, ctx.g.const(b_name), cout, x, wq)
    out = ctx.output(node.outputs[0])
    if depthwise:
        opts = tfl.DepthwiseConv2DOptionsT(padding=padding, strideW=strides[1], strideH=strides[0],
                                           depthMultiplier=cout // cin, fusedActivationFunction=_fused(node),
                                           dilationWFactor=dil[1], dilationHFactor=dil[0])
        ctx.op(BuiltinOp.DEPTHWISE_CONV_2D, [xi, wi, bi], [out], Options.DepthwiseConv2DOptions, opts,
               dilated=dil != (1, 1))
    else:
        opts = tfl.Conv2DOptionsT(padding=padding, strideW=strides[1], strideH=strides[0],
                                  fusedActivationFunction=_fused(node), dilationWFactor=dil[1],
                                  dilationHFactor=dil[0])
        ctx.op(BuiltinOp.CONV_2D, [xi, wi, bi], [out], Options.Conv2DOptions, opts)


def write_gemm(ctx, node):
    x, w_name = node.inputs[0], node.inputs[1]
    w = ctx.const_weight(node)
    w = np.asarray(w, np.float32)
    if x in ctx.plan.flattened:  # input is flatten(NHWC): reorder weight columns (C,H,W) -> (H,W,C)
        src_shape, src_perm = ctx.plan.flattened[x]
        w = w.reshape((w.shape[0],) + tuple(src_shape[1:]))
        w = np.ascontiguousarray(w.transpose((0,) + tuple(src_perm[1:]))).reshape(w.shape[0], -1)
    qp = ctx.g.tensors[w_name].quant
    wi, wq = ctx.weight(w_name, w, (0, 1), per_channel=qp is not None and qp.is_per_channel)
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else f"{node.name}/bias"
    bias = ctx.g.const(b_name)
    # no bias, or all zero: FULLY_CONNECTED's bias is optional (-1), one tensor fewer in the arena
    bi = -1 if bias is None or not np.any(bias) else ctx.bias(b_name, bias, w.shape[0], x, wq)
    xi = ctx.input(x, identity(len(ctx.shape(x))))
    out = ctx.output(node.outputs[0])
    opts = tfl.FullyConnectedOptionsT(fusedActivationFunction=_fused(node), keepNumDims=False)
    ctx.op(BuiltinOp.FULLY_CONNECTED, [xi, wi, bi], [out], Options.FullyConnectedOptions, opts)


_BINARY = {"Add": (BuiltinOp.ADD, Options.AddOptions, tfl.AddOptionsT),
           "Sub": (BuiltinOp.SUB, Options.SubOptions, tfl.SubOptionsT),
           "Mul": (BuiltinOp.MUL, Options.MulOptions, tfl.MulOptionsT),
           "Div": (BuiltinOp.DIV, Options.DivOptions, tfl.DivOptionsT)}


def write_binary(ctx, node):
    a, b = node.inputs
    op, b_data = node.op, None
    if op == "Div" and ctx.g.tensors[b].is_const:  # x / c == x * (1/c): runs in int8 too
        op, b_data = "Mul", 1.0 / np.asarray(ctx.g.const(b), np.float32)
    elif op == "Div" and ctx.int8:
        raise TfliteExportError(f"node '{node.name}': int8 DIV of two activations has no TFLite "
                                f"int8 kernel; keep this node in float")
    code, opt_type, opt_cls = _BINARY[op]
    out_name = node.outputs[0]
    ai = ctx.operand(a, out_name)
    bi = ctx.operand(b, out_name, data=b_data)
    out = ctx.output(out_name)
    flags = {}
    if ctx.int8 and op == "Mul":
        sa, sb = ctx.b.tensors[ai].quantization.scale[0], ctx.b.tensors[bi].quantization.scale[0]
        flags["mul_rescale_ge_1"] = sa * sb / ctx.quant(out_name).scale[0] >= 1.0
    ctx.op(code, [ai, bi], [out], opt_type, opt_cls(fusedActivationFunction=_fused(node)), **flags)


def write_concat(ctx, node):
    out_name = node.outputs[0]
    qp = ctx.quant(out_name)
    ins = [ctx.operand(i, out_name, quant=qp) for i in node.inputs if i]
    axis = stored_axis(ctx.perm(out_name), int(node.attrs.get("axis", 1)))
    out = ctx.output(out_name)
    ctx.op(BuiltinOp.CONCATENATION, ins, [out], Options.ConcatenationOptions,
           tfl.ConcatenationOptionsT(axis=axis))


def write_pool(ctx, node):
    kh, kw = node.attrs["kernel_shape"]
    if node.op == "MaxPool":
        code, mode = BuiltinOp.MAX_POOL_2D, "max"
    else:
        code = BuiltinOp.AVERAGE_POOL_2D
        mode = "avg_include" if node.attrs.get("count_include_pad", 0) else "avg_exclude"
    xi, padding, strides, _ = _spatial_input(ctx, node, (kh, kw), mode)
    out = ctx.output(node.outputs[0])
    opts = tfl.Pool2DOptionsT(padding=padding, strideW=strides[1], strideH=strides[0],
                              filterWidth=kw, filterHeight=kh)
    ctx.op(code, [xi], [out], Options.Pool2DOptions, opts)


def write_global_avg_pool(ctx, node):
    # AVERAGE_POOL_2D over the whole map rather than MEAN: its int8 contract (output keeps the
    # input's params) is the IR's rule for GlobalAveragePool, and TFLM and LiteRT share its
    # reference kernel. Measured on 5x5..16x16 maps: bit-exact TFLM vs LiteRT BUILTIN_REF (MEAN
    # with equal params was too; XNNPACK is within 1 LSB of either). The MEAN form (own output scale) is
    # a ReduceMean node, chosen per target and by measured error in calibration/pool_form.py.
    x = node.inputs[0]
    xi = ctx.input(x, NHWC)
    h, w = ctx.shape(x)[2:]
    out = ctx.output(node.outputs[0])
    opts = tfl.Pool2DOptionsT(padding=Padding.VALID, strideW=1, strideH=1, filterWidth=w, filterHeight=h)
    ctx.op(BuiltinOp.AVERAGE_POOL_2D, [xi], [out], Options.Pool2DOptions, opts)


def write_reduce_mean(ctx, node):
    x = node.inputs[0]
    perm = ctx.perm(x)
    axes = sorted(stored_axis(perm, a) for a in node.attrs["axes"])
    xi = ctx.input(x)
    out = ctx.output(node.outputs[0])
    ctx.op(BuiltinOp.MEAN, [xi, ctx.b.add_int32(f"{node.name}/axes", axes)], [out],
           Options.ReducerOptions, tfl.ReducerOptionsT(keepDims=bool(node.attrs.get("keepdims", 1))))


def write_transpose(ctx, node):
    x, out_name = node.inputs[0], node.outputs[0]
    if node.name in ctx.plan.vanished:  # identity on the stored layouts: no operator at all
        ctx.index[out_name] = ctx.index[x]
        return
    q = file_transpose_perm(ctx.perm(x), tuple(node.attrs["perm"]), ctx.perm(out_name))
    xi = ctx.input(x)
    out = ctx.output(out_name)
    ctx.op(BuiltinOp.TRANSPOSE, [xi, ctx.b.add_int32(f"{node.name}/perm", q)], [out],
           Options.TransposeOptions, tfl.TransposeOptionsT())


def write_softmax(ctx, node):
    x, out_name = node.inputs[0], node.outputs[0]
    xi = ctx.input(x, ctx.perm(out_name))  # the plan put the softmax axis last
    out = ctx.output(out_name)
    ctx.op(BuiltinOp.SOFTMAX, [xi], [out], Options.SoftmaxOptions, tfl.SoftmaxOptionsT(beta=1.0))


def write_plain(ctx, node):
    """An op with ``plain_tflite`` in the op table: its one builtin, no options; an operand after the
    first (PRelu's slope) is broadcast in the output's layout."""
    out_name = node.outputs[0]
    ins = [ctx.input(node.inputs[0])] + [ctx.operand(i, out_name) for i in node.inputs[1:]]
    ctx.op(getattr(BuiltinOp, OPS[node.op].tflite[0]), ins, [ctx.output(out_name)], 0, None)


def write_leaky_relu(ctx, node):
    xi = ctx.input(node.inputs[0])
    ctx.op(BuiltinOp.LEAKY_RELU, [xi], [ctx.output(node.outputs[0])], Options.LeakyReluOptions,
           tfl.LeakyReluOptionsT(alpha=float(node.attrs.get("alpha", 0.01))))


def write_clip(ctx, node):
    x, out_name = node.inputs[0], node.outputs[0]
    lo = node.attrs.get("min")
    hi = node.attrs.get("max")
    lo = -math.inf if lo is None else float(lo)
    hi = math.inf if hi is None else float(hi)
    # No RELU_N1_TO_1 for Clip(-1, 1): TFLite Micro has no kernel for it.
    simple = {(0.0, 6.0): BuiltinOp.RELU6, (0.0, math.inf): BuiltinOp.RELU}
    xi = ctx.input(x)
    if (lo, hi) in simple:
        ctx.op(simple[(lo, hi)], [xi], [ctx.output(out_name)])
        return
    # MINIMUM/MAXIMUM keep their input's params in int8; a QUANTIZE then requantizes if needed.
    qx = ctx.quant(x)
    shape = ctx.b.shape(xi)
    steps = [(BuiltinOp.MINIMUM, hi), (BuiltinOp.MAXIMUM, lo)]
    steps = [(c, v) for c, v in steps if math.isfinite(v)]
    if not steps and (not ctx.int8 or same_params(qx, ctx.quant(out_name))):
        ctx.index[out_name] = xi  # an unbounded Clip is the identity
        return
    cur = xi
    for k, (code, value) in enumerate(steps):
        bound = _scalar(ctx, f"{node.name}/{'max' if code == BuiltinOp.MINIMUM else 'min'}", value, qx)
        last = k == len(steps) - 1
        if last and (not ctx.int8 or same_params(qx, ctx.quant(out_name))):
            nxt = ctx.output(out_name)
        else:
            nxt = ctx.temp(f"{node.name}/clip{k}", shape, qx)
        ctx.op(code, [cur, bound], [nxt], Options.MaximumMinimumOptions, tfl.MaximumMinimumOptionsT())
        cur = nxt
    if out_name not in ctx.index:
        ctx.op(BuiltinOp.QUANTIZE, [cur], [ctx.output(out_name)], Options.QuantizeOptions,
               tfl.QuantizeOptionsT())


def _scalar(ctx, name: str, value: float, qp: QuantParams | None) -> int:
    """A one-element constant (float32, or int8 in the given params) for a binary op."""
    if not ctx.int8:
        return ctx.b.add_const(name, np.array([value], np.float32))
    q = np.clip(np.round(value / qp.scale[0]) + qp.zero_point[0], -128, 127).astype(np.int8)
    return ctx.b.add_const(name, q.reshape(1), "int8", qp)


def write_hard_sigmoid(ctx, node):
    """clamp(a*x + b, 0, 1) written as MUL(x, 6a) -> ADD(6b) fused RELU6 -> MUL(1/6): each step is
    an int8 kernel TFLM has, and the intermediate params follow exactly from the input's."""
    x, out_name = node.inputs[0], node.outputs[0]
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    xi = ctx.input(x)
    shape = ctx.b.shape(xi)
    qx = ctx.quant(x)
    q1 = q6 = None
    if ctx.int8:
        q1 = QuantParams.per_tensor(qx.scale[0] * abs(6 * alpha),
                                    qx.zero_point[0] if alpha >= 0 else min(-qx.zero_point[0], 127))
        q6 = params_from_range(0.0, 6.0)
    t1 = ctx.temp(f"{node.name}/scaled", shape, q1)
    t2 = ctx.temp(f"{node.name}/relu6", shape, q6)
    ctx.op(BuiltinOp.MUL, [xi, _weight_scalar(ctx, f"{node.name}/6alpha", 6 * alpha)], [t1],
           Options.MulOptions, tfl.MulOptionsT())
    ctx.op(BuiltinOp.ADD, [t1, _weight_scalar(ctx, f"{node.name}/6beta", 6 * beta)], [t2],
           Options.AddOptions, tfl.AddOptionsT(fusedActivationFunction=Activation.RELU6))
    ctx.op(BuiltinOp.MUL, [t2, _weight_scalar(ctx, f"{node.name}/one_sixth", 1.0 / 6.0)],
           [ctx.output(out_name)], Options.MulOptions, tfl.MulOptionsT())


def _weight_scalar(ctx, name: str, value: float) -> int:
    """A one-element constant quantized symmetrically (q = +-127 represents ``value`` exactly)."""
    if not ctx.int8:
        return ctx.b.add_const(name, np.array([value], np.float32))
    qp = QuantParams.per_tensor(max(abs(value), 1e-12) / 127.0, 0)
    return ctx.b.add_const(name, np.array([127 if value >= 0 else -127], np.int8), "int8", qp)


def write_pad(ctx, node):
    x, out_name = node.inputs[0], node.outputs[0]
    mode = node.attrs.get("mode", "constant")
    pads, perm = list(node.attrs["pads"]), ctx.perm(x)
    r = len(perm)
    paddings = ctx.b.add_int32(f"{node.name}/paddings", [[pads[p], pads[p + r]] for p in perm])
    xi = ctx.input(x)
    value = float(node.attrs.get("value", 0.0) or 0.0)
    if mode == "constant" and value == 0.0:
        ctx.op(BuiltinOp.PAD, [xi, paddings], [ctx.output(out_name)], Options.PadOptions, tfl.PadOptionsT())
    elif mode == "constant":
        v = _scalar(ctx, f"{node.name}/value", value, ctx.quant(x))
        ctx.op(BuiltinOp.PADV2, [xi, paddings, v], [ctx.output(out_name)], Options.PadV2Options,
               tfl.PadV2OptionsT())
    elif mode == "reflect":
        ctx.op(BuiltinOp.MIRROR_PAD, [xi, paddings], [ctx.output(out_name)], Options.MirrorPadOptions,
               tfl.MirrorPadOptionsT(mode=tfl.MirrorPadMode.REFLECT))
    else:
        raise UnsupportedOpError(f"Pad(mode={mode})", node.name, ["constant", "reflect"],
                                 where="TFLite export")


def write_resize(ctx, node):
    x, out_name = node.inputs[0], node.outputs[0]
    align, half = resize_flags(node, ctx.shape(x)[2:], ctx.shape(out_name)[2:])
    xi = ctx.input(x, NHWC)
    size = ctx.b.add_int32(f"{node.name}/size", list(ctx.shape(out_name)[2:]))
    if node.attrs.get("mode", "nearest") == "nearest":
        code, ot = BuiltinOp.RESIZE_NEAREST_NEIGHBOR, Options.ResizeNearestNeighborOptions
        opts = tfl.ResizeNearestNeighborOptionsT(alignCorners=align, halfPixelCenters=half)
    else:
        code, ot = BuiltinOp.RESIZE_BILINEAR, Options.ResizeBilinearOptions
        opts = tfl.ResizeBilinearOptionsT(alignCorners=align, halfPixelCenters=half)
    ctx.op(code, [xi, size], [ctx.output(out_name)], ot, opts, half_pixel=half, align_corners=align)


def write_matmul(ctx, node):
    """BATCH_MATMUL; an operand stored with its last two axes swapped uses adj_x/adj_y instead
    of a TRANSPOSE (e.g. ``q @ k.T`` after a vanished Transpose)."""
    ins, adj = [], []
    for name in node.inputs:
        t = ctx.g.tensors[name]
        rank = len(t.shape)
        swapped = identity(rank)[:-2] + (rank - 1, rank - 2)
        adj.append(not t.is_const and rank >= 2 and ctx.perm(name) == swapped)
        if not t.is_const:
            ins.append(ctx.input(name, swapped if adj[-1] else identity(rank)))
        elif ctx.int8:
            data = np.asarray(t.data, np.float32)
            qp = ctx.const_quant(name, data)
            ins.append(ctx.b.add_const(name, quantize_array(data, qp), "int8", qp))
        else:
            ins.append(ctx.b.add_const(name, np.asarray(t.data, np.float32), "float32"))
    ctx.op(BuiltinOp.BATCH_MATMUL, ins, [ctx.output(node.outputs[0])], Options.BatchMatMulOptions,
           tfl.BatchMatMulOptionsT(adjX=adj[0], adjY=adj[1]))


NOT_EMITTED = {
    "BatchNormalization": "fold it into the preceding Conv/Gemm first (passes.fold_bn)",
    "Identity": "a no-op: the cleanup pass removes it before emission",
    "Dropout": "a no-op at inference: the cleanup pass removes it before emission",
    **LOWERED_FIRST,
}

WRITERS = {
    "Conv": write_conv, "Gemm": write_gemm, "MatMul": write_matmul,
    "Add": write_binary, "Sub": write_binary, "Mul": write_binary, "Div": write_binary,
    "Concat": write_concat, "MaxPool": write_pool, "AveragePool": write_pool,
    "GlobalAveragePool": write_global_avg_pool, "ReduceMean": write_reduce_mean,
    **{op: write_plain for op in ops_where(plain_tflite=True)},  # Relu, Sigmoid, Tanh, HardSwish, ...
    "Clip": write_clip, "LeakyRelu": write_leaky_relu, "HardSigmoid": write_hard_sigmoid,
    "Softmax": write_softmax, "Transpose": write_transpose,
    "Pad": write_pad, "Resize": write_resize,
    "ConvTranspose": write_conv_transpose,
    **SIMPLE_WRITERS,  # Reshape, Gelu, Rsqrt, Slice, Pow, Neg, Min/Max: tflite_ops_simple.py
}
