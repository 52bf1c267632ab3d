"""TFLite Micro's FULLY_CONNECTED rounding, diagnosed: TFLM rounds each FC layer's requantization twice
where LiteRT's reference rounds once, so along a chain of FC layers the two runtimes drift apart by
several LSB. `edgepack validate` names that cause and prints the fix as settings you can paste into a
config file (per-channel weights on the chain's per-tensor FC layers); re-exporting with them brings TFLM
closer to the reference.

    python examples/fc_rounding_diagnosis.py --out out/fc_rounding_diagnosis
"""
import argparse
import tomllib
from pathlib import Path

import numpy as np
import torch

import edgepack
from edgepack.demo import digits_split

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/fc_rounding_diagnosis")
args = parser.parse_args()
out = Path(args.out)

torch.manual_seed(0)
torch.set_num_threads(1)
dims = [64, 128, 96, 64, 32, 16, 32, 64, 96, 128, 64]  # a 10-Dense autoencoder of 8x8 digits
layers = []
for i in range(10):
    layers += [torch.nn.Linear(dims[i], dims[i + 1])] + ([torch.nn.ReLU()] if i < 9 else [])
model = torch.nn.Sequential(*layers)
x_train, _, x_test, _ = (a.reshape(len(a), -1) if a.ndim > 1 else a for a in digits_split(size=8))
x = torch.from_numpy(x_train)
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
for _ in range(80):
    batches = torch.randperm(len(x)).split(64)
    for b in batches:
        opt.zero_grad()
        ((model(x[b]) - x[b]) ** 2).mean().backward()
        opt.step()
model.eval()
calib = x_train[:256]


def tflm_against_reference(name: str, layer_settings: dict) -> dict:
    """Export with ``layer_settings``, then validate the int8 .tflite on TFLM against LiteRT's reference."""
    edgepack.export(model, calib=calib, out=out / name, input_shape=(1, 64), validate=False, force=True,
                    layers=layer_settings)
    np.save(out / "test.npy", x_test[:100])
    report = edgepack.validate([out / name / "model.int8.tflite"], out / "test.npy",
                               reference=out / name / "model.float.onnx", target="stm32l4r5")
    return report.validation["model.int8.tflite@tflm"]["vs_litert_reference"]


# Per-tensor weights on every FC layer, as many converters write them:
before = tflm_against_reference("per_tensor", {"op:Gemm": {"per_channel": False}})
print(f"per-tensor FC: TFLM = reference on {before['identical_fraction']:.1%} of the values, "
      f"max {before['max_lsb']} LSB apart")
print("why:", before["why"])
found = before["diagnosis"]
print("cause:", found["cause"])
print("paste into the config file:")
print(found["settings"])
(out / "per_channel.toml").write_text(found["settings"] + "\n")

after = tflm_against_reference("fixed", tomllib.loads((out / "per_channel.toml").read_text())["layers"])
print(f"with those settings: TFLM = reference on {after['identical_fraction']:.1%} of the values, "
      f"max {after['max_lsb']} LSB apart")
