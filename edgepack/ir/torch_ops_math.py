"""torch implementations of the math and layer ops (transposed convolution, layer norm,
GELU, rsqrt, the elementwise ops decomposed graphs leave behind, static slices), registered into ``torch_exec.OP_IMPLS``. Same contract: ``fn(node, inputs) -> tensor``
following the normalised attributes of ``ir/ops.py``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .graph import GraphError, Node


def _conv_transpose(n: Node, xs):
    x, w = xs[0], xs[1]
    bias = xs[2] if len(xs) > 2 else None
    strides = tuple(int(s) for s in n.attrs.get("strides", (1, 1)))
    dilations = tuple(int(d) for d in n.attrs.get("dilations", (1, 1)))
    extra = [int(p) for p in n.attrs.get("output_padding", (0, 0))]
    # The full (uncropped) output, then the crop of ``pads``: exact for asymmetric pads too, and
    # output_padding need not be smaller than the stride as torch requires. The output_padding cells
    # receive no products, only the bias (as in ONNX).
    y = F.conv_transpose2d(x, w, None, strides, 0, 0, int(n.attrs.get("group", 1)), dilations)
    if any(extra):
        y = F.pad(y, (0, extra[1], 0, extra[0]))
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    t, l, b, r = (int(p) for p in n.attrs.get("pads", (0, 0, 0, 0)))
    return y[:, :, t:y.shape[2] - b, l:y.shape[3] - r]


def _layer_norm(n: Node, xs):
    x, scale, bias = xs[0], xs[1], xs[2] if len(xs) > 2 else None
    axis = int(n.attrs.get("axis", -1)) % x.dim()
    shape = tuple(x.shape[axis:])
    if tuple(scale.shape) != shape:  # ONNX allows a broadcastable scale; torch wants the full shape
        scale = scale.expand(shape)
    if bias is not None and tuple(bias.shape) != shape:
        bias = bias.expand(shape)
    return F.layer_norm(x, shape, scale, bias, float(n.attrs.get("epsilon", 1e-5)))


def _gelu(n: Node, xs):
    approximate = n.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise GraphError(f"Gelu approximate='{approximate}' at node '{n.name}' (allowed: none, tanh)")
    return F.gelu(xs[0], approximate=approximate)


def _slice(n: Node, xs):
    # only the axes the window cuts: the batch axis keeps the batch actually run (calibration batches)
    starts, sizes, cut = n.attrs["starts"], n.attrs["sizes"], set(n.attrs["axes"])
    return xs[0][tuple(slice(int(s), int(s) + int(k)) if a in cut else slice(None)
                       for a, (s, k) in enumerate(zip(starts, sizes)))]


MATH_IMPLS = {
    "Slice": _slice,
    "Sqrt": lambda n, xs: torch.sqrt(xs[0]),
    "Exp": lambda n, xs: torch.exp(xs[0]),
    "Log": lambda n, xs: torch.log(xs[0]),
    "Neg": lambda n, xs: -xs[0],
    "Abs": lambda n, xs: torch.abs(xs[0]),
    "Pow": lambda n, xs: torch.pow(xs[0], float(n.attrs["exponent"])),
    "Max": lambda n, xs: torch.maximum(xs[0], xs[1]),
    "Min": lambda n, xs: torch.minimum(xs[0], xs[1]),
    "ConvTranspose": _conv_transpose,
    "LayerNormalization": _layer_norm,
    "Gelu": _gelu,
    "Rsqrt": lambda n, xs: torch.rsqrt(xs[0]),
}
