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
    BuiltinOp.ABS: 2, BuiltinOp.NEG: 1, BuiltinOp.EXP: 2, BuiltinOp.SQRT: 1, BuiltinOp.LOG: 1,
    BuiltinOp.POW: 1,
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


# The 16x8 kernels (int16 activations, int8 weights, int64 conv/FC bias) and the runtimes that run them, with
# the version written: measured by benchmarks/measure_16x8.py (one-op files of TensorFlow's converter run on
# LiteRT and TFLite Micro; results/int16_kernels.md). A builtin absent here has no 16x8 kernel we know of
# (HARD_SWISH, PRELU: the converter refuses them; RESIZE_NEAREST_NEIGHBOR: the converter does not write it;
# PADV2: written with a float pad value that LiteRT refuses).
# The one place this fact lives: the precision check, the writers' versions and SUPPORTED_OPS.md read it.
BOTH, LITERT = ("litert", "tflm"), ("litert",)
INT16X8 = {
    BuiltinOp.CONV_2D: (3, BOTH), BuiltinOp.DEPTHWISE_CONV_2D: (3, BOTH), BuiltinOp.FULLY_CONNECTED: (4, BOTH),
    BuiltinOp.TRANSPOSE_CONV: (3, BOTH), BuiltinOp.ADD: (2, BOTH), BuiltinOp.SUB: (2, BOTH),
    BuiltinOp.MUL: (2, BOTH), BuiltinOp.MAXIMUM: (2, BOTH), BuiltinOp.MINIMUM: (2, BOTH),
    BuiltinOp.BATCH_MATMUL: (2, BOTH), BuiltinOp.AVERAGE_POOL_2D: (2, BOTH), BuiltinOp.MAX_POOL_2D: (2, BOTH),
    BuiltinOp.MEAN: (2, BOTH), BuiltinOp.RESHAPE: (1, BOTH), BuiltinOp.TRANSPOSE: (2, BOTH),
    BuiltinOp.CONCATENATION: (2, BOTH), BuiltinOp.SLICE: (2, BOTH), BuiltinOp.PAD: (2, BOTH),
    BuiltinOp.RESIZE_BILINEAR: (3, LITERT), BuiltinOp.SOFTMAX: (2, BOTH),
    BuiltinOp.LOGISTIC: (2, BOTH), BuiltinOp.TANH: (2, BOTH), BuiltinOp.RELU: (2, BOTH),
    BuiltinOp.RELU6: (2, BOTH), BuiltinOp.LEAKY_RELU: (2, BOTH), BuiltinOp.GELU: (2, LITERT),
    BuiltinOp.RSQRT: (2, BOTH), BuiltinOp.EXP: (2, LITERT), BuiltinOp.ABS: (2, BOTH),
    # the boundaries: int8 -> int16 and int16 -> int8 (op_version.cc: QUANTIZE to int16 is version 2)
    BuiltinOp.QUANTIZE: (2, BOTH), BuiltinOp.DEQUANTIZE: (3, BOTH),
}


def int16_runtimes(builtin_name: str) -> tuple[str, ...]:
    """The runtimes with a 16x8 kernel of the builtin named ``builtin_name`` (() if none)."""
    return INT16X8.get(getattr(BuiltinOp, builtin_name, -1), (0, ()))[1]


def boundary_version(code: int, src: str, dst: str) -> int:
    """Version of the QUANTIZE / DEQUANTIZE between a tensor stored at ``src`` and read at ``dst``
    (op_version.cc: QUANTIZE to int16: 2, else 1; DEQUANTIZE of int16: 3, of int8: 2)."""
    if code == BuiltinOp.DEQUANTIZE:
        return 3 if src == "int16" else 2
    return 2 if dst == "int16" else 1
