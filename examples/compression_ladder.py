"""The Deep Compression ladder on two small digits models of our own, a CNN and an FC-heavy MLP: prune
channels, share weights by clustering (K values per layer), int8, then Huffman / zlib / lzma. Each rung's
file runs on LiteRT and TFLite Micro; report.json "ladder" has bytes and accuracy.

    python examples/compression_ladder.py --out out/ladder
"""
import argparse
import json

import torch

import edgepack
from edgepack.demo import digits_split, train_classifier, upsample

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/ladder")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--finetune-epochs", type=int, default=15)
args = parser.parse_args()
torch.set_num_threads(1)  # same seed, same weights, whatever the machine's load


def cnn():
    def block(cin, cout, stride):
        return [torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]

    return torch.nn.Sequential(*block(1, 16, 1), *block(16, 32, 2), *block(32, 32, 1), *block(32, 64, 2),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))


def mlp():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))


x_train, y_train, x_test, y_test = digits_split()
# (model, input size, pruning ratio, K shared values per layer): convs keep more values than FC layers,
# as in Deep Compression (their weights are fewer and each is reused at every position)
for name, make, size, prune, k in (("cnn", cnn, 16, 0.5, 32), ("mlp", mlp, 8, 0.5, 16)):
    xs_train, xs_test = (upsample(x_train, size), upsample(x_test, size)) if size != 8 else (x_train, x_test)
    torch.manual_seed(0)
    net = train_classifier(make(), xs_train, y_train, epochs=args.epochs)
    report = edgepack.export(net, calib=xs_train[:300], out=f"{args.out}/{name}", input_shape=(1, 1, size, size),
                             prune=prune, cluster=k, finetune_epochs=args.finetune_epochs, train=xs_train,
                             train_labels=y_train, val=xs_test, val_labels=y_test, force=True)
    print(f"{name}: prune {prune}, cluster K={k}")
    for rung in report.ladder["rungs"]:
        runs = rung["runs"]
        acc = runs if isinstance(runs, str) else ", ".join(f"{rt} {m['accuracy']:.2%}" for rt, m in runs.items())
        print(f"  {rung['rung']:9s} {rung['bytes']:8,d} bytes  {rung['x_smaller']:5.1f}x smaller  {acc}")
    e = report.energy
    print(f"  energy on {e['target']}: {e['total_uj']:.3f} uJ per inference (weights {e['weights_from_flash_uj']:.3f}, "
          f"activations {e['activations_in_sram_uj']:.3f}, MACs {e['macs_uj']:.3f}) beside "
          f"{report.latency.total_ms:.2f} ms")
print(json.dumps({"reports": [f"{args.out}/cnn/report.json", f"{args.out}/mlp/report.json"]}))
