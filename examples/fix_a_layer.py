"""Fix one layer: export, read from the report the first layer whose int8 SQNR is low (where the error
starts; the layers after it inherit it), and export again with a per-layer setting for it (percentile
calibration on that node only; everything else stays minmax).

    python examples/fix_a_layer.py --out out/fix_a_layer

The same from the command line: `edgepack export net.onnx --calib calib.npy --layer NAME:calibration=percentile
--layer NAME:percentile=99`, or in a --config TOML file: [layers."NAME"] calibration = "percentile".
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import edgepack

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/fix_a_layer")
args = parser.parse_args()
out = Path(args.out)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(2, 4, 1),
                            torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10)).eval()
with torch.no_grad():  # the first conv's 2nd channel fires (x50) only on an all-bright patch: an outlier
    model[0].weight[0], model[0].bias[0] = torch.randn(1, 3, 3) * 0.3, 0.5
    model[0].weight[1], model[0].bias[1] = 50.0, -400.0
rng = np.random.default_rng(0)
calib = rng.random((64, 1, 8, 8), np.float32)
calib[0] = 1.0  # one bright calibration sample stretches the first conv's minmax range
val = rng.random((32, 1, 8, 8), np.float32)

# minmax everywhere first (the default, auto, would already choose per tensor): the story of one bad layer
before = edgepack.export(model, calib=calib, val=val, out=out / "minmax", input_shape=(1, 1, 8, 8),
                         calibration="minmax")
worst = next(r for r in before.per_layer["layers"] if r["op"] != "INPUT" and r["sqnr_db"] < 25)
print(f"first low layer: {worst['op']} '{worst['tensor']}' {worst['sqnr_db']:.1f} dB")

# The report's name for the layer is the key (a node name or op:TYPE works too).
after = edgepack.export(model, calib=calib, val=val, out=out / "fixed", input_shape=(1, 1, 8, 8),
                        calibration="minmax", layers={worst["tensor"]: {"calibration": "percentile", "percentile": 99}})
fixed = next(r for r in after.per_layer["layers"] if r["tensor"] == worst["tensor"])
print(f"with percentile on that layer: {fixed['sqnr_db']:.1f} dB (settings: {after.calibration['layers']})")
