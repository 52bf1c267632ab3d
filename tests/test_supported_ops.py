"""SUPPORTED_OPS.md is generated from the op tables and must stay in step with them; every per-op table
another layer owns (frontend rules, torch implementation, both writers, int8 versions, TFLM kernel sizes,
the SUPPORTED_OPS rows) has a row for every op of ir.OPS, and dropping any one row fails a test."""
import importlib.util
import sys
from pathlib import Path

import pytest
from ai_edge_litert import schema_py_generated as tfl

from edgepack.exporter import emit_onnx, tflite_ops, tflite_versions
from edgepack.frontends import onnx_ops
from edgepack.frontends.onnx_patterns import PATTERN_OPS
from edgepack.ir import OPS, tflite_builtins, torch_exec
from edgepack.ir.ops import KINDS
from edgepack.targets import tflm_sizes
from edgepack.targets.profile import COST_KINDS, load_profile

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
    ops_table = text.split("\n## ")[0]  # the int16 section below has tables of its own
    assert ops_table.count("\n| ") == len(OPS) + 1  # the header and one row per IR op


# ---- every per-op table another layer owns covers the op table --------------------------------------
def _all_builtins() -> set[str]:
    return set(tflite_builtins(*OPS, aux=True))


def _missing_frontend():
    return [op for op in OPS if op not in onnx_ops.RULES and op not in _generator().NOT_FROM_ONNX]


def _missing_docs():
    gen = _generator()
    rows = [op for op in OPS if not (gen.from_onnx(op) or op in gen.NOT_FROM_ONNX)]
    return rows + [op for op in tflite_ops.NOT_EMITTED if op not in gen.TFLITE_HOW]


def _missing_tflite_writer():
    return [op for op in OPS if op not in tflite_ops.WRITERS and op not in tflite_ops.NOT_EMITTED
            or op in tflite_ops.WRITERS and not OPS[op].tflite]


def _missing_int8_version():
    return sorted(_all_builtins() - {tfl_name(c) for c in tflite_versions.INT8_VERSION})


def _tflm_builtins() -> set[str]:
    return _all_builtins() & set(load_profile("stm32l4r5").supported_ops)  # what TFLite Micro runs of ours


def _missing_tflm_kernel():
    return sorted(_tflm_builtins() - set(tflm_sizes.KERNELS))


# table -> (module, attribute, the rows it must have, the rows it lacks)
TABLES = {
    "frontend rules (onnx_ops.RULES)": (onnx_ops, "RULES", lambda: set(OPS), _missing_frontend),
    "torch implementation (torch_exec.OP_IMPLS)": (
        torch_exec, "OP_IMPLS", lambda: set(OPS), lambda: [op for op in OPS if op not in torch_exec.OP_IMPLS]),
    "ONNX writer (emit_onnx.WRITERS)": (
        emit_onnx, "WRITERS", lambda: set(OPS), lambda: [op for op in OPS if op not in emit_onnx.WRITERS]),
    "TFLite writer (tflite_ops.WRITERS)": (tflite_ops, "WRITERS", lambda: set(OPS) - set(tflite_ops.NOT_EMITTED),
                                           _missing_tflite_writer),
    "int8 versions (tflite_versions.INT8_VERSION)": (tflite_versions, "INT8_VERSION", _all_builtins,
                                                     _missing_int8_version),
    "TFLM kernel sizes (tflm_sizes.KERNELS)": (tflm_sizes, "KERNELS", _tflm_builtins, _missing_tflm_kernel),
    "SUPPORTED_OPS rows (gen_supported_ops.FROM_ONNX)": (None, "FROM_ONNX", lambda: set(OPS), _missing_docs),
}


def tfl_name(code: int) -> str:
    return {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}[code]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_per_op_table_has_a_row_for_every_op(table):
    assert TABLES[table][3]() == [], f"{table} lacks rows"


@pytest.mark.parametrize("table", sorted(TABLES))
def test_dropping_any_row_of_a_table_is_reported(table, monkeypatch):
    module, attr, required, missing = TABLES[table]
    if module is None:  # the generator is loaded afresh per call: hand out one without the row
        gen = _generator()
        full = dict(gen.FROM_ONNX)
        for op in [op for op in OPS if op in full and not OPS[op].plain_onnx]:
            gen.FROM_ONNX = {k: v for k, v in full.items() if k != op}
            monkeypatch.setattr(sys.modules[__name__], "_generator", lambda: gen)
            assert op in missing(), f"dropping {op} from {table} went unnoticed"
        return
    full = getattr(module, attr)
    rows = [k for k in full if (tfl_name(k) if isinstance(k, int) else k) in required()]
    assert len(rows) == len(required()), table
    for key in rows:
        monkeypatch.setattr(module, attr, {k: v for k, v in full.items() if k != key})
        name = tfl_name(key) if isinstance(key, int) else key
        assert name in missing(), f"dropping {name} from {table} went unnoticed"


def test_op_traits_are_known_values():
    for op, row in OPS.items():
        assert row.kind in KINDS and row.layout in ("spatial", "matrix", "any"), op
        assert row.cost in COST_KINDS or row.cost is None, op
        assert set(row.tflite + row.tflite_aux) <= set(vars(tfl.BuiltinOperator)), op
        assert not row.plain_tflite or len(row.tflite) == 1, op
    listed = {entry.split()[0] for op in OPS for entry in _generator().from_onnx(op)}
    onnx_rules = set(onnx_ops.RULES) - PATTERN_OPS  # Rsqrt: only the Sqrt + Reciprocal pattern makes that node
    assert onnx_rules <= listed, f"frontend rules missing from FROM_ONNX: {sorted(onnx_rules - listed)}"


def test_derived_op_sets_are_the_ones_the_stages_had():
    """The sets the stages used to spell out, now read from the op table (PRelu and Gelu/Rsqrt where they
    belong: a PRelu's slope shrinks with pruned channels, Gelu passes channels through)."""
    from edgepack.exporter.passes.channel_groups import ELEMENTWISE, PASS_THROUGH
    from edgepack.exporter.passes.equalize import HOMOGENEOUS_OPS
    from edgepack.targets.latency_tflite import _POOLING
    assert set(HOMOGENEOUS_OPS) >= {"Relu", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
                                    "Identity", "Dropout"}
    assert {"Add", "Sub", "Mul", "Div"} <= set(ELEMENTWISE)
    assert {"Relu", "Clip", "Resize", "Identity", "Gelu", "MaxPool"} <= set(PASS_THROUGH)
    assert "BatchNormalization" not in PASS_THROUGH and "Softmax" not in PASS_THROUGH
    assert _POOLING == {"MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "SUM", "REDUCE_MAX"}


def test_tflm_column_follows_the_mcu_profile():
    rows = {line.split(" | ")[0].strip("| "): line for line in _generator().render().splitlines()
            if line.startswith("| ") and not line.startswith("| IR op")}
    assert rows["Gelu"].endswith("| no: LiteRT only |")  # TFLite Micro has no GELU kernel
    assert rows["ConvTranspose"].endswith("| yes |") and rows["LayerNormalization"].endswith("| yes |")
    assert rows["Div"].endswith("| yes, except DIV |")
