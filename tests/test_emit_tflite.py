"""The TFLite emitter's float files and file structure: float vs a torch reference on LiteRT, layouts
without TRANSPOSE, signature / names / buffers / opcodes, and the emitter's contracts (every IR op has a
writer or a reason, clear errors). int8 is in test_emit_tflite_int8.py, zoo models in
test_emit_tflite_zoo.py."""
from __future__ import annotations

import numpy as np
import pytest
from tflite_helpers import GraphBuilder, calibrate, litert, op_names, run_litert, run_reference
from tflite_models import CONV_MODELS, FC_MODELS, calibrated, conv_stack, depthwise_residual, random_feeds

from edgepack.errors import ConfigError, UnsupportedOpError
from edgepack.exporter.emit_tflite import to_tflite
from edgepack.exporter.layout import build_layout
from edgepack.exporter.tflite_builder import BuiltinOp, TfliteBuilder
from edgepack.exporter.tflite_ops import NOT_EMITTED, WRITERS


# Module-scoped: each builder runs and is calibrated once per test file.
@pytest.fixture(scope="module", params=CONV_MODELS + FC_MODELS, ids=lambda f: f.__name__)
def model(request):
    return calibrated(request.param)


# ---- float --------------------------------------------------------------------------------
def test_float_matches_reference(model):
    name, g, ops, samples = model
    data = to_tflite(g, int8=False)
    names = op_names(data)
    for op in ops:
        assert op in names, f"{name}: expected {op} in {names}"
    plan = build_layout(g)
    for s in samples[:5]:
        ref = run_reference(g, s)
        outs = run_litert(data, [plan.to_stored(k, s[k]) for k in g.inputs])
        for o, got in zip(g.outputs, outs):
            want = ref[o]
            got = plan.from_stored(o, got)
            span = float(want.max() - want.min()) or 1.0
            assert np.abs(got - want).max() <= 1e-4 * span, name


# ---- file structure -----------------------------------------------------------------------
def test_conv_models_have_no_transpose_but_where_the_model_transposes(model):
    name, g, _, _ = model
    for int8 in (False, True):
        names = op_names(to_tflite(g, int8=int8))
        expected = 1 if name == "genuine_transpose" else 0
        assert names.count("TRANSPOSE") == expected, f"{name}: {names}"


def test_file_names_signature_and_determinism(model):
    _, g, _, _ = model
    data = to_tflite(g, int8=True)
    assert data == to_tflite(g, int8=True)
    assert data[4:8] == b"TFL3"
    it = litert(data, preserve=True)
    sig = it.get_signature_list()["serving_default"]
    assert sig["inputs"] == sorted(g.inputs) and sig["outputs"] == sorted(g.outputs)
    names = {d["name"] for d in it.get_tensor_details()}
    vanished = {t for n in g.nodes if n.name in build_layout(g).vanished for t in n.inputs + n.outputs}
    missing = [t for t in g.activations() if t not in names and t not in vanished]
    assert not missing, missing
    for d in it.get_tensor_details():
        if d["name"] in g.tensors and not g.tensors[d["name"]].is_const:
            q = g.tensors[d["name"]].quant
            assert d["quantization"] == (pytest.approx(q.scale[0]), q.zero_point[0])


def test_constant_buffers_are_16_byte_aligned_and_buffer_0_is_empty():
    import flatbuffers
    from ai_edge_litert import schema_py_generated as tfl

    g, _ = depthwise_residual()
    calibrate(g, random_feeds(g, 3))
    data = to_tflite(g, int8=True)
    m = tfl.Model.GetRootAs(data, 0)
    assert m.Version() == 3 and m.Buffers(0).DataLength() == 0
    starts = []
    for i in range(1, m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength():
            vec = flatbuffers.number_types.UOffsetTFlags.py_type(b._tab.Offset(4))
            starts.append(b._tab.Vector(vec))
    assert starts and all(s % 16 == 0 for s in starts)


def test_builtin_codes_above_127_use_the_placeholder():
    b = TfliteBuilder()
    t = b.add_tensor("t", (1, 4), "float32")
    b.add_op(BuiltinOp.GELU, [t], [t])
    b.add_op(BuiltinOp.ADD, [t, t], [t])
    codes = b._opcodes
    assert (codes[0].builtinCode, codes[0].deprecatedBuiltinCode) == (BuiltinOp.GELU, 127)
    assert (codes[1].builtinCode, codes[1].deprecatedBuiltinCode) == (BuiltinOp.ADD, BuiltinOp.ADD)


# ---- contracts ----------------------------------------------------------------------------
def test_no_op_has_both_a_writer_and_a_reason():  # that every op has one: tests/test_supported_ops.py
    assert not set(WRITERS) & set(NOT_EMITTED)


@pytest.mark.parametrize("op", sorted(NOT_EMITTED))
def test_not_emitted_ops_raise_a_clear_error(op):
    gb = GraphBuilder()
    x = gb.input("x", (1, 2, 4, 4))
    g = gb.build(gb.conv(x, 2, 3))
    g.tensors["z"] = type(g.tensors[x])("z", (1, 2, 4, 4))
    g.nodes.append(type(g.nodes[0])("gone", op, [g.outputs[0]], ["z"], {}))
    g.outputs = ["z"]
    with pytest.raises(UnsupportedOpError, match="gone"):
        to_tflite(g, int8=False)


def test_bad_io_mode_is_a_config_error():
    g, _ = conv_stack()
    with pytest.raises(ConfigError, match="allowed: int8, float"):
        to_tflite(g, int8=False, io="uint8")
