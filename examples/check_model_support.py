"""Before exporting a model, ask which of its ops edgepack cannot take: every one at once, with its
nodes and how often it occurs (exit 0 when nothing is missing, 2 otherwise).

    python examples/check_model_support.py --out out/check_model_support

The same from the command line: `edgepack inspect --missing model.onnx` (add `--json` for a machine).
"""
import argparse
from pathlib import Path

import torch

from edgepack.cli import main

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/check_model_support")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)


class Net(torch.nn.Module):  # two ops edgepack has no rule for: a 3-D conv and a lone erf (twice)
    def __init__(self):
        super().__init__()
        self.conv3d = torch.nn.Conv3d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv3d(x).mean(2)
        return torch.erf(y) + torch.erf(2 * y)


torch.onnx.export(Net().eval(), (torch.zeros(1, 1, 4, 8, 8),), str(out / "net.onnx"), dynamo=False)
code = main(["inspect", "--missing", str(out / "net.onnx")])
print(f"exit code {code}")
