"""Per-layer precision (``layers.<node>.precision``): int16 activations with int8 weights (16x8) where the
target's runtime has the kernels, float where the target runs float (phones, hosts); checked before
calibration, applied to the int8 graph, and its cost on the target estimated with the existing estimators.

    apply_precision(qgraph, {"conv2": "int16"}, profile)   # what a fix ladder calls on a calibrated graph

A tensor is stored at its producer's precision and read through a QUANTIZE / DEQUANTIZE by a consumer of
another one (ir/precision.py), so an int16 layer pays off where its consumers read int16 too: a layer whose
output error matters is set to int16 together with the layers that read it.
"""
from __future__ import annotations

from .errors import ConfigError
from .ir import OPS, Graph, tflite_builtins
from .ir.precision import LAYER_PRECISIONS, PRECISION_ATTR, mixed

# IR ops whose TFLite writers have an int16 path (constant operands, pad values and biases in 16x8 types;
# tests/test_layer_precision.py runs Conv, depthwise Conv, Gemm, Add, Mul, Sigmoid, Tanh, Concat, the global
# pool, Reshape and Softmax on LiteRT, TFLite Micro and onnxruntime; the others share those writers' paths).
# Which runtime has which 16x8 kernel is the measured table exporter/tflite_versions.INT16X8.
WRITTEN_16X8 = ("Conv", "Gemm", "Add", "Sub", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
                "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "Reshape", "Transpose", "Slice", "Concat")
FLOAT_KINDS = ("phone", "host")  # targets whose runtime (LiteRT) runs float kernels next to int8 ones


def int16_refusal(op: str, runtime: str) -> str | None:
    """Why a node of ``op`` cannot run in 16x8 on ``runtime`` (None: it can)."""
    from .exporter.tflite_versions import int16_runtimes

    if op not in WRITTEN_16X8:
        return f"edgepack writes {op} in int8 or float only (16x8: {', '.join(WRITTEN_16X8)})"
    lacking = sorted(b for b in tflite_builtins(op, aux=True) if runtime not in int16_runtimes(b))
    if lacking:
        name = {"tflm": "TFLite Micro", "litert": "LiteRT"}.get(runtime, runtime)
        return f"{name} has no 16x8 kernel for {', '.join(lacking)} (see SUPPORTED_OPS.md)"
    return None


def check_precision(graph: Graph, settings: dict[str, str], profile) -> None:
    """Refuse (one line naming the layer and its op) a precision the target cannot run."""
    ops = {n.name: n.op for n in graph.nodes}
    for node, precision in settings.items():
        where = f"layer '{node}' ({ops.get(node, '?')})"
        if precision not in LAYER_PRECISIONS:
            raise ConfigError(f"precision '{precision}' for {where} is unknown", "layers", LAYER_PRECISIONS)
        if node not in ops:
            raise ConfigError(f"precision: '{node}' is not a node of this model", "layers")
        if precision == "float" and profile.kind not in FLOAT_KINDS:
            raise ConfigError(f"precision float for {where}: target {profile.name} is a {profile.kind} "
                              f"({profile.runtime}, int8/int16 kernels only); float layers run on phone and "
                              "host targets", "layers")
        if precision == "int16":
            why = int16_refusal(ops[node], profile.runtime)
            if why is not None:
                raise ConfigError(f"precision int16 for {where} on target {profile.name}: {why}", "layers")


def layer_precisions(graph: Graph, cfg) -> dict[str, str]:
    """{node: precision} of the nodes the per-layer settings move off int8 (resolved node > op:TYPE)."""
    if not cfg.layers:
        return {}
    chosen = {n.name: cfg.layer(n.name, n.op).precision for n in graph.nodes}
    return {k: v for k, v in chosen.items() if v not in (None, "int8")}


def apply_precision(graph: Graph, settings: dict[str, str], profile=None) -> Graph:
    """Mark the nodes of ``settings`` ({node: "int8" | "int16" | "float"}) on ``graph`` (in place, returned);
    with ``profile``, refuse what its runtime cannot run. The emitters and the simulation read the marks;
    the calibrated QuantParams stay as they are (int16 params are derived from them)."""
    if profile is not None:
        check_precision(graph, settings, profile)
    for node in graph.nodes:
        if node.name in settings:
            if settings[node.name] == "int8":
                node.attrs.pop(PRECISION_ATTR, None)
            else:
                node.attrs[PRECISION_ATTR] = settings[node.name]
    return graph


def precision_cost(qgraph: Graph, profile, io: str = "int8") -> dict | None:
    """The layers off int8 and what they cost on ``profile`` against the all-int8 file: flash, arena and
    estimated latency, from the existing estimators run over both .tflite files (None: all int8)."""
    layers = mixed(qgraph)
    if not layers:
        return None
    from .exporter.emit_tflite import to_tflite
    from .targets.latency_tflite import estimate_latency_tflite
    from .targets.memory import estimate_memory
    from .targets.tflite_file import read_tflite

    int8 = qgraph.copy()
    apply_precision(int8, {name: "int8" for name in layers})
    files = {"int8": to_tflite(int8, int8=True, io=io), "mixed": to_tflite(qgraph, int8=True, io=io)}
    figures = {}
    for kind, data in files.items():
        figures[kind] = {"flash_bytes": len(data), "arena_bytes": estimate_memory(data).arena_bytes,
                         "latency_ms": estimate_latency_tflite(read_tflite(data), profile).total_ms}
    change = {k: figures["mixed"][k] - figures["int8"][k] for k in figures["int8"]}
    return {"layers": {name: {"op": OPS[qgraph.node(name).op].name, "precision": p} for name, p in layers.items()},
            "target": profile.name, "all_int8": figures["int8"], "mixed": figures["mixed"], "change": change}


def report_precision(report, qgraph: Graph, profile, io: str = "int8") -> None:
    """The layers off int8 and their cost, in the report's calibration section and notes."""
    cost = precision_cost(qgraph, profile, io)
    if cost is None:
        return
    report.calibration["precision"] = cost
    chosen = ", ".join(f"{k}: {v['precision']}" for k, v in cost["layers"].items())
    change = cost["change"]
    report.notes.append(f"{len(cost['layers'])} layer(s) off int8 ({chosen}): flash {change['flash_bytes']:+,} B, "
                        f"arena {change['arena_bytes']:+,} B, estimated latency {change['latency_ms']:+.3f} ms "
                        f"on {cost['target']}")


def float_layers_keep_float_bias(qgraph: Graph, bias_deltas: dict[str, list[float]]) -> list[str]:
    """Undo bias correction on the layers marked float (in place on ``qgraph`` and ``bias_deltas``): the
    correction folds the mean error of the int8 layer into its bias, which a float layer no longer makes.
    (An int16 layer keeps it: its weights are still int8.) Returns the bias tensors restored."""
    import numpy as np

    from .ir.precision import node_precision

    restored = []
    for node in qgraph.nodes:
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if node_precision(node) == "float" and bias in bias_deltas:
            t = qgraph.tensors[bias]
            t.data = (np.asarray(t.data, np.float64) + np.asarray(bias_deltas.pop(bias))).astype(t.data.dtype)
            restored.append(bias)
    return restored
