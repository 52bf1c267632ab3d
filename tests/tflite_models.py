"""Small IR models for the TFLite emitter tests (test_emit_tflite*.py): each builder returns the graph
and the TFLite ops its file must contain; CONV_MODELS run bit-exact on TFLM, FC_MODELS within 1 LSB."""
from __future__ import annotations

import numpy as np
from tflite_helpers import GraphBuilder, calibrate


# ---- models -----------------------------------------------------------------------------
def conv_stack():
    gb = GraphBuilder(seed=1)
    x = gb.input("x", (1, 3, 16, 16))
    y = gb.conv(x, 8, 3, stride=2, pads=[1, 1, 1, 1], activation="Relu")  # explicit PAD
    y = gb.conv(y, 8, 3, stride=1, activation="Relu6")  # SAME
    y = gb.conv(y, 12, 2, stride=1, pads=[0, 0, 1, 1])  # SAME (pads after)
    y = gb.conv(y, 12, 3, stride=2, pads=[0, 0, 1, 1], activation="Relu")  # SAME with stride 2
    y = gb.conv(y, 6, 3, stride=1, pads=[1, 0, 2, 1])  # asymmetric: explicit PAD
    y = gb.conv(y, 4, 1, pads=[0, 0, 0, 0], bias=False)  # VALID, no bias
    return gb.build(y), ("PAD", "CONV_2D")


def depthwise_residual():
    gb = GraphBuilder(seed=2)
    x = gb.input("x", (1, 4, 12, 12))
    a = gb.conv(x, 8, 1, activation="Relu")
    d = gb.conv(a, 8, 3, group=8, activation="Relu6")  # depthwise, multiplier 1
    d = gb.conv(d, 8, 1)
    r = gb.node("Add", [a, d], activation="Relu")  # residual
    c = gb.node("Concat", [a, r], axis=1)  # on channels
    p = gb.node("MaxPool", [c], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
    q = gb.node("AveragePool", [p], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                count_include_pad=0)
    return gb.build(q), ("DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D")


def flatten_gemm():
    gb = GraphBuilder(seed=3)
    x = gb.input("x", (1, 2, 8, 8))
    y = gb.conv(x, 6, 3, stride=2, activation="Relu")
    y = gb.node("Reshape", [y], shape=[1, 6 * 4 * 4])
    y = gb.gemm(y, 16, activation="Relu")
    y = gb.gemm(y, 10)
    y = gb.node("Softmax", [y], axis=1)
    return gb.build(y), ("RESHAPE", "FULLY_CONNECTED", "SOFTMAX")


def squeeze_excite():
    gb = GraphBuilder(seed=4)
    x = gb.input("x", (1, 3, 10, 10))
    y = gb.conv(x, 8, 3, activation="Relu")
    s = gb.node("GlobalAveragePool", [y])
    s = gb.conv(s, 4, 1, activation="Relu")
    s = gb.conv(s, 8, 1)
    s = gb.node("Sigmoid", [s])
    y = gb.node("Mul", [y, s])  # (1,C,H,W) x (1,C,1,1)
    y = gb.node("HardSwish", [y])
    y = gb.node("Mul", [y, gb.const("chan_scale", np.linspace(0.5, 1.5, 8).reshape(1, 8, 1, 1))])
    y = gb.node("Add", [y, gb.const("chan_bias", np.linspace(-0.2, 0.2, 8).reshape(1, 8, 1, 1))])
    return gb.build(y), ("AVERAGE_POOL_2D", "LOGISTIC", "MUL", "HARD_SWISH", "ADD")


def resize_pad():
    gb = GraphBuilder(seed=5)
    x = gb.input("x", (1, 3, 6, 6))
    y = gb.conv(x, 4, 3, activation="Relu")
    y = gb.node("Resize", [y], mode="nearest", size=[12, 12], coordinate_transformation_mode="asymmetric",
                nearest_mode="floor")
    y = gb.node("Pad", [y], pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="constant", value=0.0)
    y = gb.conv(y, 4, 3, pads=[0, 0, 0, 0])
    y = gb.node("Resize", [y], mode="linear", size=[26, 26], coordinate_transformation_mode="half_pixel")
    y = gb.node("Resize", [y], mode="linear", size=[13, 13], coordinate_transformation_mode="align_corners")
    y = gb.node("Resize", [y], mode="nearest", size=[26, 26], coordinate_transformation_mode="half_pixel",
                nearest_mode="round_prefer_floor")
    y = gb.conv(y, 3, 3, stride=2)
    return gb.build(y), ("RESIZE_NEAREST_NEIGHBOR", "PAD", "RESIZE_BILINEAR")


def keras_transposes():
    """An NHWC input through Transpose(0,3,1,2) into convs, and the mirror at the output."""
    gb = GraphBuilder(seed=6)
    x = gb.input("x", (1, 12, 12, 3))
    y = gb.node("Transpose", [x], perm=[0, 3, 1, 2])
    y = gb.conv(y, 8, 3, activation="Relu")
    y = gb.conv(y, 4, 3, stride=2)
    y = gb.node("Transpose", [y], out="y_nhwc", perm=[0, 2, 3, 1])
    return gb.build(y), ("CONV_2D",)


def genuine_transpose():
    """A model that really swaps H and W: exactly one TRANSPOSE."""
    gb = GraphBuilder(seed=7)
    x = gb.input("x", (1, 3, 8, 6))
    y = gb.conv(x, 4, 3, activation="Relu")
    y = gb.node("Transpose", [y], perm=[0, 1, 3, 2])
    y = gb.conv(y, 4, 3)
    y = gb.node("Softmax", [y], axis=1)
    return gb.build(y), ("TRANSPOSE", "SOFTMAX")


def misc_activations():
    gb = GraphBuilder(seed=8)
    x = gb.input("x", (1, 4, 8, 8))
    y = gb.conv(x, 6, 3)
    t = gb.node("Tanh", [y])
    l = gb.node("LeakyRelu", [y], alpha=0.1)
    y = gb.node("Sub", [l, t])
    y = gb.node("Clip", [y], min=-1.0, max=1.0)
    h = gb.node("HardSigmoid", [gb.conv(y, 6, 1)], alpha=0.2, beta=0.5)
    y = gb.node("Mul", [y, h])
    y = gb.node("Div", [y, gb.const("two", np.array(2.0, np.float32))])
    y = gb.node("Clip", [gb.conv(y, 6, 1)], min=-0.5, max=0.75)
    y = gb.node("Relu", [y])
    y = gb.node("ReduceMean", [y], axes=[2, 3], keepdims=0)
    return gb.build(y), ("TANH", "LEAKY_RELU", "SUB", "MINIMUM", "MAXIMUM", "MEAN")


def pools_and_pads():
    gb = GraphBuilder(seed=9)
    x = gb.input("x", (1, 3, 8, 8))
    y = gb.conv(x, 6, 3, activation="Relu6")
    y = gb.node("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # PADV2
    y = gb.node("AveragePool", [y], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                count_include_pad=1)  # explicit PAD, the zeros are averaged
    y = gb.node("Pad", [y], pads=[0, 0, 2, 1, 0, 0, 1, 2], mode="reflect")
    y = gb.conv(y, 4, 3, pads=[0, 0, 0, 0])
    z = gb.node("ReduceMean", [y], axes=[2, 3], keepdims=1)
    y = gb.node("Concat", [y, gb.node("Mul", [y, z])], axis=2)  # concat on H
    return gb.build(y), ("PADV2", "MAX_POOL_2D", "PAD", "MIRROR_PAD", "MEAN", "CONCATENATION")


def matmul_attention():
    gb = GraphBuilder(seed=10)
    x = gb.input("x", (1, 4, 6))
    q = gb.node("MatMul", [x, gb.weight("wq", 6, 8)])
    q = gb.node("Relu", [q])
    k = gb.node("Transpose", [q], perm=[0, 2, 1])
    a = gb.node("MatMul", [q, k])
    a = gb.node("Softmax", [a], axis=-1)
    y = gb.node("MatMul", [a, q])
    return gb.build(y), ("BATCH_MATMUL", "SOFTMAX")  # the Transpose becomes adj_y


CONV_MODELS = [conv_stack, depthwise_residual, squeeze_excite, resize_pad, keras_transposes,
               genuine_transpose, misc_activations, pools_and_pads]
FC_MODELS = [flatten_gemm, matmul_attention]


def random_feeds(g, n=50, seed=0):
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(g.tensors[k].shape).astype(np.float32) for k in g.inputs}
            for _ in range(n)]


def calibrated(build):
    """What the ``model`` fixture of the test files returns for the builder ``build``:
    (name, calibrated graph, TFLite ops the file must hold, 50 random input samples)."""
    g, ops = build()
    samples = random_feeds(g)
    calibrate(g, samples)
    return build.__name__, g, ops, samples
