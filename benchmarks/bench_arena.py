"""TFLite Micro's real tensor arena of edgepack's int8 .tflite: the graph's operator order, the live-bytes
order (exporter/schedule.py, what export writes when edgepack's arena estimate is lower), the same with the
offline plan (--arena-plan offline; auto, the default, takes it on TFLM targets), the lower bound of any plan, and for Keras models TFLiteConverter's file
of the same model (same calibration samples). The arena is measured by bisection on the tflite_micro wheel
(targets/arena_probe.py).

    .venv/bin/python benchmarks/bench_arena.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import machine, md_table, write_results


def _cases(quick: bool):
    """(name, model, input shape NCHW or None for Keras, Keras model or None)."""
    import keras_zoo
    import zoo
    from keras_models import mobilenet_keras

    names = ["resnet", "mobilenet_v2"] if quick else zoo.ZOO_NAMES
    for name in names:
        model, shape = zoo.build(name)
        yield name, model, shape, None
    keras_models = {"keras_cnn": keras_zoo.keras_cnn(), "mobilenet_keras32": mobilenet_keras(32)}
    if not quick:
        keras_models.update({c: keras_zoo.layer_case(c) for c in keras_zoo.LAYER_CASES})
    for name, km in keras_models.items():
        yield name, km, None, km


def _export(model, shape, x, out: Path, graph_order: bool, plan: str) -> bytes:
    import edgepack
    from edgepack.exporter import schedule

    saved = schedule.memory_order
    if graph_order:
        schedule.memory_order = lambda graph: list(graph.nodes)
    try:
        kwargs = {"input_shape": shape} if shape is not None else {}
        report = edgepack.export(model, calib=x, out=out, force=True, validate=False, calibration="minmax",
                                 bias_correction="off", arena_plan=plan, **kwargs)
    finally:
        schedule.memory_order = saved
    return Path(report.artifacts["int8_tflite"]["path"]).read_bytes()


def _arena(data: bytes):
    from edgepack.errors import EdgepackError
    from edgepack.targets.arena_probe import measure_arena

    try:
        return measure_arena(data)
    except EdgepackError as exc:  # TFLM lacks a kernel (GELU...): no measurement
        return f"not run ({str(exc).split(':')[0][:40]})"


def _op_sequence(data: bytes) -> list:
    """The operators and their output shapes, in file order (Keras exports differ run to run in names)."""
    from edgepack.targets.tflite_file import read_tflite

    info = read_tflite(data)
    return [(o.op, [tuple(info.tensors[i].shape) for i in o.outputs]) for o in info.ops]


def main(argv=None) -> int:
    from bench_tflite_converter import convert_with_tflite_converter
    from edgepack.targets.memory import estimate_memory

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rows, data = [], {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, shape, keras_model in _cases(args.quick):
            in_shape = shape if shape is not None else (1, *keras_model.input_shape[1:])
            x = rng.random((32, *in_shape[1:]), np.float32)
            files = {k: _export(model, shape, x, Path(tmp) / name / k, g, p)
                     for k, g, p in (("graph_order", True, "runtime"), ("chosen_order", False, "runtime"),
                                     ("chosen_offline", False, "offline"))}
            if keras_model is not None:
                files["converter"] = convert_with_tflite_converter(keras_model, x)
            arena = {k: _arena(v) for k, v in files.items()}
            bound = estimate_memory(files["chosen_order"]).lower_bound_bytes
            data[name] = {"arena": arena, "lower_bound": bound,
                          "order_changed": _op_sequence(files["graph_order"]) != _op_sequence(files["chosen_order"])}
            best = arena["chosen_offline"]
            conv = arena.get("converter", "")
            ratio = f"{best / conv:.3f}" if isinstance(best, int) and isinstance(conv, int) else ""
            rows.append([name, arena["graph_order"], arena["chosen_order"], best, bound, conv, ratio,
                         "yes" if data[name]["order_changed"] else ""])
            print(rows[-1], flush=True)
    table = md_table(["model", "graph order", "live-bytes order", "+ offline plan (default: TFLM targets)", "lower bound",
                      "TFLiteConverter", "offline / converter", "order changed"], rows)
    print(table)
    if args.quick:
        return 0
    text = ("# TFLite Micro arena (bytes) of the int8 .tflite\n\nMeasured by bisection on the tflite_micro wheel "
            "(targets/arena_probe.py); zoo models (tests/zoo.py) and Keras models (tests/keras_zoo.py, "
            "benchmarks/keras_models.py), 32 random calibration samples, minmax. The lower bound is the "
            "largest set of tensors alive at once (targets/memory.py). TFLiteConverter only for Keras "
            "models (it takes no PyTorch model). The offline plan is what a TFLM target gets by default "
            f"(--arena-plan auto).\n\n{table}\n\n    .venv/bin/python benchmarks/bench_arena.py\n")
    write_results("arena", {"machine": machine(), "models": data}, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
