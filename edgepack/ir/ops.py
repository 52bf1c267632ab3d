"""The closed op table of the IR. Semantics are ONNX's (NCHW), normalised by the frontends.

Each row says the op's arity, which inputs are weights, which axis of the output carries channels,
and how its output is quantized:
- "calibrated": own scale/zero-point from calibration;
- "same_as_input": output reuses the first input's params (TFLite requires it: reshape, pooling, ...);
- "fixed": fixed params from the TFLite spec (softmax/sigmoid: 1/256, -128; tanh: 1/128, 0).
Adding an op = one row here plus one row in each mapping table (ONNX reader/writer, TFLite, and the
declared tables of tools/gen_supported_ops.py, which writes SUPPORTED_OPS.md); tests fail when a row
is missing (test_emit_onnx, test_emit_tflite, test_torch_exec, test_supported_ops).

Normalised attributes (the frontends produce exactly these):
- Conv: strides[2], pads[4] (top, left, bottom, right), dilations[2], group, activation
  (a 1-D Conv arrives as a Conv on (N, C, 1, T) between Reshapes: the frontends normalise it)
- ConvTranspose: weights (Cin, Cout/group, kh, kw); strides[2], pads[4] (top, left, bottom, right:
  cropped from the full output), dilations[2], group, output_padding[2] (extra rows/columns at the end)
- Gemm: Y = X @ W.T + B, W shaped (out, in); activation
- MaxPool/AveragePool: kernel_shape[2], strides[2], pads[4], ceil_mode, count_include_pad
- Clip: min, max (floats); HardSigmoid: alpha, beta; LeakyRelu: alpha
- Reshape: shape (static, no -1 or 0); Transpose: perm; Concat/Softmax: axis
- Pad: pads (ONNX order, 2*rank), mode, value; ReduceMean: axes, keepdims
- LayerNormalization: axis (>= 0: normalises axes axis..rank-1), epsilon; inputs X, scale, bias
- Gelu: approximate ("none": x * Phi(x) with erf | "tanh": the tanh approximation)
- Resize: mode ("nearest" | "linear"), size (output H, W), coordinate_transformation_mode, nearest_mode
- activation (on ops with fusable=True): None | "Relu" | "Relu6" (written by the fuse pass)
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpSpec:
    name: str
    min_inputs: int
    max_inputs: int
    weights: tuple[int, ...] = ()  # input positions holding constant weights/bias
    quant: str = "calibrated"  # calibrated | same_as_input | fixed
    fixed: tuple[float, int] | None = None  # (scale, zero_point) for quant="fixed"
    fusable: bool = False  # may carry a fused Relu/Relu6 activation
    channel_axis: int | None = 1  # channel axis of the output (NCHW), None if not meaningful
    doc: str = ""


_ROWS = [
    OpSpec("Conv", 2, 3, weights=(1, 2), fusable=True, doc="2-D convolution, groups incl. depthwise"),
    OpSpec("ConvTranspose", 2, 3, weights=(1, 2), doc="2-D transposed convolution (upsampling)"),
    OpSpec("Gemm", 2, 3, weights=(1, 2), fusable=True, doc="fully connected: X @ W.T + B"),
    OpSpec("MatMul", 2, 2, doc="matrix product of two activations"),
    OpSpec("Add", 2, 2, fusable=True, doc="elementwise add with broadcasting"),
    OpSpec("Sub", 2, 2, fusable=True, doc="elementwise subtract with broadcasting"),
    OpSpec("Mul", 2, 2, fusable=True, doc="elementwise multiply with broadcasting"),
    OpSpec("Div", 2, 2, doc="elementwise divide with broadcasting"),
    OpSpec("Concat", 1, 64, quant="same_as_input", doc="concatenate along an axis"),
    OpSpec("MaxPool", 1, 1, quant="same_as_input", doc="2-D max pooling"),
    OpSpec("AveragePool", 1, 1, quant="same_as_input", doc="2-D average pooling"),
    OpSpec("GlobalAveragePool", 1, 1, quant="same_as_input", doc="mean over H and W, keeps dims"),
    OpSpec("ReduceMean", 1, 1, doc="mean over axes"),
    OpSpec("Relu", 1, 1, doc="max(x, 0)"),
    OpSpec("Clip", 1, 1, doc="clamp to [min, max]; Relu6 is Clip(0, 6)"),
    OpSpec("LeakyRelu", 1, 1, doc="x if x > 0 else alpha * x"),
    OpSpec("Sigmoid", 1, 1, quant="fixed", fixed=(1.0 / 256.0, -128), doc="logistic"),
    OpSpec("Tanh", 1, 1, quant="fixed", fixed=(1.0 / 128.0, 0), doc="hyperbolic tangent"),
    OpSpec("HardSigmoid", 1, 1, doc="clamp(alpha * x + beta, 0, 1)"),
    OpSpec("HardSwish", 1, 1, doc="x * hardsigmoid(x)"),
    OpSpec("Gelu", 1, 1, doc="Gaussian error linear unit x * Phi(x)"),
    OpSpec("Rsqrt", 1, 1, doc="1 / sqrt(x) (from the LayerNormalization lowering)"),
    OpSpec("Softmax", 1, 1, quant="fixed", fixed=(1.0 / 256.0, -128), doc="softmax over an axis"),
    OpSpec("Reshape", 1, 1, quant="same_as_input", channel_axis=None, doc="static reshape"),
    OpSpec("Transpose", 1, 1, quant="same_as_input", channel_axis=None, doc="permute axes"),
    OpSpec("Pad", 1, 1, quant="same_as_input", doc="constant/reflect/edge padding"),
    OpSpec("Resize", 1, 1, quant="same_as_input", doc="nearest or bilinear resize of H, W"),
    OpSpec("Identity", 1, 1, quant="same_as_input", channel_axis=None, doc="no-op (removed)"),
    OpSpec("Dropout", 1, 1, quant="same_as_input", channel_axis=None, doc="no-op at inference (removed)"),
    OpSpec("BatchNormalization", 5, 5, weights=(1, 2, 3, 4), doc="inference batch norm (folded away)"),
    OpSpec("LayerNormalization", 3, 3, weights=(1, 2), channel_axis=None,
           doc="normalise over the last axes, scale and shift (lowered to primitives by a pass)"),
]

OPS: dict[str, OpSpec] = {row.name: row for row in _ROWS}


def spec(op: str) -> OpSpec:
    return OPS[op]
