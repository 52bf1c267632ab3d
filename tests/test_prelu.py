"""PRelu (torch nn.PReLU through the ONNX frontend, slope per channel or single): one IR node, one TFLite
PRELU, float equal to torch on LiteRT and onnxruntime, int8 close to torch on LiteRT, TFLite Micro and the
QDQ .onnx, with TFLM as LiteRT's reference kernels and the arena estimate above TFLM's own."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import edgepack
from int8_everywhere import int8_outputs
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.io_mapping import to_file_layout
from edgepack.targets.memory import estimate_memory, measure_arena
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite

SHAPE = (1, 1, 8, 8)


def _model(per_channel: bool) -> nn.Module:
    torch.manual_seed(0)
    n = 8 if per_channel else 1
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.PReLU(n), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                          nn.PReLU(n), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()
    with torch.no_grad():  # distinct slopes, one of them negative: a wrong channel order shows
        for m in model:
            if isinstance(m, nn.PReLU):
                m.weight.copy_(torch.linspace(-0.2, 0.6, n) if per_channel else torch.tensor([0.3]))
    return model


def _xs(n, seed):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE[1:])).astype(np.float32)


@pytest.fixture(scope="module", params=[True, False], ids=["per_channel", "single"])
def prelu(request):
    model = _model(request.param)
    graph = edgepack.load(model, input_shape=SHAPE)
    qgraph, _ = calibrate_graph(graph, load_samples(_xs(64, 1), SHAPE), "minmax")
    return request.param, model, graph, qgraph


def test_prelu_is_one_node_and_one_prelu_builtin(prelu):
    per_channel, _, graph, qgraph = prelu
    nodes = [n for n in graph.nodes if n.op == "PRelu"]
    assert len(nodes) == 2 and graph.op_counts().get("LeakyRelu") is None
    assert [int(np.prod(graph.tensors[n.inputs[1]].shape)) for n in nodes] == [8 if per_channel else 1] * 2
    for int8 in (False, True):
        ops = read_tflite(to_tflite(qgraph, int8=int8)).op_counts()
        assert ops["PRELU"] == 2 and "LEAKY_RELU" not in ops and "MAXIMUM" not in ops


def test_float_matches_torch_on_litert_and_onnxruntime(prelu):
    _, model, graph, _ = prelu
    xs = _xs(8, 2)
    want = model(torch.from_numpy(xs)).detach().numpy()
    lite, ort = LiteRT(to_tflite(graph, int8=False)), OnnxRuntime(to_onnx(graph).SerializeToString())
    tin = read_tflite(to_tflite(graph, int8=False))
    shape = tin.tensors[tin.inputs[0]].shape
    for x, y in zip(xs, want):
        np.testing.assert_allclose(lite.run(to_file_layout(x[None], shape))[0][0], y, atol=1e-5)
        np.testing.assert_allclose(ort.run(x[None])[0][0], y, atol=1e-5)


def test_int8_close_to_torch_on_litert_tflm_and_onnxruntime(prelu):
    _, model, _, qgraph = prelu
    xs = _xs(40, 3)
    want = model(torch.from_numpy(xs)).detach().numpy()
    got, got_onnx = int8_outputs(qgraph, xs)  # and TFLM within 1 LSB of LiteRT's reference
    assert sqnr_db(want, got) > 25 and sqnr_db(want, got_onnx) > 25


def test_arena_estimate_models_the_prelu_kernel(prelu):
    data = to_tflite(prelu[3], int8=True)
    est, measured = estimate_memory(data), measure_arena(data)
    assert not est.unmodelled_ops and measured <= est.arena_bytes <= 1.05 * measured
