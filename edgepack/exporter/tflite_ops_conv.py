"""TFLite writers of the convolutions that need more than one CONV_2D row (merged into ``tflite_ops.WRITERS``):

- ConvTranspose -> TRANSPOSE_CONV (inputs: output shape, OHWI weights, input, bias), weights per output
  channel (IR axis 1 of (Cin, Cout, kh, kw), file axis 0), int32 bias at input scale x weight scale;
  a crop TFLite's SAME/VALID cannot express adds a SLICE of the full output;
- a grouped Conv (group neither 1 nor depthwise) -> one SLICE of the input channels, one CONV_2D per group
  and one CONCATENATION. TFLite's own grouped CONV_2D (filter depth = input depth / groups) runs on
  LiteRT and on TFLM's reference kernel, but TFLM's CMSIS-NN CONV_2D takes the filter depth to be the
  input depth (MatchingDim(input, 3, filter, 3)), so on a Cortex-M build it would be wrong or refused;
  the split form runs on every kernel set.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOpError
from ..ir.quant import QuantParams, quantize_array, symmetric_weight_params
from .layout import NHWC
from .tflite_builder import BuiltinOp, Options, Padding, tfl


OHWI_FROM_IOHW = (1, 2, 3, 0)  # IR ConvTranspose weights (Cin, Cout, kh, kw) -> TFLite (Cout, kh, kw, Cin)


def _transpose_conv_crop(in_size: int, out_size: int, kernel: int, stride: int, same: bool) -> int | None:
    """Rows/columns TFLite's TRANSPOSE_CONV crops at the start of its full output with SAME/VALID
    padding: the padding of the forward conv from the *output* size (ComputePaddingHeightWidth). None when
    that forward conv does not give back the input size (LiteRT refuses such a TRANSPOSE_CONV)."""
    conv_out = -(-out_size // stride) if same else (out_size - kernel + stride) // stride
    if conv_out != in_size:
        return None
    return max((conv_out - 1) * stride + kernel - out_size, 0) // 2 if same else 0


def write_conv_transpose(ctx, node):
    x, w_name = node.inputs[0], node.inputs[1]
    w = ctx.const_weight(node)
    _, cout, kh, kw = w.shape
    group, dil = int(node.attrs.get("group", 1)), tuple(node.attrs.get("dilations", (1, 1)))
    if group != 1 or dil != (1, 1):
        raise UnsupportedOpError(f"ConvTranspose(group={group}, dilations={list(dil)})", node.name,
                                 ["ConvTranspose(group=1, dilations=[1, 1])"], where="TFLite export")
    out_name = node.outputs[0]
    out_hw, strides = ctx.shape(out_name)[2:], tuple(node.attrs.get("strides", (1, 1)))
    t, l = (int(p) for p in node.attrs.get("pads", (0, 0, 0, 0))[:2])
    in_hw, padding, crop = ctx.shape(x)[2:], None, None
    for kind, same in ((Padding.VALID, False), (Padding.SAME, True)):
        if [_transpose_conv_crop(i, o, k, s, same)
                for i, o, k, s in zip(in_hw, out_hw, (kh, kw), strides)] == [t, l]:
            padding = kind
            break
    if padding is None:
        # Crops SAME/VALID cannot express (e.g. PyTorch's k=3 s=2 p=1 output_padding=1): the full output
        # (VALID), then a SLICE of the IR's window. Cells past the full output get only the bias, as
        # ONNX's output_padding cells do.
        extra = [int(p) for p in node.attrs.get("output_padding", (0, 0))]
        if any(e >= s for e, s in zip(extra, strides)):
            raise UnsupportedOpError(f"ConvTranspose(output_padding={extra})", node.name,
                                     ["output_padding smaller than the stride"], where="TFLite export")
        full = [(i - 1) * s + k + e for i, s, k, e in zip(in_hw, strides, (kh, kw), extra)]
        padding, crop = Padding.VALID, (full, (t, l))
    qp = ctx.g.tensors[w_name].quant
    per_channel = qp is None or qp.is_per_channel
    wi, wq = ctx.weight(w_name, np.asarray(w, np.float32), OHWI_FROM_IOHW, per_channel, axis=1)
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else f"{node.name}/bias"
    bi = ctx.bias(b_name, ctx.g.const(b_name), cout, x, wq)
    xi = ctx.input(x, NHWC)
    n = ctx.shape(out_name)[0]
    conv_hw = crop[0] if crop else out_hw
    shape = ctx.b.add_int32(f"{node.name}/output_shape", [n, conv_hw[0], conv_hw[1], cout])
    opts = tfl.TransposeConvOptionsT(padding=padding, strideW=strides[1], strideH=strides[0])
    if crop is None:
        ctx.op(BuiltinOp.TRANSPOSE_CONV, [shape, wi, xi, bi], [ctx.output(out_name)],
               Options.TransposeConvOptions, opts)
        return
    full = ctx.temp(f"{node.name}/full", (n, conv_hw[0], conv_hw[1], cout), ctx.quant(out_name))
    ctx.op(BuiltinOp.TRANSPOSE_CONV, [shape, wi, xi, bi], [full], Options.TransposeConvOptions, opts)
    begin = ctx.b.add_int32(f"{node.name}/crop_begin", [0, crop[1][0], crop[1][1], 0])
    size = ctx.b.add_int32(f"{node.name}/crop_size", [n, out_hw[0], out_hw[1], cout])
    ctx.op(BuiltinOp.SLICE, [full, begin, size], [ctx.output(out_name)], Options.SliceOptions,
           tfl.SliceOptionsT())


def write_grouped_conv(ctx, node, w: np.ndarray, xi: int, opts) -> None:
    """Conv(group=G) on the (padded) NHWC input ``xi``: per group a SLICE of its input channels and a
    CONV_2D with its weights (per-channel params: the group's rows of the node's weight params), then one
    CONCATENATION on channels. Slices and group outputs keep their input's / the output's params."""
    groups, (cout, cin_g) = int(node.attrs["group"]), w.shape[:2]
    cout_g, out_name = cout // groups, node.outputs[0]
    n, h, wd, _ = ctx.b.shape(xi)
    oh, ow = ctx.shape(out_name)[2:]
    qw = ctx.g.tensors[node.inputs[1]].quant if ctx.int8 else None
    if ctx.int8 and (qw is None or qw.dtype != "int8"):
        qw = symmetric_weight_params(w, 0)
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    bias = np.zeros(cout, np.float32) if b_name is None else np.asarray(ctx.g.const(b_name), np.float32)
    parts = []
    for k in range(groups):
        rows = slice(k * cout_g, (k + 1) * cout_g)
        part = ctx.temp(f"{node.name}/group{k}/input", (n, h, wd, cin_g), ctx.quant(node.inputs[0]))
        begin = ctx.b.add_int32(f"{node.name}/group{k}/begin", [0, 0, 0, k * cin_g])
        size = ctx.b.add_int32(f"{node.name}/group{k}/size", [n, h, wd, cin_g])
        ctx.op(BuiltinOp.SLICE, [xi, begin, size], [part], Options.SliceOptions, tfl.SliceOptionsT())
        wk = w[rows].transpose(0, 2, 3, 1)  # OIHW -> OHWI
        if ctx.int8:
            sub = (QuantParams.per_channel(qw.scale[rows], 0) if qw.is_per_channel else qw)
            wi = ctx.b.add_const(f"{node.inputs[1]}/group{k}", quantize_array(w[rows], sub).transpose(0, 2, 3, 1),
                                 "int8", sub, 0)
        else:
            sub, wi = None, ctx.b.add_const(f"{node.inputs[1]}/group{k}", np.ascontiguousarray(wk), "float32")
        bi = ctx.bias(f"{b_name or node.name + '/bias'}/group{k}", bias[rows], cout_g, node.inputs[0], sub)
        out = ctx.temp(f"{node.name}/group{k}/output", (n, oh, ow, cout_g), ctx.quant(out_name))
        ctx.op(BuiltinOp.CONV_2D, [part, wi, bi], [out], Options.Conv2DOptions, opts)
        parts.append(out)
    ctx.op(BuiltinOp.CONCATENATION, parts, [ctx.output(out_name)], Options.ConcatenationOptions,
           tfl.ConcatenationOptionsT(axis=3))
