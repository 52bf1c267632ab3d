"""int8 that never breaks silently: dead channels (weights ~1e-30, bias != 0) keep their constant output
instead of a saturated int32 bias, and the emitters refuse a saturated bias as a bug."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgepack
from edgepack.calibration.calibrate import collect_ranges
from edgepack.calibration.quantize import quantize_graph
from edgepack.exporter.emit_onnx_qdq import to_onnx_qdq
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.ir import QuantParams
from edgepack.ir.quant import INT_RANGES, QuantizationBug
from edgepack.targets.validate import run_artifact

DEAD = [1, 4, 6]  # output channels of conv2 with weights 1e-30 and bias 0.3


def dead_channel_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU()).eval()
    with torch.no_grad():
        model[2].weight[DEAD] = 1e-30
        model[2].bias[DEAD] = 0.3
    return model


def file_biases(data: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """int32 constant name -> (values, scales) read straight from the .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    sub, out = model.Subgraphs(0), {}
    for k in range(sub.TensorsLength()):
        t = sub.Tensors(k)
        buf = model.Buffers(t.Buffer())
        if t.Type() == schema.TensorType.INT32 and buf.DataLength() and t.Quantization() is not None:
            out[t.Name().decode()] = (buf.DataAsNumpy().view(np.int32), t.Quantization().ScaleAsNumpy())
    return out


@pytest.fixture(scope="module")
def dead_export(tmp_path_factory):
    model = dead_channel_cnn()
    x = np.random.default_rng(0).random((32, 3, 10, 10), np.float32)
    out = tmp_path_factory.mktemp("dead")
    edgepack.export(model, calib=x, out=out, input_shape=(1, 3, 10, 10), validate=False)
    return model, x, out


def test_dead_channels_keep_their_constant_output_within_one_lsb(dead_export):
    model, x, out = dead_export
    data = (out / "model.int8.tflite").read_bytes()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got, raw = run_artifact(data, "tflite", "litert-ref", x, ref.shape)
    from edgepack.targets.tflite_file import read_tflite

    info = read_tflite(data)
    step = info.tensors[info.outputs[0]].scale[0]
    np.testing.assert_allclose(ref[:, DEAD], 0.3, atol=1e-6)  # the float channels are the constant
    assert np.max(np.abs(got[:, DEAD] - ref[:, DEAD])) <= step * 1.0001
    biases = file_biases(data)
    assert biases, "the file has int32 biases"
    for name, (q, _) in biases.items():
        assert np.max(np.abs(q.astype(np.int64))) < INT_RANGES["int32"][1], name  # nothing saturated


def test_the_onnx_twin_keeps_the_dead_channels_too(dead_export):
    model, x, out = dead_export
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got, _ = run_artifact((out / "model.int8.onnx").read_bytes(), "onnx", "onnxruntime", x)
    assert np.max(np.abs(got[:, DEAD] - 0.3)) < 0.3 / 100  # within the output's int8 step


def test_both_emitters_refuse_a_saturated_bias(dead_export):
    model, x, _ = dead_export
    g = edgepack.load(model, input_shape=(1, 3, 10, 10))
    ranges, _ = collect_ranges(g, [x])
    q = quantize_graph(g, ranges)
    conv = [n for n in q.nodes if n.op == "Conv"][1]
    w, b = q.tensors[conv.inputs[1]], q.tensors[conv.inputs[2]]
    tiny = np.array(w.quant.scale)
    tiny[DEAD] = 1e-30 / 127  # what the weights alone would ask for
    w.quant = QuantParams.per_channel(tiny, 0)
    b.quant = QuantParams.per_channel(tiny * q.tensors[conv.inputs[0]].quant.scale[0], 0, "int32")
    with pytest.raises(QuantizationBug, match="saturates on 3 channel"):
        to_tflite(q, int8=True)
    with pytest.raises(QuantizationBug, match="saturates on 3 channel"):
        to_onnx_qdq(q)
