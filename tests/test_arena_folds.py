"""What edgepack writes so that TFLM's arena is no larger than TFLiteConverter's (benchmarks/bench_arena.py):
no RESHAPE before a FULLY_CONNECTED, no all-zero FULLY_CONNECTED bias, a MEAN that drops H and W itself,
Rescaling/Normalization and HardSigmoid folded into the conv. Each keeps the model's outputs: bit-exact on
TFLM for the first three, the same float function for the folds."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import edgepack
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.calibration.pool_form import as_mean, global_pools
from edgepack.exporter import tflite_ops_simple
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.ir.torch_exec import run
from edgepack.targets import isolated
from edgepack.targets.memory import estimate_memory
from edgepack.targets.runtimes import TFLM
from edgepack.targets.tflite_file import read_tflite

SHAPE = (1, 3, 8, 8)


class PoolHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 4)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1), 1))


class InputAffine(nn.Module):
    def __init__(self, pad: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=pad)
        self.register_buffer("scale", torch.tensor([1 / 255, 2 / 255, 0.5 / 255]).view(1, 3, 1, 1))
        self.register_buffer("offset", torch.tensor([-0.5, 0.1, 0.3]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.conv(x * self.scale + self.offset)


class ConvHardSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return F.hardsigmoid(self.conv(x))


def _samples(n=8, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE[1:]), np.float32)


def _graph(model):
    torch.manual_seed(0)
    return edgepack.load(model().eval() if isinstance(model, type) else model.eval(), input_shape=SHAPE)


def _tflm_raw(data, n=8):
    """Raw int8 outputs of the int8-in file on TFLM for n random int8 NHWC inputs."""
    rt = TFLM(data)
    xq = np.random.default_rng(1).integers(-128, 128, (n, 1, *SHAPE[2:], SHAPE[1]), dtype=np.int8)
    return np.concatenate([rt.run(xi)[0] for xi in xq])


def test_no_reshape_before_fully_connected_and_no_zero_bias(monkeypatch):
    x = _samples()
    qgraph, _ = calibrate_graph(_graph(PoolHead), load_samples(x, SHAPE), "minmax")
    data = to_tflite(qgraph, int8=True)
    info = read_tflite(data)
    assert [o.op for o in info.ops] == ["CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED"]
    fc = info.ops[-1]
    assert fc.inputs[2] == -1  # the all-zero bias is not written
    monkeypatch.setattr(tflite_ops_simple, "_flattened_by_fc", lambda ctx, node: False)
    with_reshape = to_tflite(qgraph, int8=True)
    assert "RESHAPE" in [o.op for o in read_tflite(with_reshape).ops]
    np.testing.assert_array_equal(_tflm_raw(data), _tflm_raw(with_reshape))
    arena = estimate_memory(data).arena_bytes  # TFLM allocates it in this arena, the RESHAPE file does not
    assert isolated.tflm_loads(data, arena)["loads"] and not isolated.tflm_loads(with_reshape, arena)["loads"]


def test_mean_form_absorbs_the_flatten():
    graph = _graph(PoolHead)
    mean = as_mean(graph, global_pools(graph))
    ops = [n.op for n in mean.nodes]
    assert "Reshape" not in ops and "Flatten" not in ops
    node = next(n for n in mean.nodes if n.op == "ReduceMean")
    assert node.attrs["keepdims"] == 0 and tuple(mean.tensors[node.outputs[0]].shape) == (1, 8)
    x = _samples(2)
    np.testing.assert_allclose(run(mean, [x])[mean.outputs[0]], run(graph, [x])[graph.outputs[0]], atol=1e-6)


def _float_equal(model, graph, x):
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(graph, [x])[graph.outputs[0]], ref, rtol=1e-4, atol=1e-4)


def test_input_affine_folds_into_an_unpadded_conv():
    x = _samples(4) * 255
    torch.manual_seed(0)
    valid, same = InputAffine(0).eval(), InputAffine(1).eval()
    g_valid, g_same = edgepack.load(valid, input_shape=SHAPE), edgepack.load(same, input_shape=SHAPE)
    assert [n.op for n in g_valid.nodes] == ["Conv"]
    assert [n.op for n in g_same.nodes] == ["Mul", "Add", "Conv"]  # padding: the offset would reach the border
    _float_equal(valid, g_valid, x)
    _float_equal(same, g_same, x)


def test_hard_sigmoid_folds_into_the_conv():
    torch.manual_seed(0)
    model = ConvHardSigmoid().eval()
    graph = edgepack.load(model, input_shape=SHAPE)
    assert [n.op for n in graph.nodes] == ["Conv", "Mul"]
    assert graph.nodes[0].activation == "Relu6"
    _float_equal(model, graph, _samples(4) * 4 - 2)


def test_offline_plan_is_the_default_where_tflm_runs_the_file():
    from edgepack.config import ExportConfig
    from edgepack.targets.offline_plan import plan_offline
    from edgepack.targets.profile import load_profile

    default = ExportConfig().arena_plan
    assert plan_offline(default, load_profile("stm32l4r5").runtime)  # TFLM honours the plan
    assert not plan_offline(default, load_profile("phone-arm64").runtime)  # LiteRT ignores it
    assert not plan_offline("runtime", "tflm") and plan_offline("offline", "litert")
