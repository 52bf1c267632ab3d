"""The structure check a .tflite passes before a native runtime sees it (edgepack/targets/tflite_check.py):
each malformed field is refused with one line naming it, and what edgepack writes passes."""
from __future__ import annotations

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from tflite_models import calibrated, pools_and_pads

from edgepack.errors import ModelLoadError
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.targets.tflite_check import MAX_DIM, check_tflite
from edgepack.targets.tflite_file import read_tflite


@pytest.fixture(scope="module")
def seed() -> bytes:
    _, g, _, _ = calibrated(pools_and_pads)
    return to_tflite(g, int8=True)


def _edit(seed: bytes, change) -> bytes:
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(seed, 0))
    change(m, m.subgraphs[0])
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _first(op_name: str, seed: bytes) -> int:
    return next(o.index for o in read_tflite(seed).ops if o.op == op_name)


def _set(obj, field, index, value):
    values = list(getattr(obj, field))
    values[index] = value
    setattr(obj, field, values)


def _weight(seed: bytes) -> int:  # the first conv's weights
    info = read_tflite(seed)
    return next(o.inputs[1] for o in info.ops if o.op == "CONV_2D")


CASES = {
    "output index = tensor count": (
        lambda m, s: _set(s.operators[1], "outputs", 0, len(s.tensors)),
        r"operator 1 \(\w+\) output index (\d+) out of range \(\1 tensors\)"),
    "input index -2": (lambda m, s: _set(s.operators[0], "inputs", 0, -2),
                       r"operator 0 \(\w+\) input index -2 out of range"),
    "buffer index past the end": (lambda m, s: setattr(s.tensors[0], "buffer", len(m.buffers)),
                                  r"tensor 0 \('\w+'\) buffer index \d+ out of range \(\d+ buffers\)"),
    "zero dim": (lambda m, s: _set(s.tensors[0], "shape", 1, 0),
                 rf"tensor 0 \('\w+'\) dim 1 is 0 \(allowed: 1 to {MAX_DIM}\)"),
    "opcode index past the end": (lambda m, s: setattr(s.operators[2], "opcodeIndex", len(m.operatorCodes)),
                                  r"operator 2 opcode index \d+ out of range \(\d+ operator codes\)"),
    "unknown builtin": (lambda m, s: setattr(m.operatorCodes[0], "builtinCode", 4000),
                        r"operator code 0: unknown builtin code 4000"),
    "two subgraphs": (lambda m, s: m.subgraphs.append(s), r"2 subgraphs \(supported: exactly 1\)"),
    "NaN scale": (lambda m, s: _set(s.tensors[0].quantization, "scale", 0, float("nan")),
                  r"tensor 0 \('\w+'\) quantization scale nan \(must be finite and > 0\)"),
    "zero point out of int8": (lambda m, s: _set(s.tensors[0].quantization, "zeroPoint", 0, 200),
                               r"zero point 200 out of the int8 range \[-128, 127\]"),
    "graph output out of range": (lambda m, s: setattr(s, "outputs", [len(s.tensors) + 3]),
                                  r"subgraph 0 output index \d+ out of range"),
    "operators out of order": (lambda m, s: s.operators.reverse(), r"reads tensor \d+ before any operator writes it"),
    "unknown tensor type": (lambda m, s: setattr(s.tensors[0], "type", 5),
                            r"tensor 0 \('\w+'\) has type 5 \(supported: float32"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_malformed_field_is_named(seed, case):
    change, message = CASES[case]
    data = _edit(seed, change)
    with pytest.raises(ModelLoadError, match=message) as err:
        check_tflite(data, "model.tflite")
    assert str(err.value).startswith("model.tflite: ") and "\n" not in str(err.value)


def test_weight_dim_of_2_pow_31_is_refused_before_any_runtime(seed):
    w = _weight(seed)
    data = _edit(seed, lambda m, s: _set(s.tensors[w], "shape", 0, (1 << 31) - 1))
    with pytest.raises(ModelLoadError, match=rf"tensor {w} \('[^']+'\) dim 0 is 2147483647"):
        read_tflite(data)


def test_weights_shorter_than_their_shape_are_refused(seed):
    w = _weight(seed)
    data = _edit(seed, lambda m, s: _set(s.tensors[w], "shape", 0, read_tflite(seed).tensors[w].shape[0] + 1))
    with pytest.raises(ModelLoadError, match=rf"tensor {w} \('[^']+'\) has (\d+) bytes of data but its shape "
                                             r"\(.*\) of int8 needs (\d+)"):
        read_tflite(data)


def test_stride_zero_is_refused(seed):
    conv = _first("CONV_2D", seed)
    data = _edit(seed, lambda m, s: setattr(s.operators[conv].builtinOptions, "strideW", 0))
    with pytest.raises(ModelLoadError, match=rf"operator {conv} \(CONV_2D\) Conv2DOptions StrideW is 0"):
        read_tflite(data)


@pytest.mark.parametrize("content", [b"hello, this is text\n" * 10, b"", b"\x00" * 64,
                                     np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()])
def test_text_or_garbage_is_not_a_model(content):
    with pytest.raises(ModelLoadError, match=r"^x\.tflite: not a TFLite model \(no TFL3 identifier\)$"):
        check_tflite(content, "x.tflite")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_is_refused_in_one_line(seed, keep):
    with pytest.raises(ModelLoadError) as err:
        check_tflite(seed[: int(len(seed) * keep)], "m.tflite")
    assert "\n" not in str(err.value) and str(err.value).startswith("m.tflite: ")


def test_what_edgepack_writes_passes(seed):
    for data in (seed, to_tflite(calibrated(pools_and_pads)[1], int8=False)):
        model = check_tflite(data)
        assert len(model.subgraphs) == 1 and len(model.subgraphs[0].operators) > 5
