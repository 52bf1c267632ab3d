"""ONNX -> phone: take an .onnx file (here exported from PyTorch with a dynamic batch, as most are),
quantize it with a percentile calibration and check it on LiteRT with XNNPACK (the phone runtime), then
`validate` the int8 .tflite for the phone, which also runs it on LiteRT's aarch64 build under qemu-user when
tools/install_arm_runtime.sh has installed it (the phone's own ARM kernels, compared with x86 in LSBs).

    python examples/onnx_to_phone.py --out out/onnx_phone
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import edgepack
from edgepack.demo import digits_split, train_classifier, upsample

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/onnx_phone")
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

x_train, y_train, x_test, y_test = digits_split()
x_train, x_test = upsample(x_train, 32), upsample(x_test, 32)  # a phone-sized input: 32x32
torch.manual_seed(0)


def separable(cin, cout, stride):
    return [torch.nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), torch.nn.BatchNorm2d(cin), torch.nn.ReLU6(),
            torch.nn.Conv2d(cin, cout, 1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU6()]


net = torch.nn.Sequential(  # a MobileNet-style net
    torch.nn.Conv2d(1, 16, 3, 2, 1), torch.nn.BatchNorm2d(16), torch.nn.ReLU6(),
    *separable(16, 32, 2), *separable(32, 64, 2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    torch.nn.Linear(64, 10))
net = train_classifier(net, x_train, y_train, epochs=args.epochs, lr=5e-3)
onnx_path = out / "user_model.onnx"
torch.onnx.export(net, (torch.zeros(1, 1, 32, 32),), str(onnx_path), input_names=["image"],
                  dynamic_shapes=({0: torch.export.Dim("batch")},))

np.save(out / "calib.npy", x_train[:300])
np.save(out / "val.npy", x_test)
np.save(out / "val_labels.npy", y_test)
report = edgepack.export(onnx_path, calib=out / "calib.npy", out=out / "export", val=out / "val.npy",
                         val_labels=out / "val_labels.npy", calibration="percentile", target="phone-arm64",
                         force=True)
lite = report.validation["int8_tflite@litert"]
print(f"int8 on LiteRT (XNNPACK): accuracy {lite['accuracy']:.1%} (float {lite['reference_accuracy']:.1%})")
print(f"measured here: {report.latency.measured_here_ms:.3f} ms per image; "
      f"estimated on {report.target}: {report.latency.total_ms:.3f} ms")

checked = edgepack.validate([out / "export" / "model.int8.tflite"], out / "val.npy", target="phone-arm64", limit=16)
checked.save(out / "validate_arm.json")
arm = checked.validation["model.int8.tflite@litert-aarch64"]
if "vs_litert_x86" in arm:
    lsb = arm["vs_litert_x86"]
    print(f"LiteRT aarch64 (qemu) vs x86: {lsb['identical_fraction']:.1%} of int8 outputs identical, "
          f"max {lsb['max_lsb']} LSB")
else:
    print(f"LiteRT aarch64: {arm['not_run']}")
