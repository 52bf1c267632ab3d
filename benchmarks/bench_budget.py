"""The zoo check of --accuracy-budget: every classifier of the zoo exported with ``accuracy_budget`` (default
top1:1), per model whether the budget is met, the ladder's steps (kept or dropped, gain, seconds) and the
export's time, and the top-1 agreement with float on a second held-out set the ladder never saw.

Models: the zoo's classifiers (tests/zoo.py minus the dense-output ones), trained as in
tests/test_zoo_coverage.trained (80 Adam steps on the first 1000 training digits, seed 0). Data, all digits
resized to the model's input (zoo.digits_like): calibration = those 1000 training digits; the budget's
measure (``val=``) = the 437 training-split digits the model did not train on (before this branch the ladder
read only --val-limit's 300 of them); the independent check = the 360 digits of the test split, never seen by
the ladder, run through the exported int8 and float .tflite files on LiteRT's reference kernels. Target: stm32l4r5 (the default) unless
--target. Writes benchmarks/results/budget.md and .json (models not run are kept; --tag names the run, e.g.
``before``, so two code versions can sit side by side).

    PYTHONPATH=. python benchmarks/bench_budget.py [--budget top1:1] [--target T] [--tag after] [model ...]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import RESULTS, digits_test_split_like

TRAIN = 1000  # test_zoo_coverage.TRAIN: the digits the models trained on (and calibrate on here)


def classifiers() -> list[str]:
    import zoo
    from test_zoo_coverage import DENSE

    return [n for n in zoo.ZOO_NAMES if n not in DENSE]


def one(name: str, budget: str, target: str) -> dict:
    import torch

    import edgepack
    import zoo
    from edgepack.errors import BudgetExceeded
    from test_zoo_coverage import trained

    torch.set_num_threads(1)
    model, shape = trained(name)
    x = zoo.digits_like(shape, 1437)
    x_test = digits_test_split_like(shape)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "o"
        t0 = time.perf_counter()
        try:
            edgepack.export(model, calib=x[:TRAIN], val=x[TRAIN:], out=out, input_shape=shape, target=target,
                            validate=False, accuracy_budget=budget)
        except BudgetExceeded:
            pass  # the report is written all the same
        seconds = time.perf_counter() - t0
        report = json.loads((out / "report.json").read_text())
        b = report["budget"]
        check = _independent_check(out, x_test)
    steps = [{"step": r["step"], "kept": r.get("kept"), "skipped": r.get("skipped"), "gain": r.get("gain"),
              "measured": r.get("measured"), "seconds": r.get("seconds"), "layers": sorted(r.get("layers", {}))}
             for r in b["steps"]]
    return {"model": name, "budget": budget, "target": target, "met": b["met"], "measured_on": b["measured_on"],
            "start": b["steps"][0]["measured"], "final": b["measured"], "kept": [s["step"] for s in steps[1:]
                                                                              if s["kept"]],
            "steps": steps, "export_seconds": round(seconds, 1), "ladder_seconds": b["seconds"],
            "stopped_by": b.get("stopped_by"), "reproduce": b["reproduce"]["toml"],
            "test_split_top1_lost": check}


def _independent_check(out: Path, x_test) -> float:
    """Top-1 points lost on the test split by the exported int8 .tflite (LiteRT's reference kernels)
    against the exported float .tflite: the files as shipped."""
    from edgepack.targets.io_mapping import dequantize_output, quantize_input, to_file_layout
    from edgepack.targets.runtimes import LiteRT
    from edgepack.targets.tflite_file import read_tflite

    top1 = []
    for kind in ("float", "int8"):
        data = (out / f"model.{kind}.tflite").read_bytes()
        info, lite = read_tflite(data), LiteRT(data, reference=True)
        tin, tout = info.tensors[info.inputs[0]], info.tensors[info.outputs[0]]
        got = []
        for x in x_test:
            x = to_file_layout(x[None], tin.shape)
            if tin.scale:
                x = quantize_input(x, np.dtype(tin.dtype), tin.scale[0], tin.zero_point[0])
            y = lite.run(x)[0]
            if tout.scale:
                y = dequantize_output(y, tout.scale[0], tout.zero_point[0])
            got.append(np.asarray(y).reshape(-1).argmax())
        top1.append(np.asarray(got))
    return round(100.0 * float(np.mean(top1[0] != top1[1])), 3)


def write(rows: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "budget.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["# --accuracy-budget on the zoo's classifiers (benchmarks/bench_budget.py)", "",
             "Budget measured on held-out training-split digits (the fake-quant int8 simulation; 'before': "
             "300 of the 437 given, 'after': all 437); 'test split' = top-1 points lost on the 360 test-split "
             "digits the ladder never saw (the exported int8 .tflite against the float one, LiteRT reference "
             "kernels). Command: `PYTHONPATH=. python benchmarks/bench_budget.py --tag after`.", ""]
    for tag, runs in sorted(rows.items()):
        lines += [f"## {tag}", "", "| model | met | start lost | final lost | test split lost | steps kept "
                  "(top-1 gain, dB gain) | ladder s | export s |", "|---|---|---|---|---|---|---|---|"]
        for name, r in sorted(runs.items()):
            kept = ", ".join(f"{s['step']} ({s['gain'].get('top1_points')}, {s['gain'].get('sqnr_db')})"
                             for s in r["steps"] if s["kept"] and s["step"] != "start") or "none"
            lines.append(f"| {name} | {'yes' if r['met'] else '**no**'} | {r['start'].get('top1_points_lost')} | "
                         f"{r['final'].get('top1_points_lost')} | {r['test_split_top1_lost']} | {kept} | "
                         f"{r['ladder_seconds']} | {r['export_seconds']} |")
        met = sum(r["met"] for r in runs.values())
        lines += ["", f"Met on {met} of {len(runs)}.", ""]
    if {"before", "after"} <= set(rows):
        lines += _side_by_side(rows["before"], rows["after"])
    (RESULTS / "budget.md").write_text("\n".join(lines))


def _side_by_side(before: dict, after: dict) -> list[str]:
    """before / after: top-1 points lost (ladder's measure; test split) and whether the budget was met."""
    lines = ["## before -> after", "", "| model | met | final lost (measured) | test split lost | export s |",
             "|---|---|---|---|---|"]
    for name in sorted(set(before) & set(after)):
        b, a = before[name], after[name]
        lines.append(f"| {name} | {_yes(b['met'])} -> {_yes(a['met'])} | {b['final'].get('top1_points_lost')} "
                     f"({b['measured_on'].split(' samples')[0]}) -> {a['final'].get('top1_points_lost')} "
                     f"({a['measured_on'].split(' samples')[0]}) | {b['test_split_top1_lost']} -> "
                     f"{a['test_split_top1_lost']} | {b['export_seconds']} -> {a['export_seconds']} |")
    return lines + [""]


def _yes(met: bool) -> str:
    return "yes" if met else "**no**"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--budget", default="top1:1")
    ap.add_argument("--target", default="stm32l4r5")
    ap.add_argument("--tag", default="after")
    args = ap.parse_args(argv)
    path = RESULTS / "budget.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for name in args.models or classifiers():
        row = one(name, args.budget, args.target)
        rows.setdefault(args.tag, {})[name] = row
        print(name, "met" if row["met"] else "NOT met", row["start"], "->", row["final"], row["kept"],
              f"{row['export_seconds']} s, test split lost {row['test_split_top1_lost']}", flush=True)
        write(rows)


if __name__ == "__main__":
    main()
