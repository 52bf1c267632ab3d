"""A recurrent keyword spotter -> microcontroller: a PyTorch nn.LSTM (20 frames of 10 MFCC-like features,
hidden 16, then a Linear) trained on a seeded synthetic keyword task, exported int8 for a Cortex-M4. The LSTM
is unrolled over its 20 frames into FULLY_CONNECTED, LOGISTIC, TANH, MUL and ADD, which LiteRT and TFLite
Micro both run in int8; the report says how close each runtime stays to the float model.

    python examples/lstm_keyword_spotting.py --out out/lstm_kws
"""
import argparse

import numpy as np
import torch

import edgepack
from edgepack.demo import train_classifier

FRAMES, FEATURES, KEYWORDS = 20, 10, 4

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/lstm_kws")
parser.add_argument("--epochs", type=int, default=8)
args = parser.parse_args()


def keyword_clips(n: int, seed: int):
    """Each keyword is a fixed 8-frame pattern placed at a random frame of a noisy 20-frame clip."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(0).normal(0, 1, (KEYWORDS, 8, FEATURES))
    labels = rng.integers(0, KEYWORDS, n)
    clips = rng.normal(0, 0.5, (n, FRAMES, FEATURES))
    for i, (label, start) in enumerate(zip(labels, rng.integers(0, FRAMES - 8, n))):
        clips[i, start:start + 8] += patterns[label]
    return clips.astype(np.float32), labels.astype(np.int64)


class KeywordLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(FEATURES, 16, batch_first=True)
        self.head = torch.nn.Linear(16, KEYWORDS)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(y[:, -1])


x_train, y_train = keyword_clips(1200, seed=1)
x_test, y_test = keyword_clips(200, seed=2)
torch.manual_seed(0)
model = train_classifier(KeywordLSTM(), x_train, y_train, epochs=args.epochs)

report = edgepack.export(model, calib=x_train[:200], out=args.out, input_shape=(1, FRAMES, FEATURES),
                         val=x_test, val_labels=y_test, target="cortex-m4", calibration="minmax", force=True)
for run in ("int8_tflite@tflm", "int8_tflite@litert-ref", "int8_onnx@onnxruntime-ref"):
    v = report.validation[run]
    print(f"{run}: accuracy {v['accuracy']:.1%} (float {v['reference_accuracy']:.1%}), "
          f"top-1 agreement {v['top1_agreement']:.1%}, SQNR {v['sqnr_db']:.1f} dB")
print("fits" if report.verdict.fits else "does NOT fit", report.target)
print(f"report: {args.out}/report.html")
