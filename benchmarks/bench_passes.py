"""How the graph passes scale: a Conv-BN-ReLU chain of N nodes through edgepack's default pipeline.

    .venv/bin/python benchmarks/bench_passes.py          # writes benchmarks/results/passes.md

The pipeline should cost time linear in the graph: the table gives seconds and microseconds per node.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from common import RESULTS, write_results  # noqa: F401  (sets sys.path to the checkout)

from edgepack.exporter.passes import run_passes
from edgepack.ir import Graph, Node, Tensor

SIZES = tuple(int(a) for a in sys.argv[1:]) or (300, 2400, 10_000)


def conv_bn_relu_chain(nodes: int, channels: int = 8) -> Graph:
    """``nodes // 3`` blocks of Conv -> BatchNormalization -> Relu on a 1x8x8x8 input."""
    g = Graph("chain")
    shape = (1, channels, 8, 8)
    g.add_tensor(Tensor("x", shape))
    g.inputs = ["x"]
    rng = np.random.default_rng(0)
    prev = "x"
    for b in range(nodes // 3):
        w = g.add_const(f"b{b}.w", rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1)
        stats = [g.add_const(f"b{b}.{k}", v) for k, v in
                 (("gamma", np.ones(channels, np.float32)), ("beta", np.zeros(channels, np.float32)),
                  ("mean", np.zeros(channels, np.float32)), ("var", np.ones(channels, np.float32)))]
        conv, bn, relu = (g.add_tensor(Tensor(f"b{b}.{k}", shape)).name for k in ("conv", "bn", "relu"))
        g.nodes.append(Node(f"b{b}/conv", "Conv", [prev, w], [conv],  # no bias: real nets put none before a BN
                            {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1]}))
        g.nodes.append(Node(f"b{b}/bn", "BatchNormalization", [conv, *stats], [bn], {"epsilon": 1e-5}))
        g.nodes.append(Node(f"b{b}/relu", "Relu", [bn], [relu]))
        prev = relu
    g.outputs = [prev]
    return g


def main() -> int:
    rows = []
    for n in SIZES:
        graph = conv_bn_relu_chain(n)
        t = time.perf_counter()
        out = run_passes(graph)
        seconds = time.perf_counter() - t
        assert len(out.nodes) == n // 3, f"expected {n // 3} fused convs, got {len(out.nodes)}"
        rows.append({"nodes": n, "seconds": round(seconds, 3), "us_per_node": round(1e6 * seconds / n, 1)})
        print(f"{n:>6} nodes: {seconds:.3f} s ({1e6 * seconds / n:.1f} us/node)", flush=True)
    lines = ["# Graph passes: time against graph size", "",
             "Conv-BN-ReLU chains through the default pipeline (`run_passes`); "
             "`.venv/bin/python benchmarks/bench_passes.py`.", "",
             "| nodes | seconds | us per node |", "|---|---|---|"]
    lines += [f"| {r['nodes']:,} | {r['seconds']} | {r['us_per_node']} |" for r in rows]
    write_results("passes", {"rows": rows}, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
