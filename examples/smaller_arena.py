"""A residual CNN for a microcontroller, exported twice: with TFLite Micro's own arena plan and with
edgepack's offline plan stored in the .tflite (`--arena-plan offline`), which TFLM honours. The report
gives the arena TFLM needed for each; the outputs are the same.

    python examples/smaller_arena.py --out out/smaller_arena
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import edgepack

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/smaller_arena")
args = parser.parse_args()
out = Path(args.out)


class Residual(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(x + self.b(torch.relu(self.a(x))))


torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), Residual(8),
                            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(), Residual(16),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
calib = np.random.default_rng(0).random((32, 1, 16, 16), np.float32)
arena = {}
for plan in ("runtime", "offline"):
    report = edgepack.export(model, calib=calib, out=out / plan, input_shape=(1, 1, 16, 16), arena_plan=plan,
                             target="stm32l4r5")
    arena[plan] = report.memory.arena_measured_tflm
    print(f"{plan:8s} plan: TFLM arena {arena[plan]:,} bytes (lower bound {report.memory.arena_lower_bound:,})")
print(f"offline plan saves {arena['runtime'] - arena['offline']:,} bytes")
