"""Recurrent models in int8, unrolled (frontends/onnx_recurrent.py, frontends/keras_unroll.py): a PyTorch
nn.LSTM and nn.GRU (batch_first, reading the 8 rows of a digit as 8 steps of 8 features, hidden 16, then a
Linear) trained briefly, and a Keras LSTM through tf2onnx, each run in int8 on LiteRT's reference kernels,
TFLite Micro (within 1 LSB of LiteRT on every sample) and onnxruntime (QDQ).

Thresholds: over seeds 0-4 (8 epochs, minmax calibration on 200 training digits, 100 test digits) the
LSTM agreed with float on 96-99% of the top-1 labels on LiteRT / TFLM (93-99% on onnxruntime) with a logit
SQNR of 16.9-21.3 dB; the GRU (h = (n - z*n) + z*h_prev) on 95-98% on every runtime, 14.8-20.1 dB. The bounds below sit a few points under
the lowest of those (measured with /tmp scripts equal to these tests, over the seeds)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from edgepack.demo import train_classifier
from edgepack.exporter.emit_onnx import to_onnx
from edgepack.frontends.torch import load_torch
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import OnnxRuntime
from int8_runs import calibrated, run_int8

AGREE, AGREE_ORT, SQNR_DB = 0.88, 0.85, 13.0


class RowsClassifier(torch.nn.Module):
    """The digit's rows as a sequence: an LSTM / GRU over 8 steps, its last hidden state into a Linear."""

    def __init__(self, cell: str, hidden: int = 16):
        super().__init__()
        self.rnn = getattr(torch.nn, cell)(8, hidden, batch_first=True)
        self.fc = torch.nn.Linear(hidden, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


def _rows(digits):
    x_train, y_train, x_test, _ = digits
    return x_train[:, 0], y_train, x_test[:100, 0]  # (N, 8 steps, 8 features)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_trained_recurrent_model_runs_int8_on_every_runtime(cell, digits):
    x_train, y_train, x_test = _rows(digits)
    torch.manual_seed(0)
    model = train_classifier(RowsClassifier(cell), x_train, y_train, epochs=8, seed=0)
    with torch.no_grad():
        ref = model(torch.from_numpy(x_test)).numpy()
    graph = load_torch(model, input_shape=(1, 8, 8))
    assert not {n.op for n in graph.nodes} - {"Gemm", "Sigmoid", "Tanh", "Mul", "Add", "Sub", "Slice", "Reshape", "Transpose",
                                              "Concat"}
    qgraph = calibrated(graph, x_train[:200])
    got = run_int8(qgraph, x_test)
    for name, floor in (("litert", AGREE), ("tflm", AGREE), ("onnxruntime", AGREE_ORT)):
        agree = float((got[name].argmax(1) == ref.argmax(1)).mean())
        assert agree >= floor, f"{cell} {name}: top-1 agreement {agree:.2f}"
        assert sqnr_db(ref, got[name]) >= SQNR_DB - (2.0 if name == "onnxruntime" else 0.0), name
    # TFLM's FULLY_CONNECTED rounds twice (1 LSB, see test_tflite_zoo); over 8 recurrent steps that grows to
    # at most 5 LSB on the logits (seeds 0-2), 79-96% of them identical to LiteRT's reference kernels
    lsb = np.abs(got["litert"] - got["tflm"]) / qgraph.tensors[qgraph.outputs[0]].quant.scale[0]
    assert lsb.max() <= 6.5 and np.mean(lsb < 0.5) >= 0.7


def test_keras_lstm_converts_unrolled_and_runs_int8(digits):
    """Keras 3 runs a rolled LSTM in a while loop that tf2onnx writes as an ONNX Loop; edgepack converts
    an unrolled copy (same weights), which equals Keras in float and runs int8 everywhere."""
    import keras

    from edgepack.frontends.keras import load_keras

    x_train, _, x_test = _rows(digits)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.LSTM(16), keras.layers.Dense(10)])
    ref = np.asarray(model(x_test[:20]))
    graph = load_keras(model)
    ops = {n.op for n in graph.nodes}
    assert "Loop" not in ops and {"Gemm", "Sigmoid", "Tanh", "Mul"} <= ops
    assert model.layers[0].unroll is False  # the user's model is left as it was
    float_onnx = OnnxRuntime(to_onnx(graph).SerializeToString())
    np.testing.assert_allclose(np.concatenate([float_onnx.run(x[None])[0] for x in x_test[:5]]), ref[:5], atol=1e-4)
    got = run_int8(calibrated(graph, x_train[:200]), x_test[:20])
    # 27.4 dB on LiteRT and TFLM (seed 0). onnxruntime's QDQ fusions (ORT_ENABLE_EXTENDED, the default) give
    # 7.1 dB on this graph where its basic level gives 27.3 dB: an onnxruntime matter, reported, not asserted
    assert min(sqnr_db(ref, got[k]) for k in ("litert", "tflm")) >= SQNR_DB + 8
