"""Shrink: remove half the channels of a CNN (structured pruning), recover accuracy by distillation from
the original, and export int8. The MACs fall, so the model gets faster, not only smaller. Channel counts
stay a multiple of the target's round_to, a group is cut only where the target's cost model says it gets
faster, distillation stops early, and a group whose cut loses more than the shrink budget is put back.

    python examples/prune_and_distill.py --out out/prune
"""
import argparse

import torch

import edgepack
from edgepack.demo import digits_split, train_classifier, upsample

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/prune")
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--finetune-epochs", type=int, default=10)
args = parser.parse_args()

x_train, y_train, x_test, y_test = digits_split()
x_train, x_test = upsample(x_train, 16), upsample(x_test, 16)
torch.manual_seed(0)


def block(cin, cout, stride):
    return [torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]


net = torch.nn.Sequential(*block(1, 16, 1), *block(16, 32, 2), *block(32, 32, 1), *block(32, 64, 2),
                          torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))
net = train_classifier(net, x_train, y_train, epochs=args.epochs)

report = edgepack.export(net, calib=x_train[:300], out=args.out, input_shape=(1, 1, 16, 16),
                         prune=0.5, finetune_epochs=args.finetune_epochs, train=x_train, train_labels=y_train,
                         val=x_test, val_labels=y_test, force=True)
s = report.shrink
print(f"MACs {s['before']['macs']:,} -> {s['after']['macs']:,} ({s['macs_ratio']:.2f}x fewer), "
      f"params {s['before']['params']:,} -> {s['after']['params']:,}")
orig = s["int8_tflite_vs_original_float"]
print(f"int8 .tflite accuracy {orig['accuracy']:.1%} vs original float {orig['reference_accuracy']:.1%}")
d, b = s["distillation"], s["budget"]
print(f"distilled {d['epochs_run']} epochs (best {d['best_epoch']}), round_to {s['round_to']}")
print(f"shrink budget {b['metric']}:{b['value']:g}: {'within' if b['within'] else 'over'} on {b['measured_on']} "
      f"held-out samples" + "".join(f"\n  {r['layer']}: {r['note']}" for r in b["reverted"]))
print(f"plan: {args.out}/plan.json")
