"""TFLiteConverter full-int8 for any edgepack float graph of the autoquant benchmark: the graph is rebuilt
as a TensorFlow function (NHWC, same weights) and converted with the converter's own calibration on the same
samples. Covers the ops of the zoo and issue-like models (Conv incl. depthwise, Gemm, fused Relu/Relu6, Add,
Mul, pools, Reshape, HardSwish, HardSigmoid, Softmax); anything else raises NotImplementedError."""
from __future__ import annotations

import numpy as np


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _act(tf, n, y):
    act = n.attrs.get("activation")
    return tf.nn.relu(y) if act == "Relu" else tf.nn.relu6(y) if act == "Relu6" else y


def _pad(tf, x, pads):
    t, l, b, r = (int(p) for p in pads)
    return tf.pad(x, [[0, 0], [t, b], [l, r], [0, 0]]) if any((t, l, b, r)) else x


def _conv(tf, n, g, x):
    w = np.asarray(g.const(n.inputs[1]), np.float32)
    bias = g.const(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
    strides = tuple(n.attrs.get("strides", (1, 1)))
    if tuple(n.attrs.get("dilations", (1, 1))) != (1, 1):
        raise NotImplementedError("dilated conv")
    x = _pad(tf, x, n.attrs.get("pads", [0, 0, 0, 0]))
    group = int(n.attrs.get("group", 1))
    if group == 1:
        y = tf.nn.conv2d(x, tf.constant(w.transpose(2, 3, 1, 0)), (1, *strides, 1), "VALID")
    elif group == w.shape[0] and w.shape[1] == 1:
        y = tf.nn.depthwise_conv2d(x, tf.constant(w.transpose(2, 3, 0, 1)), (1, *strides, 1), "VALID")
    else:
        raise NotImplementedError(f"grouped conv (group={group})")
    return _act(tf, n, y if bias is None else y + tf.constant(np.asarray(bias, np.float32)))


def _gemm(tf, n, g, x):
    w = np.asarray(g.const(n.inputs[1]), np.float32)
    y = tf.matmul(x, tf.constant(w.T))
    if len(n.inputs) > 2 and n.inputs[2]:
        y = y + tf.constant(np.asarray(g.const(n.inputs[2]), np.float32))
    return _act(tf, n, y)


def _pool(tf, n, x, kind):
    if any(n.attrs.get("pads", [0, 0, 0, 0])) or n.attrs.get("ceil_mode"):
        raise NotImplementedError("padded pool")
    k, s = tuple(n.attrs["kernel_shape"]), tuple(n.attrs.get("strides", (1, 1)))
    return (tf.nn.max_pool2d if kind == "max" else tf.nn.avg_pool2d)(x, k, s, "VALID")


def _node(tf, n, g, xs):
    op, x = n.op, xs[0]
    if op == "Conv":
        return _conv(tf, n, g, x)
    if op == "Gemm":
        return _gemm(tf, n, g, x)
    if op in ("Add", "Mul"):
        y = xs[0] + xs[1] if op == "Add" else xs[0] * xs[1]
        return _act(tf, n, y)
    if op in ("MaxPool", "AveragePool"):
        return _pool(tf, n, x, "max" if op == "MaxPool" else "avg")
    if op == "GlobalAveragePool":
        return tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    if op == "Reshape":
        if len(x.shape) == 4:  # the graph flattens NCHW: same element order here
            x = tf.transpose(x, (0, 3, 1, 2))
        return tf.reshape(x, [int(d) for d in n.attrs["shape"]])
    if op == "HardSwish":
        return x * tf.nn.relu6(x + 3.0) / 6.0
    if op == "HardSigmoid":
        return tf.clip_by_value(float(n.attrs.get("alpha", 0.2)) * x + float(n.attrs.get("beta", 0.5)), 0.0, 1.0)
    if op == "Softmax":
        return tf.nn.softmax(x, axis=-1)
    if op == "Relu":
        return tf.nn.relu(x)
    raise NotImplementedError(f"op {op}")


def tf_function(graph):
    """A tf.function computing ``graph`` on NHWC (or 2-D) input, returning its single output."""
    import tensorflow as tf

    shape = list(graph.tensors[graph.inputs[0]].shape)
    spec = tf.TensorSpec([1, *shape[2:], shape[1]] if len(shape) == 4 else shape, tf.float32)

    @tf.function(input_signature=[spec])
    def fn(x):
        env = {graph.inputs[0]: x}
        for n in graph.nodes:
            env[n.outputs[0]] = _node(tf, n, graph, [env[i] for i in n.inputs if i in env])
        return env[graph.outputs[0]]

    return fn


def converter_int8(graph, x_cal: np.ndarray) -> bytes:
    """TFLiteConverter full-int8 (int8 input and output) calibrated on ``x_cal`` (NCHW, as edgepack gets it)."""
    import tensorflow as tf

    from edgepack.frontends.tf_quiet import quiet

    fn = tf_function(graph)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([_nhwc(s[None]).astype(np.float32)] for s in x_cal)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with quiet():
        return conv.convert()


def float_check(graph, x: np.ndarray) -> float:
    """Largest |difference| between the TF rebuild and edgepack's float run (the rebuild must be exact)."""
    from edgepack.ir.torch_exec import run

    fn = tf_function(graph)
    got = np.concatenate([fn(_nhwc(s[None]).astype(np.float32)).numpy() for s in x])
    ref = run(graph, [x])[graph.outputs[0]]
    return float(np.max(np.abs(got.reshape(ref.shape) - ref)))


def run_litert(data: bytes, x: np.ndarray) -> np.ndarray:
    """Dequantized outputs of an int8-io .tflite on LiteRT's reference kernels, NCHW samples in."""
    from edgepack.targets.io_mapping import dequantize_output, quantize_input
    from edgepack.targets.runtimes import LiteRT
    from edgepack.targets.tflite_file import read_tflite

    info = read_tflite(data)
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    rt = LiteRT(data, reference=True)
    out = [dequantize_output(rt.run(quantize_input(_nhwc(s[None]), np.int8, tin.scale[0], tin.zero_point[0]))[0],
                             tout.scale[0], tout.zero_point[0]) for s in x]
    return np.concatenate(out)
