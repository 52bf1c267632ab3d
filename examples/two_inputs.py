"""Export a model with two inputs (an 8x8 image and a 6-value feature vector) to int8 for a Cortex-M4,
calibrating from a folder that holds one sub-folder per input, named like the input:

    calib/image/0000.npy     calib/features/0000.npy     (paired by file name)
    calib/image/0001.npy     calib/features/0001.npy     ...

(An .npz keyed by input name, `np.savez("calib.npz", image=..., features=...)`, or a Python dict
`{"image": array, "features": array}` work the same way.) PyTorch inputs are named like forward's parameters.

    python examples/two_inputs.py --out out/two_inputs
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import edgepack

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/two_inputs")
args = parser.parse_args()
out = Path(args.out)


class ImageAndFeatures(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(4 * 4 * 4 + 6, 5)

    def forward(self, image, features):
        return self.fc(torch.cat([torch.relu(self.conv(image)).flatten(1), features], 1))


torch.manual_seed(0)
model = ImageAndFeatures().eval()
rng = np.random.default_rng(0)
for i in range(32):  # the calibration folder: one sub-folder per input
    for name, sample in (("image", rng.uniform(0, 1, (1, 8, 8))), ("features", rng.normal(0, 1, 6))):
        (out / "calib" / name).mkdir(parents=True, exist_ok=True)
        np.save(out / "calib" / name / f"{i:04d}.npy", sample.astype(np.float32))

report = edgepack.export(model, out / "calib", out / "export", example_input=(torch.zeros(1, 1, 8, 8), torch.zeros(1, 6)),
                         target="stm32l4r5", calibration="minmax", force=True)
print("inputs:", report.inputs, "outputs:", report.outputs)
for key in ("int8_tflite@tflm", "int8_tflite@litert-ref", "int8_onnx@onnxruntime"):
    print(f"{key}: SQNR {report.validation[key]['sqnr_db']:.1f} dB vs the float model")
