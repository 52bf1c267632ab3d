"""The closed op table of the IR. Semantics are ONNX's (NCHW), normalised by the frontends.

Each row says the op's arity, which inputs are weights, its traits (kind, channel-wise, homogeneous,
layout, weight axis, cost kind, the TFLite builtins written) and how its output is quantized:
- "calibrated": own scale/zero-point from calibration;
- "same_as_input": output reuses the first input's params (TFLite requires it: reshape, pooling, ...);
- "fixed": fixed params from the TFLite spec (softmax/sigmoid: 1/256, -128; tanh: 1/128, 0).
Every set of ops a stage needs is derived from these traits (``ops_where``); an op with plain_onnx /
plain_tflite needs no reader or writer of its own. Adding an op = one row here plus a row in each
per-op table another layer owns (torch implementation, ONNX reader/writer and TFLite writer unless
plain, TFLite int8 versions, TFLM kernel sizes); tests/test_op_tables.py fails when a row is missing.

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
    kind: str = "other"  # one of KINDS
    broadcast: bool = False  # combines two operands elementwise with ONNX broadcasting
    channelwise: bool = False  # output channel c reads input channel c only (channels prune through it)
    homogeneous: bool = False  # f(s * x) = s * f(x) per channel for s > 0 (equalisation passes through)
    copies_values: bool = False  # int8 output values are input values (no rounding): no error of its own
    layout: str = "any"  # spatial: NHWC in TFLite | matrix: IR order in TFLite | any: follows its input
    weight_axis: int | None = None  # IR axis of the output channels of weight input 1 (bias at input 2)
    cost: str | None = "other"  # cost-model kind (targets/latency.py); None: removed before export
    tflite: tuple[str, ...] = ()  # TFLite builtins its writer emits for it
    tflite_aux: tuple[str, ...] = ()  # builtins written around it (padding, crops) or, if lowered, instead
    plain_onnx: bool = False  # read and written as the ONNX op of the same name, inputs as they are, no attrs
    plain_tflite: bool = False  # written as tflite[0] on the same inputs, no options
    doc: str = ""


# kind: layer (weighted Conv/Gemm), matmul, elementwise (two operands, broadcasting), activation (per
# element), pool, reduce, softmax, movement (values moved, not changed), concat, pad, resize, no_op, norm.
KINDS = ("layer", "matmul", "elementwise", "activation", "pool", "reduce", "softmax", "movement", "concat",
         "pad", "resize", "no_op", "norm")
_ACT = dict(kind="activation", channelwise=True, cost="elementwise")
_SAME = dict(quant="same_as_input")

_ROWS = [
    OpSpec("Conv", 2, 3, weights=(1, 2), fusable=True, kind="layer", layout="spatial", weight_axis=0, cost="conv",
           tflite=("CONV_2D", "DEPTHWISE_CONV_2D"), tflite_aux=("PAD",),
           doc="2-D convolution, groups incl. depthwise"),
    OpSpec("ConvTranspose", 2, 3, weights=(1, 2), kind="layer", layout="spatial", weight_axis=1, cost="conv",
           tflite=("TRANSPOSE_CONV",), tflite_aux=("SLICE",), doc="2-D transposed convolution (upsampling)"),
    OpSpec("Gemm", 2, 3, weights=(1, 2), fusable=True, kind="layer", layout="matrix", weight_axis=0,
           cost="fully_connected", tflite=("FULLY_CONNECTED",), doc="fully connected: X @ W.T + B"),
    OpSpec("MatMul", 2, 2, kind="matmul", layout="matrix", cost="fully_connected", tflite=("BATCH_MATMUL",),
           doc="matrix product of two activations"),
    OpSpec("Add", 2, 2, broadcast=True, fusable=True, kind="elementwise", cost="elementwise", tflite=("ADD",), plain_onnx=True,
           doc="elementwise add with broadcasting"),
    OpSpec("Sub", 2, 2, broadcast=True, fusable=True, kind="elementwise", cost="elementwise", tflite=("SUB",), plain_onnx=True,
           doc="elementwise subtract with broadcasting"),
    OpSpec("Mul", 2, 2, broadcast=True, fusable=True, kind="elementwise", cost="elementwise", tflite=("MUL",), plain_onnx=True,
           doc="elementwise multiply with broadcasting"),
    OpSpec("Div", 2, 2, broadcast=True, kind="elementwise", cost="elementwise", tflite=("MUL", "DIV"), plain_onnx=True,
           doc="elementwise divide with broadcasting"),
    OpSpec("Concat", 1, 64, **_SAME, kind="concat", copies_values=True, tflite=("CONCATENATION",),
           doc="concatenate along an axis"),
    OpSpec("MaxPool", 1, 1, **_SAME, kind="pool", channelwise=True, homogeneous=True, copies_values=True,
           layout="spatial", cost="pooling", tflite=("MAX_POOL_2D",), tflite_aux=("PADV2",),
           doc="2-D max pooling"),
    OpSpec("AveragePool", 1, 1, **_SAME, kind="pool", channelwise=True, homogeneous=True, layout="spatial",
           cost="pooling", tflite=("AVERAGE_POOL_2D",), tflite_aux=("PAD",), doc="2-D average pooling"),
    OpSpec("GlobalAveragePool", 1, 1, **_SAME, kind="pool", channelwise=True, homogeneous=True,
           layout="spatial", cost="pooling", tflite=("AVERAGE_POOL_2D",), doc="mean over H and W, keeps dims"),
    OpSpec("ReduceMean", 1, 1, kind="reduce", cost="pooling", tflite=("MEAN",), doc="mean over axes"),
    OpSpec("Relu", 1, 1, **_ACT, homogeneous=True, tflite=("RELU",), plain_onnx=True, plain_tflite=True,
           doc="max(x, 0)"),
    OpSpec("PRelu", 2, 2, broadcast=True, **_ACT, homogeneous=True, tflite=("PRELU",), plain_onnx=True,
           plain_tflite=True, doc="x if x > 0 else slope * x; slope per channel or single (a constant)"),
    OpSpec("Clip", 1, 1, **_ACT, tflite=("RELU6", "RELU", "MINIMUM", "MAXIMUM"),
           doc="clamp to [min, max]; Relu6 is Clip(0, 6)"),
    OpSpec("LeakyRelu", 1, 1, **_ACT, homogeneous=True, tflite=("LEAKY_RELU",),
           doc="x if x > 0 else alpha * x"),
    OpSpec("Sigmoid", 1, 1, quant="fixed", fixed=(1.0 / 256.0, -128), **_ACT, tflite=("LOGISTIC",),
           plain_onnx=True, plain_tflite=True, doc="logistic"),
    OpSpec("Tanh", 1, 1, quant="fixed", fixed=(1.0 / 128.0, 0), **_ACT, tflite=("TANH",), plain_onnx=True,
           plain_tflite=True, doc="hyperbolic tangent"),
    OpSpec("HardSigmoid", 1, 1, **_ACT, tflite=("MUL", "ADD"), doc="clamp(alpha * x + beta, 0, 1)"),
    OpSpec("HardSwish", 1, 1, **_ACT, tflite=("HARD_SWISH",), plain_tflite=True, doc="x * hardsigmoid(x)"),
    OpSpec("Gelu", 1, 1, **_ACT, tflite=("GELU",), doc="Gaussian error linear unit x * Phi(x)"),
    OpSpec("Rsqrt", 1, 1, **_ACT, tflite=("RSQRT",), doc="1 / sqrt(x) (from the LayerNormalization lowering)"),
    OpSpec("Softmax", 1, 1, quant="fixed", fixed=(1.0 / 256.0, -128), kind="softmax", tflite=("SOFTMAX",),
           doc="softmax over an axis"),
    OpSpec("Reshape", 1, 1, **_SAME, kind="movement", copies_values=True, tflite=("RESHAPE",),
           doc="static reshape"),
    OpSpec("Transpose", 1, 1, **_SAME, kind="movement", copies_values=True, tflite=("TRANSPOSE",),
           doc="permute axes"),
    OpSpec("Pad", 1, 1, **_SAME, kind="pad", copies_values=True, tflite=("PAD", "PADV2", "MIRROR_PAD"),
           doc="constant/reflect/edge padding"),
    OpSpec("Resize", 1, 1, **_SAME, kind="resize", channelwise=True, layout="spatial",
           tflite=("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"), doc="nearest or bilinear resize of H, W"),
    OpSpec("Identity", 1, 1, **_SAME, kind="no_op", channelwise=True, homogeneous=True, cost=None,
           plain_onnx=True, doc="no-op (removed)"),
    OpSpec("Dropout", 1, 1, **_SAME, kind="no_op", channelwise=True, homogeneous=True, cost=None,
           doc="no-op at inference (removed)"),
    OpSpec("BatchNormalization", 5, 5, weights=(1, 2, 3, 4), kind="norm", channelwise=True, cost="elementwise",
           doc="inference batch norm (folded away)"),
    OpSpec("LayerNormalization", 3, 3, weights=(1, 2), kind="norm",
           tflite_aux=("MEAN", "SUB", "MUL", "ADD", "RSQRT"),
           doc="normalise over the last axes, scale and shift (lowered to primitives by a pass)"),
]

OPS: dict[str, OpSpec] = {row.name: row for row in _ROWS}


def spec(op: str) -> OpSpec:
    return OPS[op]


def ops_where(**traits) -> tuple[str, ...]:
    """Names of the ops whose traits equal the given values, in table order:
    ``ops_where(kind="elementwise")``; a callable value is a predicate on the trait."""
    def match(row: OpSpec) -> bool:
        return all(v(getattr(row, k)) if callable(v) else getattr(row, k) == v for k, v in traits.items())
    unknown = set(traits) - set(OpSpec.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown op traits: {sorted(unknown)}")
    return tuple(row.name for row in _ROWS if match(row))


def per_element(op: str) -> bool:
    """One activation in, the same op on every element (or channel): works on any rank, so it can move
    across a reshape that keeps axis 1 (BatchNormalization's other inputs are per-channel weights)."""
    row = OPS[op]
    return row.channelwise and row.layout != "spatial" and row.max_inputs - len(row.weights) == 1


def tflite_builtins(*ops: str, aux: bool = False) -> frozenset[str]:
    """The TFLite builtins the writers emit for ``ops`` (and, with ``aux``, the ones written around them)."""
    return frozenset(b for op in ops for b in OPS[op].tflite + (OPS[op].tflite_aux if aux else ()))
