"""The operator order of the int8 .tflite: a residual shortcut conv scheduled before the branch frees the
block input early, and TFLite Micro's real arena falls; outputs stay bit-exact."""
import numpy as np
import torch
import torch.nn as nn

import edgepack
from edgepack.exporter import schedule
from edgepack.targets import isolated
from edgepack.targets.arena_probe import measure_arena
from edgepack.targets.tflite_file import read_tflite


def _cbr(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU())


class Residual(nn.Module):
    """A stem, then a block whose 1x1 shortcut conv PyTorch (and the graph) runs after a 3-conv branch."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 32, 1)
        self.branch = nn.Sequential(_cbr(32, 32), _cbr(32, 32), _cbr(32, 16))
        self.skip = nn.Conv2d(32, 16, 1)

    def forward(self, x):
        x = self.stem(x)
        return (self.branch(x) + self.skip(x)).mean((2, 3))


def _export(out, monkeypatch, graph_order: bool):
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((8, 1, 16, 16), np.float32)
    with monkeypatch.context() as m:
        if graph_order:
            m.setattr(schedule, "memory_order", lambda graph: list(graph.nodes))
        edgepack.export(Residual().eval(), calib=x, out=out, input_shape=(1, 1, 16, 16), validate=False,
                        calibration="minmax", bias_correction="off")
    return (out / "model.int8.tflite").read_bytes(), x


def test_shortcut_first_lowers_the_tflm_arena_and_keeps_outputs_bit_exact(tmp_path, monkeypatch):
    new, x = _export(tmp_path / "new", monkeypatch, graph_order=False)
    old, _ = _export(tmp_path / "old", monkeypatch, graph_order=True)
    assert new != old
    first_conv_reads = [read_tflite(d).ops[1].inputs[0] for d in (old, new)]
    assert first_conv_reads[0] == first_conv_reads[1]  # both start the block from the stem's output
    arena_old, arena_new = measure_arena(old), measure_arena(new)
    assert arena_new <= 0.9 * arena_old, (arena_old, arena_new)  # measured: 28024 -> 23928 bytes (-14.6%)
    (a, raw_a), (b, raw_b) = (isolated.run_tflite(d, "litert-ref", x) for d in (old, new))
    assert np.array_equal(raw_a, raw_b)


def test_the_order_is_topological_and_the_exact_search_gives_way_when_wide():
    from edgepack.loading import load

    torch.manual_seed(0)
    graph = load(Residual().eval(), input_shape=(1, 1, 16, 16))
    order = schedule.memory_order(graph)
    assert sorted(map(id, order)) == sorted(map(id, graph.nodes))
    seen = set(graph.inputs) | {k for k, t in graph.tensors.items() if t.is_const} | {""}
    for node in order:
        assert all(i in seen for i in node.inputs), node.name
        seen.update(node.outputs)
    skip = next(k for k, n in enumerate(order) if n.op == "Conv" and n.inputs[0] == order[0].outputs[0]
                and k > 0 and graph.tensors[n.outputs[0]].shape[1] == 16)
    assert skip <= 2  # the shortcut runs right after the branch's first conv, not after the whole branch
    schedule_states = schedule.EXACT_STATES
    try:
        schedule.EXACT_STATES = 1  # two ready nodes already exceed it: the greedy order
        assert schedule.exact_order(graph) is None
        assert [n.name for n in schedule.memory_order(graph)] == [n.name for n in schedule.greedy_order(graph)]
    finally:
        schedule.EXACT_STATES = schedule_states
