"""Activation ranges far narrower than any signal (random-weight networks whose activations vanish layer by
layer reach 1e-11) get a floor: a scale below ~2.8e-9 makes TFLite Micro refuse a fused RELU6
("no_integer_overflow_from_quantization": 6 / scale overflows int32)."""
import numpy as np
import torch

import edgepack
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.calibration.quantize import QuantRules, quantize_graph
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.ir.quant import MIN_ACTIVATION_RANGE, params_from_range
from edgepack.targets.runtimes import TFLM


def test_a_vanishing_relu6_tensor_still_loads_and_runs_on_tflm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU6(),
                                torch.nn.Conv2d(4, 2, 1), torch.nn.ReLU6()).eval()
    graph = edgepack.load(model, example_input=torch.zeros(1, 1, 8, 8))
    x = np.random.default_rng(0).uniform(0, 1, (8, 1, 8, 8)).astype(np.float32)
    _, ranges = calibrate_graph(graph, load_samples(x, (1, 1, 8, 8)), "minmax")
    first = graph.nodes[0].outputs[0]
    ranges[first] = (0.0, 3e-11)  # what the deep layers of a random-weight MobileNet observe
    qgraph = quantize_graph(graph, ranges, QuantRules())
    assert qgraph.tensors[first].quant.scale[0] >= MIN_ACTIVATION_RANGE / 255 * 0.999
    runtime = TFLM(to_tflite(qgraph, int8=True))  # raised "no_integer_overflow_from_quantization" before
    out = runtime.run(np.zeros(runtime.inputs[0]["shape"], np.int8))[0]
    assert out.shape[-1] == 2


def test_the_floor_leaves_ordinary_ranges_alone():
    assert np.isclose(params_from_range(-1.0, 3.0).scale[0], 4.0 / 255, rtol=1e-6)
    assert np.isclose(params_from_range(0.0, 1e-4).scale[0], 1e-4 / 255, rtol=1e-6)
    assert np.isclose(params_from_range(0.0, 0.0).scale[0], MIN_ACTIVATION_RANGE / 255, rtol=1e-6)
