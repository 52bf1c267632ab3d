"""An accuracy budget: say how much top-1 int8 may lose, and edgepack applies the cheapest fixes in order
(per-tensor ranges, per-channel FC, bias correction, AdaRound, int16 layers, a float layer on phones,
quantization-aware distillation with --train) until it holds; the report lists every step with its gain,
its cost in flash, arena and latency, and the settings that reproduce the result.

    python examples/accuracy_budget.py --out out/accuracy_budget

The same from the command line: `edgepack export net.onnx --calib calib.npy --train train.npy
--accuracy-budget top1:4` (or sqnr:30 for an output SQNR in dB); it exits 3, naming the layers that stop
it, when no fix is enough. The model here is a digits MLP whose first layer holds a weight of 100 on a pixel
that is 0 in every digit: harmless in float, but it makes every row's int8 step coarse.
"""
import argparse
from pathlib import Path

import torch

import edgepack
from edgepack.demo import digits_split, train_classifier

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/accuracy_budget")
args = parser.parse_args()
out = Path(args.out)

x_train, y_train, x_test, _ = digits_split(8)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
model = train_classifier(model, x_train, y_train, epochs=3, lr=1e-2, seed=0)
with torch.no_grad():
    model[1].weight[:, 0] = 100.0  # the corner pixel is 0 in every digit: float does not change

common = dict(calib=x_train[:256], val=x_test[:200], train=x_train[:512], input_shape=(1, 1, 8, 8))
report = edgepack.export(model, out=out / "budget", accuracy_budget="top1:4", **common)
for step in report.budget["steps"]:
    if "skipped" in step:
        print(f"  {step['step']:16s} skipped: {step['skipped']}")
        continue
    m, cost = step["measured"], step["cost"]
    print(f"  {step['step']:16s} {'kept   ' if step['kept'] else 'dropped'} top-1 lost {m['top1_points_lost']:5.2f} "
          f"points, SQNR {m['sqnr_db']} dB, {cost['flash_bytes']} B flash, {cost['arena_bytes']} B arena, "
          f"{cost['latency_ms']} ms ({step['seconds']} s)")
print(f"budget top1:4 {'met' if report.budget['met'] else 'NOT met'}; on LiteRT: top-1 agreement "
      f"{report.validation['int8_tflite@litert-ref']['top1_agreement']:.3f}")

# The settings that reproduce the result, as a config file: the same int8 model without the ladder.
toml = out / "budget.toml"
toml.write_text(report.budget["reproduce"]["toml"])
print(f"wrote {toml}:\n{toml.read_text()}")
edgepack.export(model, out=out / "again", config=edgepack.ExportConfig.from_toml(toml), validate=False, **common)
same = (out / "again" / "model.int8.tflite").read_bytes() == (out / "budget" / "model.int8.tflite").read_bytes()
print(f"same int8 model from {toml.name}: {same}")
