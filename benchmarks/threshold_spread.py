"""Spread of the numbers the training tests assert on, over seeds and CPU kernel variations, so that each
threshold can sit below the measured worst case with a margin (issue 11: a suite green on every x86-64).

Every run is a child process (the kernel choice is fixed when torch loads) that computes, with the tests'
own helpers, what the tests assert on, for one training seed, under one variation:

    default-1t    the CPU's best kernels, one torch thread (what the suite runs: tests/conftest.py)
    default-2t    the same with two threads
    avx2-1t/-2t   ONEDNN_MAX_CPU_ISA=AVX2: oneDNN's convolutions limited to AVX2 (a machine without AVX-512)
    aten-avx2-1t  ATEN_CPU_CAPABILITY=avx2 as well: torch's own vectorised kernels limited to AVX2
    aten-default-1t  ATEN_CPU_CAPABILITY=default: no vectorisation in torch's own kernels

    nice -n 10 .venv/bin/python benchmarks/threshold_spread.py                 # 5 seeds x 5 variations
    .venv/bin/python benchmarks/threshold_spread.py --seeds 1 --variations default-1t --groups finetune

Writes results/threshold_spread.json (every number) and results/threshold_spread.md (min / mean / max per
metric per variation). Runs one child at a time: the machines are shared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, RESULTS, machine, md_table

VARIATIONS = {
    "default-1t": ({}, 1),
    "default-2t": ({}, 2),
    "avx2-1t": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1),
    "avx2-2t": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 2),
    "aten-avx2-1t": ({"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}, 1),
    "aten-default-1t": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
}
DEFAULT_VARIATIONS = ["default-1t", "default-2t", "avx2-1t", "avx2-2t", "aten-avx2-1t"]
ZOO_HELD_OUT = (100, 437)  # the zoo test's held-out digits before this study, and all there are


def zoo_coverage(seed: int, tmp: Path) -> dict:
    """tests/test_zoo_coverage.py: int8 vs float top-1 agreement (SQNR for dense outputs) per zoo model."""
    import zoo
    from test_zoo_coverage import agreement_of, float_and_int8_outputs

    out = {}
    for name in zoo.ZOO_NAMES:
        outputs = float_and_int8_outputs(name, seed, max(ZOO_HELD_OUT))
        for n in ZOO_HELD_OUT:
            for key, value in agreement_of(name, *(o[:n] for o in outputs)).items():
                out[f"{name}.{key}@{n}"] = value
    return out


def shrink(seed: int, tmp: Path) -> dict:
    """tests/test_shrink_acceptance.py: int8 accuracy drop vs the original float model after prune /
    separable + distillation, and TFLM vs LiteRT accuracy of the pruned model."""
    from test_shrink_acceptance import export_shrunk, train_cnn32

    cnn = train_cnn32(seed)
    out = {}
    for kind, options in (("prune", {"prune": 0.5}), ("separable", {"separable": "auto"})):
        report = export_shrunk(tmp / kind, cnn, **options)
        vs = report.shrink["int8_tflite_vs_original_float"]
        out[f"{kind}.reference_accuracy"] = vs["reference_accuracy"]
        out[f"{kind}.drop"] = vs["reference_accuracy"] - vs["accuracy"]
        out[f"{kind}.macs_ratio"] = report.shrink["macs_ratio"]
        if kind == "prune":
            out["prune.tflm_minus_litert"] = abs(report.validation["int8_tflite@tflm"]["accuracy"] - vs["accuracy"])
        else:
            out["separable.replaced"] = len(report.shrink["separable_nodes"])
    return out


def finetune(seed: int, tmp: Path) -> dict:
    """tests/test_finetune.py: accuracy after pruning and after (label-free / fake-quant) distillation."""
    from edgepack.demo import digits_split
    from test_finetune import fake_quant_recovery, label_free_recovery, pruned_cnn

    digits = digits_split(size=8)
    teacher, student, _ = pruned_cnn(digits, seed)
    got, _, _ = label_free_recovery(teacher, student, digits, seed)
    before, after, _, _ = fake_quant_recovery(teacher, student, digits, seed)
    return {**got, "distilled_minus_original": got["distilled"] - got["original"],
            "distilled_minus_pruned": got["distilled"] - got["pruned"],
            "original_minus_pruned": got["original"] - got["pruned"], "fake_quant_gain": after - before}


def int8_digits(seed: int, tmp: Path) -> dict:
    """tests/test_int8_onnx.py and test_tflite_zoo.py: int8 minus float accuracy of digits CNNs
    (onnxruntime per calibration method, TFLM), and torch fake-quant vs onnxruntime int8."""
    import zoo
    from edgepack.demo import digits_split
    from test_int8_onnx import METHODS, export_digits_cnn, fake_quant_vs_onnxruntime, float_and_int8_accuracy
    from test_tflite_zoo import int8_tflm_and_float_accuracy

    digits = digits_split(size=8)
    out = {}
    for name in ("mobilenet_v2", "resnet"):
        model = zoo.trained_on_digits(name, digits, seed)
        for method in METHODS:
            flt, int8 = float_and_int8_accuracy(export_digits_cnn(model, digits, method, tmp / f"{name}_{method}"),
                                                digits)
            out[f"{name}.float_accuracy"] = flt
            out[f"{name}.{method}.onnx_int8_minus_float"] = int8 - flt
        int8, flt = int8_tflm_and_float_accuracy(model, digits, tmp / f"{name}_tflm")
        out[f"{name}.tflm_int8_minus_float"] = int8 - flt
        if name == "mobilenet_v2":
            fq = fake_quant_vs_onnxruntime(model, digits)
            out[f"{name}.fake_quant.top1_agreement"] = fq["top1_agreement"]
            out[f"{name}.fake_quant.accuracy_gap"] = fq["accuracy_gap"]
    return out


def autoquant(seed: int, tmp: Path) -> dict:
    """tests/test_autoquant.py: output SQNR of --calibration auto against the best single method and minmax
    (issue-like MLPs, trained zoo models), entropy's clipping on the spiky MLP, and bias correction's gain."""
    from test_autoquant import METHODS, bias_correction_sqnr, outlier_mlp, spiky_mlp, sqnr_by_method, zoo_sqnr_by_method

    out = {}
    for build in (outlier_mlp, spiky_mlp):
        model, shape, x = build(seed)
        sqnr, _ = sqnr_by_method(model, shape, x[:300], x[300:])
        name = build.__name__
        out[f"{name}.auto_minus_best"] = sqnr["auto"] - max(sqnr[m] for m in METHODS)
        out[f"{name}.auto_minus_minmax"] = sqnr["auto"] - sqnr["minmax"]
        out[f"{name}.entropy_minus_minmax"] = sqnr["entropy"] - sqnr["minmax"]
    for name in ("mobilenet_v2", "resnet", "gap_head"):
        sqnr, *_ = zoo_sqnr_by_method(name, seed)
        out[f"{name}.auto_minus_minmax"] = sqnr["auto"] - sqnr["minmax"]
    for name in ("mobilenet_v2", "mobilenet_v3"):
        off, on, bc = bias_correction_sqnr(name, seed)
        out[f"{name}.bias_correction_gain"] = on - off
        out[f"{name}.bias_correction_kept"] = float(bool(bc["kept"]))
    return out


def fc_per_channel(seed: int, tmp: Path) -> dict:
    """tests/test_fc_per_channel.py: per-channel minus per-tensor FC output SQNR of the 10-Dense autoencoder,
    and the SQNR of both artifacts of a default export."""
    from edgepack.demo import digits_split
    from edgepack.targets.metrics import sqnr_db
    from test_fc_per_channel import export_and_run, per_tensor_and_per_channel_sqnr, train_autoencoder

    model, x_train, x_test = train_autoencoder(digits_split(size=8), seed)
    sqnr = per_tensor_and_per_channel_sqnr(model, x_train, x_test)
    _, ref, tfl, ort = export_and_run(model, x_train, x_test, tmp)
    return {"per_tensor_db": sqnr[False], "per_channel_db": sqnr[True],
            "per_channel_gain_db": sqnr[True] - sqnr[False],
            "export_tflite_sqnr_db": sqnr_db(ref, tfl), "export_onnx_sqnr_db": sqnr_db(ref, ort)}


GROUPS = {"zoo_coverage": zoo_coverage, "shrink": shrink, "finetune": finetune, "int8_digits": int8_digits,
          "autoquant": autoquant, "fc_per_channel": fc_per_channel}


def worker(seed: int, threads: int, groups: list[str], result: Path) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)  # as in tests/conftest.py
    out = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
           "metrics": {}, "seconds": {}}
    for group in groups:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            metrics = GROUPS[group](seed, Path(tmp))
        out["metrics"].update({f"{group}:{k}": float(v) for k, v in metrics.items()})
        out["seconds"][group] = round(time.perf_counter() - t0, 1)
    result.write_text(json.dumps(out))


def summarize(runs: list[dict], variations: list[str]) -> str:
    metrics = sorted({m for r in runs for m in r["metrics"]})
    headers = ["metric"] + [f"{v} min / mean / max (runs)" for v in variations] + ["all: min - max"]
    rows = []
    for m in metrics:
        row, every = [m], []
        for v in variations:
            vals = [r["metrics"][m] for r in runs if r["variation"] == v and m in r["metrics"]]
            every += vals
            row.append(f"{min(vals):.3f} / {sum(vals) / len(vals):.3f} / {max(vals):.3f} ({len(vals)})" if vals else "")
        row.append(f"{min(every):.3f} - {max(every):.3f}")
        rows.append(row)
    seeds = sorted({r["seed"] for r in runs})
    caps = {v: sorted({r["cpu_capability"] for r in runs if r["variation"] == v}) for v in variations}
    return (f"# Spread of the tests' thresholds (benchmarks/threshold_spread.py)\n\n"
            f"Seeds {seeds}; variations (env, torch threads): "
            + "; ".join(f"`{v}` {VARIATIONS[v][0] or 'no env'} x {VARIATIONS[v][1]}t, torch CPU capability "
                        f"{'/'.join(caps[v])}" for v in variations)
            + f".\nMachine: {machine()}\n\n"
            "Accuracies and agreements are fractions; `*_minus_*` and `drop` are differences of fractions; "
            "`sqnr_db` in dB; `@N`: over N held-out samples.\n\n" + md_table(headers, rows) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--variations", nargs="+", default=DEFAULT_VARIATIONS, choices=list(VARIATIONS))
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--stem", default="threshold_spread", help="results/<stem>.json and .md")
    parser.add_argument("--combine", nargs="+", metavar="STEM",
                        help="write results/threshold_spread.md from the runs of earlier studies")
    parser.add_argument("--worker", nargs=3, metavar=("SEED", "THREADS", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(int(args.worker[0]), int(args.worker[1]), args.groups, Path(args.worker[2]))
        return 0
    if args.combine:  # studies of different groups / variations run apart, shown in one table
        studies = [json.loads((RESULTS / f"{stem}.json").read_text()) for stem in args.combine]
        runs = [r for d in studies for r in d["runs"]]
        seconds = sum(d["total_seconds"] for d in studies)
        (RESULTS / "threshold_spread.md").write_text(
            summarize(runs, [v for v in VARIATIONS if any(r["variation"] == v for r in runs)])
            + f"\nTotal time {seconds} s ({', '.join(args.combine)}).\n")
        return 0
    runs, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        # seeds outside: a cut-short study still covers every variation
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in args.variations:
                env_extra, threads = VARIATIONS[name]
                env = {**os.environ, **env_extra, "OMP_NUM_THREADS": str(threads),
                       "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
                result = Path(tmp) / f"{name}-{seed}.json"
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--worker", str(seed), str(threads), str(result),
                                       "--groups", *args.groups], env=env, capture_output=True, text=True)
                if proc.returncode:
                    print(proc.stderr[-3000:], file=sys.stderr)
                    return 1
                runs.append({"variation": name, "seed": seed, **json.loads(result.read_text())})
                print(f"seed {seed} {name}: {time.perf_counter() - t0:.0f} s {runs[-1]['seconds']}", flush=True)
                data = {"runs": runs, "total_seconds": round(time.perf_counter() - started)}
                RESULTS.mkdir(exist_ok=True)
                (RESULTS / f"{args.stem}.json").write_text(json.dumps(data, indent=1))
                (RESULTS / f"{args.stem}.md").write_text(
                    summarize(runs, args.variations) + f"\nTotal time {data['total_seconds']} s.\n")
    print(f"total {time.perf_counter() - started:.0f} s; wrote {RESULTS / args.stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
