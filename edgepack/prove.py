"""The proving step shared by `export` and `validate`: run the artifacts on the target's runtimes,
measure per-layer error, memory and latency against the target profile, and give a verdict."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .report import Report
from .report_sections import Latency, Memory, Verdict

log = logging.getLogger(__name__)

SQNR_WARN_DB = 25.0  # below this a layer visibly hurts int8 accuracy on classification models
LAYER_SAMPLES = {"fast": 16, "full": 32}  # samples of the per-layer error (compared as they are produced)


def reference_outputs(float_model: Path, samples: np.ndarray) -> np.ndarray:
    """Float outputs of the reference model (.onnx on onnxruntime, or a float .tflite on LiteRT)."""
    from .targets.validate import run_artifact

    kind = "onnx" if str(float_model).endswith(".onnx") else "tflite"
    runtime = "onnxruntime" if kind == "onnx" else "litert-ref"
    outs, _ = run_artifact(Path(float_model).read_bytes(), kind, runtime, samples, where=str(float_model))
    return outs


def check_accuracy(report: Report, artifacts: dict[str, Path], samples: np.ndarray, labels, reference,
                   runtime: str | None, progress=None, mode: str = "full", arch: str = "") -> None:
    from .targets.validate import validate

    report.validation = validate({k: str(v) for k, v in artifacts.items()}, samples, labels=labels,
                                 reference=reference, target_runtime=runtime, progress=progress, mode=mode,
                                 target_arch=arch)


def layer_of(node_name: str) -> str:
    """The source model's layer a node belongs to: the path component before the op
    (``/features/features.0/Conv`` -> ``features.0``, ``functional/conv2d/convolution`` -> ``conv2d``, the
    Keras frontend puts the layer names there); a node name without a path is the layer's name."""
    parts = [p for p in node_name.split("/") if p]
    return parts[-2] if len(parts) > 1 else node_name


def name_layers(rows: list[dict], graph) -> None:
    """Each row gets the IR node that computes its tensor (``node``) and that node's layer in the source
    model (``layer``): the layer that computes the tensor, also when a fused activation named it."""
    for row in rows:
        node = graph.producer(row["tensor"]) if row["tensor"] in graph.tensors else None
        if node is not None:
            row["node"], row["layer"] = node.name, layer_of(node.name)


def check_layers(report: Report, int8_tflite: Path, float_tflite: Path, samples: np.ndarray,
                 graph=None, progress=None) -> None:
    from .targets.validate import per_layer_sqnr

    from .targets.diagnose import const_arrays, diagnose
    from .targets.tflite_file import read_tflite

    data = int8_tflite.read_bytes()
    result = per_layer_sqnr(data, float_tflite.read_bytes(), samples,
                            where=f"{int8_tflite} (per-layer error against {float_tflite})", progress=progress)
    info, consts = read_tflite(data), const_arrays(data)
    producers = {o: op for op in info.ops for o in op.outputs}
    index = {t.name: t.index for t in info.tensors}
    advice = []
    for row in result["worst"]:
        if row["sqnr_db"] < SQNR_WARN_DB:  # a diagnosis from the file and the data, with the fix to apply
            row["diagnosis"] = diagnose(row, producers.get(index.get(row["tensor"])), info, consts)
            advice.append(f"{row['op']} '{row['tensor']}' has {row['sqnr_db']:.1f} dB SQNR: "
                          + "; ".join(f"{d['cause']} ({d['detail']}): {d['fix']}" for d in row["diagnosis"]))
    result["advice"] = advice
    if graph is not None:  # export has the graph; validate of a bare file leaves the names out
        name_layers(result["layers"], graph)
        name_layers(result["worst"], graph)
    report.per_layer = result


def check_target(report: Report, int8_tflite: Path, profile, graph=None, measure_arena: bool = True) -> None:
    """Memory, latency, op support and the verdict for ``profile``."""
    from .errors import UnsupportedOpError
    from .targets.compat import unsupported_ops
    from .targets.memory import estimate_memory, measure_arena
    from .targets.tflite_file import read_tflite

    data = int8_tflite.read_bytes()
    info = read_tflite(data)
    est = estimate_memory(data)  # the bytes: an offline plan and op flags are read from them
    memory = Memory(flash_bytes=len(data), flash_budget=profile.flash_bytes, ram_bytes=est.arena_bytes,
                    ram_budget=profile.ram_bytes, arena_estimate=est.arena_bytes,
                    arena_lower_bound=est.lower_bound_bytes)
    unsupported = unsupported_ops(info, profile)
    if measure_arena and profile.runtime == "tflm":
        try:
            memory.arena_measured_tflm = measure_arena(data, str(int8_tflite))  # in a child process
            memory.ram_bytes = memory.arena_measured_tflm
        except UnsupportedOpError as exc:  # the TFLM build lacks a kernel: name it, keep the estimate
            if not any(u["op"] == exc.op for u in unsupported):
                unsupported.append({"op": exc.op, "node": exc.node,
                                    "reason": "TensorFlow Lite Micro (this build) has no kernel for it"})
            report.notes.append(f"TFLite Micro cannot load the model (no {exc.op} kernel, node '{exc.node}'): "
                                "RAM is edgepack's arena estimate, not a TFLM measurement")
    report.memory = memory
    if graph is not None:
        from .targets.latency import estimate_latency

        lat = estimate_latency(graph, profile)
    else:  # a .tflite made elsewhere: the same cost model over the file's operators
        from .targets.latency_tflite import estimate_latency_tflite

        lat = estimate_latency_tflite(info, profile)
    report.latency = Latency(target=profile.name, total_ms=lat.total_ms, cost_model=lat.cost_model,
                             per_op_type_ms=dict(lat.per_op))
    if profile.kind in ("phone", "host"):
        from .targets.isolated import litert_latency

        measured = litert_latency(data, profile.threads, where=str(int8_tflite))  # in the runtime child process
        report.latency.measured_here_ms = measured["ms"]
        report.latency.not_taken_by_xnnpack = measured["undelegated"]
    if profile.energy is not None:
        from .targets.energy import estimate_energy
        from .targets.tflite_file import op_macs

        macs = sum(op_macs(o, info.tensors) for o in info.ops)
        from .targets.profile import list_profiles

        report.energy = {"target": profile.name, **estimate_energy(info, macs, profile.energy),
                         "latency_ms": lat.total_ms,
                         "by_target_uj": {p.name: estimate_energy(info, macs, p.energy)["total_uj"]
                                          for p in list_profiles() if p.energy is not None}}
    report.compatibility = {"target": profile.name, "unsupported": unsupported}
    report.verdict = verdict(memory, unsupported, profile)


def verdict(memory: Memory, unsupported: list[dict], profile) -> Verdict:
    messages, overflows = [], []
    for what, used_key, budget_key in (("flash", "flash_bytes", "flash_budget"), ("RAM (tensor arena)", "ram_bytes",
                                                                                 "ram_budget")):
        used, budget = getattr(memory, used_key), getattr(memory, budget_key)
        if used > budget:
            overflows.append(what)
            messages.append(f"{what}: {_kib(used)} does not fit in {_kib(budget)}: over by {_kib(used - budget)}")
        else:
            messages.append(f"{what}: {_kib(used)} of {_kib(budget)} ({100 * used / budget:.1f}%), "
                            f"margin {_kib(budget - used)}")
    for u in unsupported:
        messages.append(f"unsupported op {u['op']} at '{u['node']}': {u['reason']}")
    return Verdict(fits=not overflows and not unsupported, overflows=overflows, messages=messages,
                   target=profile.name)


def _kib(n: float) -> str:
    return f"{n / 1024:.1f} KiB"


def finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None
