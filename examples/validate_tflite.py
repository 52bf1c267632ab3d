"""Validate a .tflite you already have (here: made by TensorFlow's own TFLiteConverter from a Keras model)
on TFLite Micro and LiteRT, against its float twin, for a Cortex-M33 target. Needs the keras extra.

    python examples/validate_tflite.py --out out/validate
"""
import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from edgepack.api import validate_artifacts  # noqa: E402
from edgepack.demo import digits_split  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/validate")
parser.add_argument("--epochs", type=int, default=5)
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

x_train, y_train, x_test, y_test = digits_split()
nhwc_train, nhwc_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)  # Keras is NHWC
tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), tf.keras.layers.Conv2D(16, 3, activation="relu"),
                             tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
                             tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(nhwc_train, y_train, epochs=args.epochs, verbose=0)

(out / "keras.float.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
conv = tf.lite.TFLiteConverter.from_keras_model(model)
conv.optimizations = [tf.lite.Optimize.DEFAULT]
conv.representative_dataset = lambda: ([x[None]] for x in nhwc_train[:200])
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
conv.inference_input_type = conv.inference_output_type = tf.int8
(out / "keras.int8.tflite").write_bytes(conv.convert())
np.save(out / "test_x.npy", nhwc_test)
np.save(out / "test_y.npy", y_test)

report = validate_artifacts([out / "keras.int8.tflite", out / "keras.float.tflite"], out / "test_x.npy",
                            labels=out / "test_y.npy", target="cortex-m33")
report.save(out / "report.json")
tflm = report.validation["keras.int8.tflite@tflm"]
print(f"TFLite Micro: accuracy {tflm['accuracy']:.1%}, agreement with float {tflm['top1_agreement']:.1%}, "
      f"{tflm['vs_litert_reference']['identical_fraction']:.1%} of outputs identical to LiteRT reference")
print("lowest per-layer SQNR:", ", ".join(f"{r['op']} {r['sqnr_db']:.1f} dB" for r in report.per_layer["worst"][:3]))
print("verdict:", "; ".join(report.verdict.messages))
