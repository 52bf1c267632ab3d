"""Deep Compression's other levers on an FC-heavy digits classifier of our own: unstructured pruning to 80%
zeros in steps with distillation between them (the zeros are stored dense: every runtime runs the file, the
Huffman / zlib / lzma rungs of the size ladder show what they save), and low-rank factorisation of the
fully connected layers (SVD keeping 80% of the singular-value energy, where the target's latency model
says the pair of thinner layers is faster), recovered by distillation.

    python examples/sparse_and_low_rank.py --out out/sparse
"""
import argparse
import json

import torch

import edgepack
from edgepack.demo import digits_split, train_classifier

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="out/sparse")
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--finetune-epochs", type=int, default=8)
args = parser.parse_args()
torch.set_num_threads(1)  # same seed, same weights, whatever the machine's load

x_train, y_train, x_test, y_test = (x.reshape(len(x), -1) if x.ndim == 4 else x for x in digits_split())
torch.manual_seed(0)
net = train_classifier(torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                           torch.nn.ReLU(), torch.nn.Linear(256, 10)),
                       x_train, y_train, epochs=args.epochs, lr=5e-3)
common = dict(calib=x_train[:300], input_shape=(1, 64), finetune_epochs=args.finetune_epochs, train=x_train,
              train_labels=y_train, val=x_test, val_labels=y_test, force=True)

# 80% zeros; FC weights per tensor (per-channel scales would cost more bytes than the coded weights)
sparse = edgepack.export(net, out=f"{args.out}/sparse", sparsity=0.8,
                         layers={"op:Gemm": {"per_channel": False}}, **common)
print(f"sparsity: {sparse.shrink['sparsity']['schedule']}")
for rung in sparse.ladder["rungs"]:
    runs = rung["runs"]
    acc = runs if isinstance(runs, str) else ", ".join(f"{rt} {m['accuracy']:.2%}" for rt, m in runs.items())
    print(f"  {rung['rung']:9s} {rung['bytes']:8,d} bytes  {rung['x_smaller']:5.1f}x smaller  {acc}")

low_rank = edgepack.export(net, out=f"{args.out}/low_rank", low_rank="energy:0.8", **common)
s = low_rank.shrink
print(f"low rank: MACs {s['before']['macs']:,} -> {s['after']['macs']:,} ({s['macs_ratio']:.1f}x fewer), "
      f"int8 on TFLM {low_rank.validation['int8_tflite@tflm']['accuracy']:.2%} "
      f"(float {s['int8_tflite_vs_original_float']['reference_accuracy']:.2%})")
for node, layer in s["low_rank"]["layers"].items():
    print(f"  {node}: rank {layer['rank']} of {layer['full_rank']}, estimated "
          f"{layer['latency_before']:,.0f} -> {layer['latency_after']:,.0f} cycles on {low_rank.target}")
print(json.dumps({"reports": [f"{args.out}/sparse/report.json", f"{args.out}/low_rank/report.json"]}))
