"""Learned weight rounding (AdaRound): export a small CNN with and without --adaround, print each layer's
measured gain and the int8 output SQNR on LiteRT, then reuse calibration.json (which records the learned
rounding) and get the same int8 .tflite bytes without running the samples again.

    python examples/learned_rounding.py --out out/learned_rounding

The same from the command line: `edgepack export net.onnx --calib calib.npy --adaround`, then
`edgepack export net.onnx --calibration-file out/calibration.json`.
"""
import argparse
from pathlib import Path

import torch

import edgepack
from edgepack.demo import digits_split

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/learned_rounding")
args = parser.parse_args()
out = Path(args.out)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
with torch.no_grad():  # one large weight per channel: the other weights get few int8 steps, rounding matters
    for layer in (model[0], model[2], model[6]):
        w = layer.weight.view(layer.weight.shape[0], -1)
        w[:, 0] = 6 * w.abs().max(1).values
x = digits_split(size=8)[0]
calib, val = x[:200], x[200:300]
opts = dict(calib=calib, val=val, input_shape=(1, 1, 8, 8), calibration="minmax", bias_correction="off",
            target="phone-arm64")


def litert_sqnr(report) -> float:
    return report.validation["int8_tflite@litert"]["sqnr_db"]


nearest = edgepack.export(model, out=out / "nearest", **opts)
learned = edgepack.export(model, out=out / "adaround", adaround=True, **opts)
for layer in learned.calibration["adaround"]["layers"]:
    print(f"{layer['node']}: {layer['flipped']} of {layer['weights']} weights rounded the other way, "
          f"layer error {layer['error_db_nearest']:.1f} -> {layer['error_db_adaround']:.1f} dB"
          + ("" if layer["kept"] else " (not kept)"))
print(f"int8 output SQNR on LiteRT: {litert_sqnr(nearest):.1f} dB nearest, {litert_sqnr(learned):.1f} dB adaround "
      f"({learned.calibration['adaround']['seconds']:.1f} s)")

again = edgepack.export(model, out=out / "reused", calibration_file=str(out / "adaround" / "calibration.json"),
                        input_shape=(1, 1, 8, 8), validate=False)
same = (out / "reused" / "model.int8.tflite").read_bytes() == (out / "adaround" / "model.int8.tflite").read_bytes()
print(f"calibration.json reused: same int8 .tflite bytes: {same}")
