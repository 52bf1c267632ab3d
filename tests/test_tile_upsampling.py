"""Tile: a nearest upsampling spelled Reshape + Tile + Reshape (UpSampling2D saved as repeats, NCHW or
NHWC) is read as one Resize; any other Tile with constant repeats as a Concat of copies. Float equal to
onnxruntime, int8 close to it on LiteRT, TFLite Micro (bit-exact with LiteRT's reference kernels) and the
QDQ .onnx."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgepack
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.metrics import sqnr_db
from edgepack.targets.runtimes import OnnxRuntime
from edgepack.targets.tflite_file import read_tflite
from int8_runs import calibrated, run_float, run_int8

N = helper.make_node


def _model(shape, nodes, inits):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv(name, x, y, c_in, c_out, seed):
    w = np.random.default_rng(seed).standard_normal((c_out, c_in, 3, 3)).astype(np.float32) * 0.3
    return N("Conv", [x, name], [y], pads=[1, 1, 1, 1]), {name: w}


def _upsample_nchw():
    conv, w = _conv("w", "x", "c", 3, 4, 0)
    nodes = [conv, N("Reshape", ["c", "s6"], ["r6"]), N("Tile", ["r6", "reps"], ["t"]),
             N("Reshape", ["t", "s4"], ["u"]), N("Relu", ["u"], ["y"])]
    inits = {**w, "s6": np.array([1, 4, 5, 1, 5, 1], np.int64), "reps": np.array([1, 1, 1, 2, 1, 3], np.int64),
             "s4": np.array([1, 4, 10, 15], np.int64)}
    return _model((1, 3, 5, 5), nodes, inits), {"Conv": 1, "Resize": 1, "Relu": 1}


def _upsample_nhwc():
    """tf2onnx's spelling inside an NHWC region: Transpose out of the conv, repeats on H and W, back."""
    conv, w = _conv("w", "x", "c", 3, 4, 1)
    nodes = [conv, N("Transpose", ["c"], ["h"], perm=[0, 2, 3, 1]), N("Reshape", ["h", "s6"], ["r6"]),
             N("Tile", ["r6", "reps"], ["t"]), N("Reshape", ["t", "s4"], ["u"]),
             N("Transpose", ["u"], ["v"], perm=[0, 3, 1, 2]), N("Relu", ["v"], ["y"])]
    inits = {**w, "s6": np.array([1, 5, 1, 5, 1, 4], np.int64), "reps": np.array([1, 1, 2, 1, 2, 1], np.int64),
             "s4": np.array([1, 10, 10, 4], np.int64)}
    # the model's two Transposes and the two around the Resize stay in the IR; none is written to the .tflite
    return _model((1, 3, 5, 5), nodes, inits), {"Conv": 1, "Resize": 1, "Relu": 1, "Transpose": 4}


def _tile_channels():
    conv, w = _conv("w", "x", "c", 3, 2, 2)
    nodes = [conv, N("Tile", ["c", "reps"], ["y"])]
    return _model((1, 3, 5, 5), nodes, {**w, "reps": np.array([1, 3, 1, 2], np.int64)}), {"Conv": 1, "Concat": 2}


def _tile_many():
    """12 copies on one axis (an LSTM autoencoder repeating its code over the frames): TFLite Micro's
    CONCATENATION takes at most 10 inputs, so the copies are joined in chunks."""
    conv, w = _conv("w", "x", "c", 3, 2, 3)
    nodes = [conv, N("Tile", ["c", "reps"], ["y"])]
    return _model((1, 3, 5, 5), nodes, {**w, "reps": np.array([1, 1, 12, 1], np.int64)}), {"Conv": 1, "Concat": 3}


CASES = {"upsampling NCHW": _upsample_nchw, "upsampling NHWC": _upsample_nhwc, "Tile channels, W": _tile_channels,
         "Tile 12 copies": _tile_many}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model, counts = CASES[request.param]()
    xs = np.random.default_rng(3).standard_normal((24, 3, 5, 5)).astype(np.float32)
    want = np.concatenate([OnnxRuntime(model.SerializeToString()).run(x[None])[0] for x in xs])
    return request.param, model, counts, xs, want


def test_read_as_resize_or_concat(case):
    name, model, counts, _, _ = case
    graph = edgepack.load(model)
    assert graph.op_counts() == counts, name
    ops = read_tflite(to_tflite(graph, int8=False)).op_counts()
    assert "TRANSPOSE" not in ops and "TILE" not in ops


def test_float_and_int8_match_onnxruntime(case):
    name, model, _, xs, want = case
    graph = edgepack.load(model)
    for runtime, got in run_float(graph, xs[:4]).items():
        np.testing.assert_allclose(got, want[:4], rtol=1e-5, atol=1e-5, err_msg=f"{name} on {runtime}")
    got = run_int8(calibrated(graph, xs), xs)
    np.testing.assert_array_equal(got["tflm"], got["litert"])
    for runtime, y in got.items():
        assert sqnr_db(want, y) > 30, f"{name} on {runtime}: {sqnr_db(want, y):.1f} dB"
