"""Mixed precision where the target runs it: export in int8, find the first layer whose int8 SQNR is low,
and export again with that layer and the layer that reads it in int16 (16x8: int16 activations, int8
weights; TFLite Micro and LiteRT have the kernels, see SUPPORTED_OPS.md). On a phone target a layer may
also stay in float. The report says what each choice costs in flash, arena and estimated latency.

    python examples/int16_layers.py --out out/int16_layers

The same from the command line: `edgepack export net.onnx --calib calib.npy --layer NAME:precision=int16`,
or in a --config TOML file: [layers."NAME"] precision = "int16". From code that already holds a calibrated
graph (an accuracy ladder): edgepack.precision.apply_precision(qgraph, {"NAME": "int16"}, profile).
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import edgepack

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/int16_layers")
args = parser.parse_args()
out = Path(args.out)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 1),
                            torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                            torch.nn.Linear(4, 3)).eval()
with torch.no_grad():  # channel 3 of the first conv fires (x50) on bright pixels; the next conv barely reads it
    model[0].weight[3], model[0].bias[3] = 50.0, -400.0
    model[2].weight[:, 3] *= 0.002
rng = np.random.default_rng(0)
calib = rng.random((64, 1, 8, 8), np.float32)
calib[0] = 1.0  # one bright calibration sample stretches the first conv's range: its int8 step is coarse
val = rng.random((32, 1, 8, 8), np.float32)
common = dict(calib=calib, val=val, input_shape=(1, 1, 8, 8), calibration="minmax", force=True)

before = edgepack.export(model, out=out / "int8", **common)
rows = [r for r in before.per_layer["layers"] if "node" in r]
worst = next(k for k, r in enumerate(rows) if r["sqnr_db"] < 25)
chosen = [rows[worst]["node"], rows[worst + 1]["node"]]  # the low layer and its reader keep int16 between them
print(f"first low layer: {rows[worst]['op']} '{rows[worst]['tensor']}' {rows[worst]['sqnr_db']:.1f} dB")

after = edgepack.export(model, out=out / "int16", layers={n: {"precision": "int16"} for n in chosen}, **common)
fixed = next(r for r in after.per_layer["layers"] if r["tensor"] == rows[worst]["tensor"])
run = "int8_tflite@tflm"
print(f"int16 on {', '.join(chosen)}: that layer {fixed['sqnr_db']:.1f} dB, output "
      f"{before.validation[run]['sqnr_db']:.1f} -> {after.validation[run]['sqnr_db']:.1f} dB on TFLite Micro")
cost = after.calibration["precision"]["change"]
print(f"cost on {after.target}: flash {cost['flash_bytes']:+} B, arena {cost['arena_bytes']:+} B, "
      f"latency {cost['latency_ms']:+.3f} ms (estimated)")

phone = edgepack.export(model, out=out / "float_on_phone", target="phone-arm64",
                        layers={chosen[0]: {"precision": "float"}}, **common)
print(f"float {chosen[0]} on {phone.target}: output {phone.validation['int8_tflite@litert']['sqnr_db']:.1f} dB "
      "on LiteRT")
