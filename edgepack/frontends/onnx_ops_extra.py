"""ONNX rules added for broad model coverage: ConvTranspose, LayerNormalization, Gelu (opset 20), and the
1-D forms of Conv / MaxPool / AveragePool / GlobalAveragePool.

1-D ops are normalised to their 2-D form on (N, C, 1, T) between two Reshapes, so that every later
stage (passes, both emitters, the layout planner) sees only 2-D convolutions; ``lift_1d`` then removes
the Reshape pairs between consecutive 1-D layers.
"""
from __future__ import annotations

import numpy as np

from .onnx_builder import Builder, unsupported_variant


def _input(node, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


def _used(b: Builder, node, i: int) -> bool:
    return i < len(node.output) and node.output[i] != "" and node.output[i] in b.used


# ---- 1-D as 2-D on (N, C, 1, T) -----------------------------------------------------------------
def _to_2d(b: Builder, x: str) -> str:
    n, c, t = b.shape(x)
    x4 = b.new_tensor(f"{x}_2d", (n, c, 1, t))
    b.emit("Reshape", [x], [x4], {"shape": [n, c, 1, t]}, suffix="to_2d")
    return x4


def _out_2d(b: Builder, y: str) -> str:
    """The (N, C, 1, T) tensor a 2-D op writes for the 1-D output ``y``."""
    n, c, t = b.shape(y)
    return b.new_tensor(f"{y}_2d", (n, c, 1, t))


def _finish_1d(b: Builder, y4: str, y: str) -> None:
    b.emit("Reshape", [y4], [y], {"shape": list(b.shape(y))}, suffix="from_2d")


def conv1d(b: Builder, node, strides, pads, dilations, group: int) -> None:
    """Conv with 3-D weights (O, I, k): a Conv with weights (O, I, 1, k) on (N, C, 1, T)."""
    w = b.const(node.input[1])
    x4 = _to_2d(b, node.input[0])
    inputs = [x4, b.new_const(f"{node.input[1]}_2d", np.ascontiguousarray(w[:, :, None, :]))]
    if _input(node, 2):
        inputs.append(node.input[2])
    y4 = _out_2d(b, node.output[0])
    b.emit("Conv", inputs, [y4], {"strides": [1, strides[0]], "pads": [0, pads[0], 0, pads[1]],
                                  "dilations": [1, dilations[0]], "group": group})
    _finish_1d(b, y4, node.output[0])


def pool1d(b: Builder, op: str, node, kernel, strides, pads, ceil_mode: int, count_include_pad: int) -> None:
    x4 = _to_2d(b, node.input[0])
    y4 = _out_2d(b, node.output[0])
    b.emit(op, [x4], [y4], {"kernel_shape": [1, kernel[0]], "strides": [1, strides[0]],
                            "pads": [0, pads[0], 0, pads[1]], "ceil_mode": ceil_mode,
                            "count_include_pad": count_include_pad})
    _finish_1d(b, y4, node.output[0])


def global_average_pool1d(b: Builder, node) -> None:
    x4 = _to_2d(b, node.input[0])
    y4 = _out_2d(b, node.output[0])
    b.emit("GlobalAveragePool", [x4], [y4])
    _finish_1d(b, y4, node.output[0])


# ---- ConvTranspose -----------------------------------------------------------------------------
def _conv_transpose(b: Builder, node, attrs):
    w = b.need_const(node, 1, "weight")
    if w.ndim != 4:
        raise unsupported_variant("ConvTranspose", b.current, f"{w.ndim - 2}-D transposed convolution; "
                                  "only 2-D (NCHW) is supported")
    if _input(node, 2):
        b.need_const(node, 2, "bias")
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in attrs.get("dilations", [1, 1])]
    extra = [int(p) for p in attrs.get("output_padding", [0, 0])]
    in_hw, out_hw = b.shape(node.input[0])[2:], b.shape(node.output[0])[2:]
    auto = attrs.get("auto_pad", "NOTSET")
    if auto == "VALID":
        pads = [0, 0, 0, 0]
    elif "pads" in attrs and "output_shape" not in attrs and auto == "NOTSET":
        pads = [int(p) for p in attrs["pads"]]
    else:  # output_shape or SAME_*: ONNX derives the pads from the (inferred) output size
        begin, end = [], []
        for i in range(2):
            total = strides[i] * (in_hw[i] - 1) + extra[i] + (kernel[i] - 1) * dilations[i] + 1 - out_hw[i]
            if total < 0:
                raise unsupported_variant("ConvTranspose", b.current,
                                          f"output {out_hw} larger than the full output; use output_padding")
            small, large = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else large)
            end.append(large if auto == "SAME_UPPER" else small)
        pads = begin + end
    b.emit("ConvTranspose", [i for i in node.input[:3] if i], [node.output[0]],
           {"strides": strides, "pads": pads, "dilations": dilations, "group": int(attrs.get("group", 1)),
            "output_padding": extra})


# ---- LayerNormalization, Gelu ------------------------------------------------------------------
def _layer_norm(b: Builder, node, attrs):
    if _used(b, node, 1) or _used(b, node, 2):
        raise unsupported_variant("LayerNormalization", b.current, "its Mean / InvStdDev outputs are used")
    x, rank = node.input[0], b.rank(node.input[0])
    axis = int(attrs.get("axis", -1)) % rank
    scale = b.need_const(node, 1, "scale")
    if _input(node, 2):
        b.need_const(node, 2, "bias")
        bias = node.input[2]
    else:
        bias = b.new_const(f"{node.input[1]}_zero_bias", np.zeros_like(scale))
    b.emit("LayerNormalization", [x, node.input[1], bias], [node.output[0]],
           {"axis": axis, "epsilon": float(attrs.get("epsilon", 1e-5))})


def _gelu(b: Builder, node, attrs):
    approximate = attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise unsupported_variant("Gelu", b.current, f"approximate='{approximate}' (allowed: none, tanh)")
    b.emit("Gelu", [node.input[0]], [node.output[0]], {"approximate": approximate})


EXTRA_RULES = {
    "ConvTranspose": _conv_transpose,
    "LayerNormalization": _layer_norm,
    "Gelu": _gelu,
}
