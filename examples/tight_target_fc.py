"""Per-channel fully connected weights on a tight microcontroller: edgepack picks per-channel FC weights
where they lower the weight noise, but TFLite Micro keeps 8 bytes of multiplier/shift per output channel
in the arena. On a custom board whose RAM is just short, it gives them up layer by layer (least gain
first) and records the decision in report.json (calibration.fc_weights.decided_against_for_arena).

    python examples/tight_target_fc.py --out out/tight_target_fc
"""
import argparse
import re
from pathlib import Path

import numpy as np
import torch

import edgepack
from edgepack.targets.memory import estimate_memory
from edgepack.targets.profile import PROFILE_DIR

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/tight_target_fc")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)


def board(ram_bytes: int) -> Path:
    """A custom target profile: the STM32L4R5's, with ``ram_bytes`` of RAM (any .toml path is a target)."""
    text = (PROFILE_DIR / "stm32l4r5.toml").read_text()
    path = out / f"board-{ram_bytes}.toml"
    path.write_text(re.sub(r"(?m)^ram_bytes = .*$", f"ram_bytes = {ram_bytes}", text))
    return path


torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(),
                            torch.nn.Linear(128, 10)).eval()
with torch.no_grad():  # rows of very different sizes: one scale per row (per-channel) pays off
    for layer in (model[0], model[2]):
        layer.weight *= torch.logspace(-2, 0, layer.out_features)[:, None]
calib = np.random.default_rng(0).random((64, 64), np.float32)

roomy = edgepack.export(model, calib=calib, out=out / "roomy", input_shape=(1, 64), target=board(1 << 20),
                        validate=False)
per_channel = [r["node"] for r in roomy.calibration["fc_weights"]["layers"] if r["per_channel"]]
arena = estimate_memory(out / "roomy" / "model.int8.tflite").arena_bytes
print(f"roomy board: per-channel FC on {per_channel}, TFLM arena {arena:,} B")

tight = edgepack.export(model, calib=calib, out=out / "tight", input_shape=(1, 64), target=board(arena - 1),
                        validate=False)
against = tight.calibration["fc_weights"].get("decided_against_for_arena")
if against is None:
    print("tight board: per-channel FC kept")
else:
    given_up = ", ".join(f"{d['node']} (-{d['layer_snr_given_up_db']} dB)" for d in against["layers"])
    print(f"tight board ({arena - 1:,} B RAM): per-tensor on {given_up}, saving {against['bytes_saved']} B")
