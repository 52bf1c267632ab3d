"""Grouped convolution (torch nn.Conv2d(groups=2, 4), neither plain nor depthwise): written as one SLICE
+ CONV_2D per group and one CONCATENATION (TFLM's CMSIS-NN CONV_2D has no grouped form), float equal
to torch, int8 close to torch on LiteRT, TFLite Micro and the QDQ .onnx."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import edgepack
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.memory import estimate_memory, measure_arena
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.tflite_file import read_tflite
from int8_runs import calibrated, run_float, run_int8

SHAPE = (1, 4, 8, 8)


def _xs(n, seed):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE[1:])).astype(np.float32)


@pytest.fixture(scope="module")
def grouped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4), nn.ReLU(),
                          nn.Conv2d(8, 4, 1)).eval()
    graph = edgepack.load(model, input_shape=SHAPE)
    return model, graph, calibrated(graph, _xs(64, 1))


def test_each_group_is_one_conv_2d_between_slices_and_a_concatenation(grouped):
    _, graph, qgraph = grouped
    assert [n.attrs["group"] for n in graph.nodes if n.op == "Conv"] == [2, 4, 1]
    for g, int8 in ((graph, False), (qgraph, True)):
        assert read_tflite(to_tflite(g, int8=int8)).op_counts() == {"SLICE": 6, "CONV_2D": 7, "CONCATENATION": 2,
                                                                  "PAD": 1}  # stride 2, pads 1: explicit


def test_float_matches_torch(grouped):
    model, graph, _ = grouped
    xs = _xs(8, 2)
    want = model(torch.from_numpy(xs)).detach().numpy()
    for name, got in run_float(graph, xs).items():
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=name)


def test_int8_close_to_torch_on_litert_tflm_and_onnxruntime(grouped):
    model, _, qgraph = grouped
    xs = _xs(40, 3)
    want = model(torch.from_numpy(xs)).detach().numpy()
    got = run_int8(qgraph, xs)
    np.testing.assert_array_equal(got["litert"], got["tflm"])  # TFLM = LiteRT's reference kernels
    for name, y in got.items():
        assert sqnr_db(want, y) > 30, name


def test_arena_estimate_covers_the_split(grouped):
    data = to_tflite(grouped[2], int8=True)
    est, measured = estimate_memory(data), measure_arena(data)
    assert not est.unmodelled_ops and measured <= est.arena_bytes <= 1.05 * measured
