"""Keras -> microcontroller: train a small Keras CNN on scikit-learn digits, save it as model.keras,
export int8 for a Cortex-M4 (STM32L4R5) with edgepack, validate on TFLite Micro and read the verdict.
Needs the keras extra.

    python examples/keras_to_mcu.py --out out/keras_mcu
"""
import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402

import edgepack  # noqa: E402
from edgepack.demo import digits_split  # noqa: E402
from edgepack.targets.tflite_file import read_tflite  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/keras_mcu")
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

x_train, y_train, x_test, y_test = digits_split()
x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)  # digits_split is NCHW, Keras NHWC

keras.utils.set_random_seed(0)
L = keras.layers
# BatchNormalization momentum 0.9 (Keras's default 0.99 leaves the moving statistics unsettled after a few
# hundred training steps, and inference uses them).
model = keras.Sequential([
    keras.Input((8, 8, 1)),
    L.Conv2D(16, 3, padding="same", use_bias=False), L.BatchNormalization(momentum=0.9), L.ReLU(),
    L.DepthwiseConv2D(3, padding="same", use_bias=False), L.BatchNormalization(momentum=0.9), L.ReLU(),
    L.Conv2D(24, 1, activation="relu"),
    L.MaxPooling2D(2),
    L.Flatten(),
    L.Dense(10),
])
model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
model.save(out / "model.keras")

# Calibration and validation data are NHWC, like the model's input.
report = edgepack.export(out / "model.keras", calib=x_train[:300], out=out, val=x_test, val_labels=y_test,
                         target="cortex-m4", force=True)
tflm = report.validation["int8_tflite@tflm"]
ops = read_tflite(out / "model.int8.tflite").op_counts()
print(f"int8 on TFLite Micro: accuracy {tflm['accuracy']:.1%} (float {tflm['reference_accuracy']:.1%}), "
      f"{tflm['vs_litert_reference']['identical_fraction']:.1%} of outputs identical to LiteRT reference kernels")
print("TFLite ops:", ", ".join(f"{op} x{n}" for op, n in ops.items()))
print("fits" if report.verdict.fits else "does NOT fit", report.target)
for line in report.verdict.messages:
    print(" ", line)
print(f"estimated latency: {report.latency.total_ms:.2f} ms; report: {out}/report.html")
