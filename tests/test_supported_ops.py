"""SUPPORTED_OPS.md is generated from the op tables and must stay in step with them."""
import importlib.util
from pathlib import Path

from ai_edge_litert import schema_py_generated as tfl

from edgepack.exporter.tflite_ops import NOT_EMITTED, WRITERS
from edgepack.frontends.onnx_ops import RULES
from edgepack.frontends.onnx_patterns import PATTERN_OPS
from edgepack.ir import OPS

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_supported_ops", ROOT / "tools" / "gen_supported_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_supported_ops_md_is_up_to_date():
    text = (ROOT / "SUPPORTED_OPS.md").read_text()
    assert text == _generator().render(), "SUPPORTED_OPS.md is out of date: run .venv/bin/python " \
                                          "tools/gen_supported_ops.py"
    assert text.count("\n| ") == len(OPS) + 1  # the header and one row per IR op


def test_every_op_and_every_onnx_rule_has_its_row():
    gen = _generator()
    assert set(gen.FROM_ONNX) == set(OPS) == set(gen.TO_TFLITE)
    listed = {entry.split()[0] for entries in gen.FROM_ONNX.values() for entry in entries}
    onnx_rules = set(RULES) - PATTERN_OPS  # Rsqrt: only the Sqrt + Reciprocal pattern makes that node
    assert onnx_rules <= listed, f"frontend rules missing from FROM_ONNX: {sorted(onnx_rules - listed)}"
    assert all(gen.FROM_ONNX[op] or op in gen.NOT_FROM_ONNX for op in OPS)
    builtins = {b for names, _ in gen.TO_TFLITE.values() for b in names}
    assert builtins <= set(vars(tfl.BuiltinOperator)), sorted(builtins - set(vars(tfl.BuiltinOperator)))
    # an op the TFLite emitter writes lists its builtins; one it leaves to the passes says why
    assert all(gen.TO_TFLITE[op][0] for op in WRITERS)
    assert all(gen.TO_TFLITE[op][1] for op in NOT_EMITTED)


def test_tflm_column_follows_the_mcu_profile():
    rows = {line.split(" | ")[0].strip("| "): line for line in _generator().render().splitlines()
            if line.startswith("| ") and not line.startswith("| IR op")}
    assert rows["Gelu"].endswith("| no: LiteRT only |")  # TFLite Micro has no GELU kernel
    assert rows["ConvTranspose"].endswith("| yes |") and rows["LayerNormalization"].endswith("| yes |")
    assert rows["Div"].endswith("| yes, except DIV |")
