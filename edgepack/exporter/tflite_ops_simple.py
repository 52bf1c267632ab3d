"""TFLite writers of the ops that map one IR op to one builtin with no weights (merged into
``tflite_ops.WRITERS``): Reshape -> RESHAPE (none before a FULLY_CONNECTED, which flattens its
input itself), Gelu -> GELU (LiteRT has int8 and float kernels; TFLite Micro has none), Rsqrt ->
RSQRT (from the LayerNormalization lowering), Slice -> SLICE in the stored layout, Pow, Neg, Min/Max.
LayerNormalization itself has no TFLite builtin: the pass ``passes.layernorm`` lowers it first.
"""
from __future__ import annotations

import numpy as np

from .layout import stored_shape
from .tflite_builder import BuiltinOp, Options, same_params, tfl


def write_reshape(ctx, node):
    x, out_name = node.inputs[0], node.outputs[0]
    if _flattened_by_fc(ctx, node):  # FULLY_CONNECTED flattens its input itself: no RESHAPE, no tensor
        ctx.index[out_name] = ctx.index[x]
        return
    xi = ctx.input(x, ctx.plan.reshape_input.get(node.name))  # the layout whose bytes the output keeps
    target = stored_shape(ctx.shape(out_name), ctx.perm(out_name))
    out = ctx.output(out_name)
    ctx.op(BuiltinOp.RESHAPE, [xi, ctx.b.add_int32(f"{node.name}/shape", target)], [out],
           Options.ReshapeOptions, tfl.ReshapeOptionsT(newShape=list(target)))


def _flattened_by_fc(ctx, node) -> bool:
    """A Reshape to (N, K) of a pooled (N, C, 1, 1) read only as FULLY_CONNECTED inputs (as TFLiteConverter
    writes a Dense after a global pool)."""
    x, out_name = node.inputs[0], node.outputs[0]
    shape, out_shape = ctx.shape(x), ctx.shape(out_name)
    readers = ctx.g.consumers(out_name)
    if (out_name in ctx.g.outputs or len(out_shape) != 2 or not shape or out_shape[0] != shape[0]
            or not readers or any(r.op != "Gemm" or r.inputs[0] != out_name or out_name in r.inputs[1:]
                                  for r in readers)):
        return False
    # one axis beside the batch is not 1: every layout stores the same bytes (a Flatten of a feature map
    # keeps its RESHAPE, as TFLiteConverter's files do)
    return (sum(d != 1 for d in shape[1:]) == 1 and x not in ctx.g.inputs
            and (not ctx.int8 or ctx.quant(x) == ctx.quant(out_name)))


def write_gelu(ctx, node):
    xi = ctx.input(node.inputs[0])
    opts = tfl.GeluOptionsT(approximate=node.attrs.get("approximate", "none") == "tanh")
    ctx.op(BuiltinOp.GELU, [xi], [ctx.output(node.outputs[0])], Options.GeluOptions, opts)


def write_rsqrt(ctx, node):
    xi = ctx.input(node.inputs[0])
    ctx.op(BuiltinOp.RSQRT, [xi], [ctx.output(node.outputs[0])])


def write_slice(ctx, node):
    """SLICE in the stored layout of the output (begin and size permuted like the tensor)."""
    x, out_name = node.inputs[0], node.outputs[0]
    perm = ctx.perm(out_name)
    xi = ctx.input(x, perm)
    begin = ctx.b.add_int32(f"{node.name}/begin", [int(node.attrs["starts"][p]) for p in perm])
    size = ctx.b.add_int32(f"{node.name}/size", [int(node.attrs["sizes"][p]) for p in perm])
    ctx.op(BuiltinOp.SLICE, [xi, begin, size], [ctx.output(out_name)], Options.SliceOptions, tfl.SliceOptionsT())


def write_pow(ctx, node):
    """POW with a constant exponent. TFLite has no int8 POW: an int8 file computes it in float between a
    DEQUANTIZE and a QUANTIZE (LiteRT runs it; TFLite Micro has no POW kernel at all)."""
    x, out_name = node.inputs[0], node.outputs[0]
    xi, shape = ctx.input(x), None
    exponent = ctx.b.add_const(f"{node.name}/exponent", np.array([node.attrs["exponent"]], np.float32), "float32")
    if not ctx.int8:
        ctx.op(BuiltinOp.POW, [xi, exponent], [ctx.output(out_name)])
        return
    shape = ctx.b.shape(xi)
    xf = ctx.b.add_tensor(f"{node.name}/float_in", shape, "float32", None)
    yf = ctx.b.add_tensor(f"{node.name}/float_out", shape, "float32", None)
    ctx.op(BuiltinOp.DEQUANTIZE, [xi], [xf], Options.DequantizeOptions, tfl.DequantizeOptionsT())
    ctx.op(BuiltinOp.POW, [xf, exponent], [yf])
    ctx.op(BuiltinOp.QUANTIZE, [yf], [ctx.output(out_name)], Options.QuantizeOptions, tfl.QuantizeOptionsT())


def write_neg(ctx, node):
    """NEG in float. LiteRT's int8 NEG negates stored values whatever the params (wrong unless the output
    zero-point is minus the input's) and TFLite Micro has none: int8 writes SUB(0, x) instead."""
    x, out_name = node.inputs[0], node.outputs[0]
    xi = ctx.input(x)
    if not ctx.int8:
        ctx.op(BuiltinOp.NEG, [xi], [ctx.output(out_name)])
        return
    qout = ctx.quant(out_name)
    zero = ctx.b.add_const(f"{node.name}/zero", np.array([qout.zero_point[0]], np.int8), "int8", qout)
    ctx.op(BuiltinOp.SUB, [zero, xi], [ctx.output(out_name)], Options.SubOptions, tfl.SubOptionsT())


def write_min_max(ctx, node):
    """MAXIMUM / MINIMUM compare stored values, so in int8 both operands are first brought to the output's
    params (a QUANTIZE for an activation whose params differ; a constant is quantized in them)."""
    out_name = node.outputs[0]
    qout = ctx.quant(out_name)
    ins = []
    for k, name in enumerate(node.inputs):
        idx = ctx.operand(name, out_name, quant=qout)
        if ctx.int8 and not ctx.g.tensors[name].is_const and not same_params(ctx.quant(name), qout):
            moved = ctx.temp(f"{node.name}/operand{k}", ctx.b.shape(idx), qout)
            ctx.op(BuiltinOp.QUANTIZE, [idx], [moved], Options.QuantizeOptions, tfl.QuantizeOptionsT())
            idx = moved
        ins.append(idx)
    code = BuiltinOp.MAXIMUM if node.op == "Max" else BuiltinOp.MINIMUM
    ctx.op(code, ins, [ctx.output(out_name)], Options.MaximumMinimumOptions, tfl.MaximumMinimumOptionsT())


SIMPLE_WRITERS = {"Reshape": write_reshape, "Gelu": write_gelu, "Rsqrt": write_rsqrt,
                  "Slice": write_slice, "Pow": write_pow, "Neg": write_neg, "Max": write_min_max, "Min": write_min_max}
LOWERED_FIRST = {
    "LayerNormalization": "no TFLite builtin: passes.decompose_layernorm lowers it to "
                          "MEAN/SUB/MUL/ADD/RSQRT first",
}
