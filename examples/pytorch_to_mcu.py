"""PyTorch -> microcontroller: train a small CNN on scikit-learn digits, export int8 for a Cortex-M4
(STM32L4R5), validate on TFLite Micro and read the verdict.

    python examples/pytorch_to_mcu.py --out out/pytorch_mcu
"""
import argparse

import torch

import edgepack
from edgepack.demo import digits_cnn, digits_split, train_classifier

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/pytorch_mcu")
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()

x_train, y_train, x_test, y_test = digits_split()
torch.manual_seed(0)
model = train_classifier(digits_cnn(), x_train, y_train, epochs=args.epochs)

report = edgepack.export(model, calib=x_train[:300], out=args.out, input_shape=(1, 1, 8, 8),
                         val=x_test, val_labels=y_test, target="cortex-m4", force=True)
tflm = report.validation["int8_tflite@tflm"]
print(f"int8 on TFLite Micro: accuracy {tflm['accuracy']:.1%} (float {tflm['reference_accuracy']:.1%}), "
      f"{tflm['vs_litert_reference']['identical_fraction']:.1%} of outputs identical to LiteRT reference kernels")
print("fits" if report.verdict.fits else "does NOT fit", report.target)
for line in report.verdict.messages:
    print(" ", line)
print(f"estimated latency: {report.latency.total_ms:.2f} ms; report: {args.out}/report.html")
