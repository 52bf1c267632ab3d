"""Which 16x8 kernels (int16 activations, int8 weights, int64 conv/FC bias) LiteRT and TFLite Micro run.

For each TFLite builtin edgepack writes, a one-op Keras model is converted by TensorFlow's TFLiteConverter
with ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`` (the reference of what a 16x8 file
is: tensor types and op versions), then run on LiteRT (reference and default kernels) and TFLite Micro.
QUANTIZE int8 <-> int16 is measured from a converter file with int8 edges (the boundary edgepack writes).

    .venv/bin/python benchmarks/measure_16x8.py   # -> benchmarks/results/int16_kernels.{md,json}

The measured facts are kept in code in ``edgepack/exporter/tflite_versions.py`` (``INT16X8``); SUPPORTED_OPS.md
is generated from there. Re-run this after upgrading TensorFlow, LiteRT or tflite-micro and compare.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results"


def _models():
    import tensorflow as tf
    L = tf.keras.layers

    def one(shape, layer_fn):
        x = tf.keras.Input(shape)
        layer = layer_fn if isinstance(layer_fn, L.Layer) else L.Lambda(layer_fn)
        return tf.keras.Model(x, layer(x))

    def two(shape, fn):
        a, b = tf.keras.Input(shape), tf.keras.Input(shape)
        return tf.keras.Model([a, b], L.Lambda(lambda ab: fn(*ab))([a, b]))

    rng = np.random.default_rng(0)
    return {
        "CONV_2D": one((8, 8, 3), L.Conv2D(4, 3, padding="same")),
        "DEPTHWISE_CONV_2D": one((8, 8, 4), L.DepthwiseConv2D(3, padding="same")),
        "FULLY_CONNECTED": one((16,), L.Dense(5)),
        "TRANSPOSE_CONV": one((4, 4, 3), L.Conv2DTranspose(2, 3, strides=2, padding="same")),
        "ADD": two((4, 4, 3), lambda a, b: a + b),
        "SUB": two((4, 4, 3), lambda a, b: a - b),
        "MUL": two((4, 4, 3), lambda a, b: a * b),
        "MAXIMUM": two((4, 4, 3), lambda a, b: tf.maximum(a, b)),
        "MINIMUM": two((4, 4, 3), lambda a, b: tf.minimum(a, b)),
        "BATCH_MATMUL": two((4, 4), lambda a, b: tf.matmul(a, b)),
        "AVERAGE_POOL_2D": one((8, 8, 3), L.AveragePooling2D(2)),
        "MAX_POOL_2D": one((8, 8, 3), L.MaxPooling2D(2)),
        "MEAN": one((8, 8, 3), lambda x: tf.reduce_mean(x, axis=[1, 2])),
        "RESHAPE": one((4, 4, 3), L.Reshape((48,))),
        "TRANSPOSE": one((4, 4, 3), lambda x: tf.transpose(x, [0, 3, 1, 2])),
        "CONCATENATION": two((4, 4, 3), lambda a, b: tf.concat([a, b], -1)),
        "SLICE": one((4, 4, 3), lambda x: tf.slice(x, [0, 1, 1, 0], [1, 2, 2, 3])),
        "PAD": one((4, 4, 3), lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])),
        "PADV2": one((4, 4, 3), lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=-1.5)),
        "RESIZE_NEAREST_NEIGHBOR": one((4, 4, 3), L.UpSampling2D(2, interpolation="nearest")),
        "RESIZE_BILINEAR": one((4, 4, 3), L.UpSampling2D(2, interpolation="bilinear")),
        "SOFTMAX": one((10,), L.Softmax()),
        "LOGISTIC": one((10,), lambda x: tf.sigmoid(x)),
        "TANH": one((10,), lambda x: tf.tanh(x)),
        "RELU": one((10,), lambda x: tf.nn.relu(x)),
        "RELU6": one((10,), lambda x: tf.nn.relu6(x)),
        "LEAKY_RELU": one((10,), lambda x: tf.nn.leaky_relu(x, 0.1)),
        "HARD_SWISH": one((10,), lambda x: x * tf.nn.relu6(x + 3.0) / 6.0),
        "PRELU": one((4, 4, 3), L.PReLU(alpha_initializer=tf.constant_initializer(rng.uniform(0.1, 0.3, 3)),
                                        shared_axes=[1, 2])),
        "GELU": one((10,), lambda x: tf.nn.gelu(x)),
        "RSQRT": one((10,), lambda x: tf.math.rsqrt(tf.abs(x) + 1.0)),
        "EXP": one((10,), lambda x: tf.exp(x)),
        "ABS": one((10,), lambda x: tf.abs(x)),
    }


def _convert(model, int8_edges: bool = False) -> bytes:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shapes = [tuple(i.shape[1:]) for i in model.inputs]

    def data():
        for _ in range(16):
            yield [rng.uniform(-2, 2, (1,) + s).astype(np.float32) for s in shapes]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = data
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if int8_edges:  # not allowed by the converter for 16x8 files: measured by edgepack's files instead
        conv.inference_input_type = tf.int8
    return conv.convert()


def _runs(model_bytes: bytes) -> dict[str, str]:
    from edgepack.targets.runtimes import TFLM, LiteRT

    res = {}
    for name, make in (("litert_ref", lambda b: LiteRT(b, reference=True)), ("litert", LiteRT),
                       ("tflm", TFLM)):
        try:
            rt = make(model_bytes)
            xs = [np.zeros(d["shape"], d["dtype"]) for d in rt.inputs]
            rt.run(*xs)
            res[name] = "yes"
        except Exception as exc:  # a runtime refusing a kernel is the measurement
            res[name] = "no: " + str(exc).splitlines()[0][:120]
    return res


def measure() -> dict:
    from edgepack.targets.tflite_file import read_tflite

    rows = {}
    for builtin, model in _models().items():
        try:
            data = _convert(model)
        except Exception as exc:
            rows[builtin] = {"converter": "no: " + str(exc).splitlines()[0][:120]}
            continue
        info = read_tflite(data)
        ops = [o for o in info.ops if o.op == builtin]
        if not ops:
            rows[builtin] = {"converter": "wrote " + ",".join(sorted({o.op for o in info.ops}))}
            continue
        op = ops[0]
        t = info.tensors
        rows[builtin] = {"converter": "yes", "version": op.version,
                         "inputs": [t[i].dtype for i in op.inputs if i >= 0],
                         "output": t[op.outputs[0]].dtype,
                         "output_params": [t[op.outputs[0]].scale[:1], t[op.outputs[0]].zero_point[:1]],
                         **_runs(data)}
        print(builtin, rows[builtin], flush=True)
    return rows


def render(rows: dict) -> str:
    lines = ["# 16x8 kernels measured (int16 activations, int8 weights)", "",
             "`benchmarks/measure_16x8.py`: one-op files written by TFLiteConverter (16x8 ops set), run on LiteRT "
             "(reference and default kernels) and TFLite Micro.", "",
             "| builtin | version | input types | output | LiteRT ref | LiteRT | TFLM |", "|---|---|---|---|---|---|---|"]
    for b, r in rows.items():
        if r.get("converter") != "yes":
            lines.append(f"| {b} | converter: {r['converter']} | | | | | |")
            continue
        lines.append(f"| {b} | {r['version']} | {', '.join(r['inputs'])} | {r['output']} | {r['litert_ref']} | "
                     f"{r['litert']} | {r['tflm']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    rows = measure()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "int16_kernels.json").write_text(json.dumps(rows, indent=1, default=str) + "\n")
    (OUT / "int16_kernels.md").write_text(render(rows))
    print(f"wrote {OUT / 'int16_kernels.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
