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
    got, _ = run_artifact((out / "model.int8.onnx").read_bytes(), "onnx", "onnxruntime-ref", x)
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


# ---- rewrites that cannot hurt -----------------------------------------------------------------------
def dead_channel_chain() -> torch.nn.Module:
    """conv1 -> relu -> conv2 (dead output channels) -> relu -> conv3: the dead channels are the first
    layer of an equalisation pair, as in the pointwise convs of a trained MobileNet."""
    model = dead_channel_cnn()
    torch.manual_seed(1)
    return torch.nn.Sequential(*model, torch.nn.Conv2d(8, 4, 1)).eval()


def test_equalize_leaves_dead_channels_alone_and_bounds_its_factors():
    from edgepack.exporter.passes.equalize import MAX_SCALE, equalize

    g = edgepack.load(dead_channel_chain(), input_shape=(1, 3, 10, 10))
    new, changed = equalize(g.copy())
    convs, new_convs = [n for n in g.nodes if n.op == "Conv"], [n for n in new.nodes if n.op == "Conv"]
    assert changed
    np.testing.assert_array_equal(new.const(new_convs[1].inputs[2])[DEAD], g.const(convs[1].inputs[2])[DEAD])
    for old, eq in zip(convs, new_convs):
        ratio = np.abs(new.const(eq.inputs[1]).astype(np.float64)).max(axis=(1, 2, 3)) / \
            np.maximum(np.abs(g.const(old.inputs[1]).astype(np.float64)).max(axis=(1, 2, 3)), 1e-300)
        assert np.all(ratio <= MAX_SCALE * 1.001) and np.all(ratio >= 1 / MAX_SCALE / 1.001)


def test_export_equalize_never_lowers_int8_sqnr_on_dead_channels(tmp_path):
    from edgepack.targets.metrics import sqnr_db

    model = dead_channel_chain()
    x = np.random.default_rng(0).random((32, 3, 10, 10), np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sqnr = {}
    for eq in (False, True):
        rep = edgepack.export(model, calib=x, out=tmp_path / str(eq), input_shape=(1, 3, 10, 10),
                              validate=False, equalize=eq)
        got, _ = run_artifact((tmp_path / str(eq) / "model.int8.tflite").read_bytes(), "tflite", "litert-ref",
                              x, ref.shape)
        sqnr[eq] = sqnr_db(ref, got)
    assert sqnr[True] >= sqnr[False] - 1e-9
    check = rep.calibration["rewrites"][0]
    assert check["rewrite"] == "equalize" and any("equalize" in n for n in rep.notes)


def test_a_rewrite_that_makes_int8_worse_is_reverted():
    from edgepack.calibration.rewrite_check import keep_if_not_worse

    g = edgepack.load(dead_channel_chain(), input_shape=(1, 3, 10, 10))
    bad = g.copy()  # what unguarded equalisation did: a dead channel scaled by 1e15, exact in float
    c2, c3 = [n for n in bad.nodes if n.op == "Conv"][1:]
    for pos, node, axis in ((2, c2, 0), (1, c3, 1)):
        data = bad.const(node.inputs[pos]).astype(np.float64)
        idx = [slice(None)] * data.ndim
        idx[axis] = DEAD[0]
        data[tuple(idx)] *= 1e15 if node is c2 else 1e-15
        bad.tensors[node.inputs[pos]].data = data.astype(np.float32)
    x = np.random.default_rng(0).random((32, 3, 10, 10), np.float32)
    kept, check = keep_if_not_worse(g, bad, x, "equalize")
    assert kept is g and not check.kept and check.sqnr_with_db < check.sqnr_without_db - 10
    assert "reverted" in check.note
