"""Global average pooling in int8: AVERAGE_POOL_2D (output shares the input's scale) or MEAN (own scale).

A global average is much narrower than its input (a mean of many values), so sharing the input's scale
spends most of the int8 grid on values the output never takes: on a facial-expression CNN that made the
logits 3x coarser than TFLiteConverter's MEAN. MEAN requantizes to its own scale. Which form a target
prefers is its kernel cost, written once in its profile (``global_pool``): XNNPACK takes MEAN int8 and
not AVERAGE_POOL_2D + RESHAPE (phones, hosts); CMSIS-NN has an optimised average pool and TFLM's int8
MEAN is a reference kernel with a scratch buffer (MCUs). The other form is chosen for a node only when
it lowers the model's int8 output error by at least ``MIN_GAIN_DB`` on the calibration samples.

In the IR the MEAN form is a ReduceMean over H and W (keepdims): exact in float, its own QuantParams.
When the pool's only reader is a Reshape/Flatten to (N, C), the ReduceMean drops H and W itself (keepdims 0)
and the Reshape goes: one operator and two tensors fewer in the TFLM arena, the same bytes out (as
TFLiteConverter writes it).
"""
from __future__ import annotations

import json
import logging

import numpy as np

from ..ir import Graph
from .output_error import db_or_none

log = logging.getLogger(__name__)

FORMS = ("average_pool", "mean")
MIN_GAIN_DB = 0.5  # below this the target's preferred kernel wins
MAX_SAMPLES = 64


def as_mean(graph: Graph, names) -> Graph:
    """A copy of ``graph`` with the GlobalAveragePool nodes ``names`` written as ReduceMean over H, W."""
    if not names:
        return graph
    out = graph.copy()
    for node in out.nodes:
        if node.name in names and node.op == "GlobalAveragePool":
            rank = len(out.tensors[node.inputs[0]].shape)
            node.op, node.attrs = "ReduceMean", {**node.attrs, "axes": list(range(2, rank)), "keepdims": 1}
            _absorb_squeeze(out, node)
    return out


def _absorb_squeeze(graph: Graph, mean) -> None:
    """A ReduceMean (keepdims) whose only reader reshapes it to (N, C): keepdims 0 writing the reader's output."""
    src = mean.outputs[0]
    readers = graph.consumers(src)
    if src in graph.outputs or len(readers) != 1 or readers[0].op not in ("Reshape", "Flatten"):
        return
    squeeze, shape = readers[0], graph.tensors[src].shape
    if tuple(graph.tensors[squeeze.outputs[0]].shape) != tuple(shape[:2]):
        return
    mean.attrs["keepdims"] = 0
    mean.outputs = [squeeze.outputs[0]]
    graph.remove_node(squeeze)
    graph.remove_unused()


def global_pools(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes if n.op == "GlobalAveragePool"]


def choose_pool_forms(graph: Graph, x: np.ndarray | None, prefer: str, mean_runs: bool = True,
                      calibration_file: str | None = None, float_values: dict | None = None) -> tuple[Graph, list[dict]]:
    """(graph with the chosen forms, one record per global pool). ``prefer``: the target's form; the
    other one is taken for a node only when the int8 output SQNR on ``x`` gains >= MIN_GAIN_DB.
    ``mean_runs``: the target has a MEAN kernel; ``calibration_file``: the text of a calibration.json whose
    forms are reused (so the file gives the same model). ``float_values``: a dict filled with the float
    Gemm inputs and outputs on ``x[:MAX_SAMPLES]`` when they were computed (the FC weight check reuses them).
    Both forms compute the same float values, so one float run serves every form scored."""
    from .rewrite_check import FloatPass

    pools = global_pools(graph)
    if not pools:
        return graph, []
    if calibration_file is not None:
        graph = forms_from_file(graph, calibration_file)
        return graph, [{"node": n, "form": "average_pool" if n in global_pools(graph) else "mean",
                        "preferred": prefer, "from": "calibration file"} for n in pools]
    if not mean_runs:
        prefer, x = "average_pool", None
    other = FORMS[1 - FORMS.index(prefer)]
    chosen = set(pools) if prefer == "mean" else set()
    records, floats, current_db = [], None, None
    if x is not None and len(x):
        floats = FloatPass(graph, np.asarray(x[:MAX_SAMPLES], np.float32))
        if float_values is not None:
            float_values.update(floats.values)
    for name in pools:
        record = {"node": name, "preferred": prefer, "form": prefer}
        if floats is not None:
            alt = chosen ^ {name}
            if current_db is None:  # the forms chosen so far: scored by the previous pool's step
                current_db = floats.int8_output_sqnr(as_mean(graph, chosen))
            db = {prefer: current_db, other: floats.int8_output_sqnr(as_mean(graph, alt))}
            if db[other] >= db[prefer] + MIN_GAIN_DB:
                chosen, record["form"], current_db = alt, other, db[other]
            record["output_sqnr_db"] = {k: db_or_none(v) for k, v in db.items()}
        records.append(record)
    log.info("global average pools: %s", ", ".join(f"{r['node']} {r['form']}" for r in records))
    return as_mean(graph, chosen), records


def forms_from_file(graph: Graph, text: str) -> Graph:
    """The forms a calibration.json was made with: MEAN where the pool output has its own scale."""
    tensors = json.loads(text).get("tensors", {})
    mean = set()
    for node in graph.nodes:
        if node.op == "GlobalAveragePool":
            out = node.outputs[0]
            if out not in tensors:  # a MEAN that absorbed its reshape to (N, C) wrote the reader's output
                readers = graph.consumers(out)
                out = readers[0].outputs[0] if len(readers) == 1 and readers[0].op in ("Reshape", "Flatten") else out
            a, b = tensors.get(node.inputs[0], {}), tensors.get(out, {})
            if a.get("scale") is not None and b.get("scale") is not None and a["scale"] != b["scale"]:
                mean.add(node.name)
    return as_mean(graph, mean)
