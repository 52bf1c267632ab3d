"""Operator versions of the TFLite emitter: the version of each builtin that has the kernels a file
needs, for the tensor types written (see TFLite's op_version.cc; int8 kernels are version 2-4)."""
from __future__ import annotations

from .tflite_builder import BuiltinOp

# Version of each builtin's int8 kernel: every builtin of the op table has a row
# (tests/test_supported_ops.py checks it).
INT8_VERSION = {
    BuiltinOp.CONV_2D: 3, BuiltinOp.DEPTHWISE_CONV_2D: 3, BuiltinOp.FULLY_CONNECTED: 4,
    BuiltinOp.ADD: 2, BuiltinOp.SUB: 2, BuiltinOp.MUL: 2, BuiltinOp.CONCATENATION: 2,
    BuiltinOp.MAX_POOL_2D: 2, BuiltinOp.AVERAGE_POOL_2D: 2, BuiltinOp.MEAN: 2,
    BuiltinOp.SOFTMAX: 2, BuiltinOp.LOGISTIC: 2, BuiltinOp.TANH: 2, BuiltinOp.RELU: 2,
    BuiltinOp.RELU6: 2, BuiltinOp.MINIMUM: 2, BuiltinOp.MAXIMUM: 2, BuiltinOp.PAD: 2,
    BuiltinOp.PADV2: 2, BuiltinOp.MIRROR_PAD: 2, BuiltinOp.RESIZE_BILINEAR: 2,
    BuiltinOp.RESIZE_NEAREST_NEIGHBOR: 2, BuiltinOp.TRANSPOSE: 2, BuiltinOp.BATCH_MATMUL: 2,
    BuiltinOp.DEQUANTIZE: 2, BuiltinOp.GELU: 2, BuiltinOp.RSQRT: 2, BuiltinOp.TRANSPOSE_CONV: 2,
    BuiltinOp.SLICE: 2, BuiltinOp.LEAKY_RELU: 1, BuiltinOp.HARD_SWISH: 1, BuiltinOp.RESHAPE: 1, BuiltinOp.DIV: 1,
    BuiltinOp.PRELU: 1,  # LiteRT registers version 1 only
}


def version(code: int, int8: bool, half_pixel: bool = False, align_corners: bool = False,
            mul_rescale_ge_1: bool = False, dilated: bool = False, dims: int = 0) -> int:
    """Operator version for the kernels this file needs. ``dims``: rank of a TRANSPOSE's input."""
    if code in (BuiltinOp.RESIZE_BILINEAR, BuiltinOp.RESIZE_NEAREST_NEIGHBOR) and (
            half_pixel or (align_corners and code == BuiltinOp.RESIZE_NEAREST_NEIGHBOR)):
        return 3
    if code == BuiltinOp.MUL and int8 and mul_rescale_ge_1:
        return 3
    if code == BuiltinOp.DEPTHWISE_CONV_2D and not int8 and dilated:
        return 2
    if code == BuiltinOp.TRANSPOSE and dims > 4:
        return 4
    if code == BuiltinOp.TRANSPOSE_CONV:  # the emitter always writes the bias input
        return 3
    return INT8_VERSION.get(code, 1) if int8 else 1
