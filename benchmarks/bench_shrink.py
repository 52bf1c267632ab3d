"""What shrinking buys on a CPU and a microcontroller: LiteRT latency, TFLM arena, file size, estimated MCU
latency and int8 accuracy of each `edgepack.export(prune=..., separable=...)` result vs the unshrunk int8 file.

Two CNNs trained on scikit-learn digits upsampled to 32x32: `cnn4_32`, the 4-conv CNN of
tests/test_shrink_acceptance.py (16-32-32-64 channels, ~1.2M MACs), and `wide_cnn32`, the same layout
twice as wide (32-64-64-128, ~4.8M MACs). Each is exported for the phone (phone-arm64) and for an MCU
(stm32l4r5), unshrunk and with prune 0.25 / 0.5, separable auto and prune 0.5 + separable auto, the
rewrites chosen by that target's cost model and held to the shrink budget, all distilled from the
original with early stopping. Then every int8 .tflite
of a model is timed on LiteRT in one interleaved loop (XNNPACK and BUILTIN_REF kernels, 1 thread,
batch 1), and each conv layer of each file is timed on its own (a one-layer .tflite of the same shape)
so a transform that cuts MACs but not time can be traced to the layer that does not get faster.

    .venv/bin/python benchmarks/bench_shrink.py            # ~20 minutes on 2 shared cores
    .venv/bin/python benchmarks/bench_shrink.py --quick    # smoke run: cnn4_32, 2 epochs; writes no results
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import numpy as np

import common  # noqa: F401  (puts the checkout and tests/ on sys.path)
from common import md_table
from shrink_layers import (NO_GAIN, blocks, findings, kernel_probe, layers, mcu_blocks, op_counts,
                           time_units, unit_key)
from shrink_target_table import section
from shrink_timing import BLOCK_S, KERNELS, time_files

CALIB_SAMPLES = 300
TARGET = "stm32l4r5"  # the MCU whose latency is estimated for every file
PHONE = "phone-arm64"  # measured: LiteRT on this CPU stands in for the phone's XNNPACK
TARGETS = (PHONE, TARGET)  # every variant is exported for each: the target's cost model picks the rewrites
# (name, export settings): the unshrunk file first, every ratio is against it.
VARIANTS = [("int8", {}), ("prune 0.25", {"prune": 0.25}), ("prune 0.5", {"prune": 0.5}),
            ("separable auto", {"separable": "auto"}),
            ("prune 0.5 + separable", {"prune": 0.5, "separable": "auto"})]
# Timed too, but not distilled (latency does not depend on the weights): the SIMD-width question, phone only.
# The budget is opened wide: undistilled, the cuts would be reverted (the run of 2026-12-08 was made so).
WHAT_IF = [("prune 0.25, round_to 8 (latency only)", {"prune": 0.25, "round_to": 8, "accuracy_budget": "top1:100"})]
# (from, to): each transform against the file it shrinks further.
PAIRS = [("int8", "prune 0.25"), ("prune 0.25", "prune 0.5"), ("int8", "separable auto"),
         ("prune 0.5", "prune 0.5 + separable"), ("separable auto", "prune 0.5 + separable"),
         ("int8", WHAT_IF[0][0])]


# ---------------------------------------------------------------- models

def cnn4(widths=(16, 32, 32, 64)):
    """The CNN of tests/test_shrink_acceptance.py (strides 2, 2, 1, 2), channel widths as given."""
    import torch.nn as nn

    layers, cin = [], 1
    for cout, stride in zip(widths, (2, 2, 1, 2)):
        layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))


def model_specs(quick: bool):
    """(name, builder, train epochs, train lr, most distillation epochs: early stopping picks how many)."""
    if quick:
        return [("cnn4_32", cnn4, 6, 5e-3, 2)]
    return [("cnn4_32", cnn4, 6, 5e-3, 12), ("wide_cnn32", lambda: cnn4((32, 64, 64, 128)), 6, 5e-3, 12)]


# ---------------------------------------------------------------- exports

def export_variants(model, data, distill_epochs: int, work: Path, target: str) -> dict:
    """Every variant through the public `edgepack.export` (validated on the held-out digits)."""
    import edgepack

    x_tr, y_tr, x_te, y_te = data
    out = {}
    for name, settings in VARIANTS:
        extra = {"finetune_epochs": distill_epochs, "train": x_tr, "train_labels": y_tr} if settings else {}
        t0 = time.perf_counter()
        folder = work / name.replace(" ", "_").replace("+", "plus").replace(".", "")
        report = edgepack.export(model, calib=x_tr[:CALIB_SAMPLES], out=folder, input_shape=(1, 1, 32, 32),
                                 val=x_te, val_labels=y_te, val_limit=len(x_te), target=target, force=True,
                                 **settings, **extra)
        seconds = time.perf_counter() - t0
        tflite = Path(report.artifacts["int8_tflite"]["path"]).read_bytes()
        v = report.validation["int8_tflite@litert-ref"]
        shrink = report.shrink
        out[name] = {
            "settings": settings, "export_s": round(seconds, 1), "tflite": tflite,
            "macs": report.summary["macs"], "params": report.summary["params"],
            "macs_ratio": shrink.get("macs_ratio", 1.0), "params_ratio": shrink.get("params_ratio", 1.0),
            "separable_nodes": shrink.get("separable_nodes", []),
            "distillation": {k: (shrink.get("distillation") or {}).get(k)
                             for k in ("best_epoch", "epochs_run", "stopped_early")} if shrink else None,
            "budget": shrink.get("budget"), "round_to": shrink.get("round_to"),
            "int8_acc": v["accuracy"], "int8_acc_tflm": (report.validation.get("int8_tflite@tflm") or {}).get("accuracy"),
            "shrunk_float_acc": v["reference_accuracy"],
            "vs_original_float": shrink.get("int8_tflite_vs_original_float"),
            "tflite_bytes": report.artifacts["int8_tflite"]["bytes"],
            "tflm_arena_bytes": report.memory.arena_measured_tflm if report.memory else None,
            **estimates(folder), "folder": folder, "layers": layers(tflite), "op_counts": op_counts(tflite),
        }
    return out


def estimates(folder: Path) -> dict:
    """Estimated ms of the exported float graph on the MCU and on the phone (edgepack's cost models)."""
    import edgepack
    from edgepack.targets.latency import estimate_latency
    from edgepack.targets.profile import load_profile

    graph = edgepack.load(folder / "model.float.onnx")
    mcu, phone = (estimate_latency(graph, load_profile(t)) for t in (TARGET, PHONE))
    return {"mcu_ms": mcu.total_ms, "mcu_cost_model": mcu.cost_model, "phone_est_ms": phone.total_ms}


def export_what_if(model, data, work: Path, target: str) -> dict:
    """Latency-only variants (no distillation, no validation: int8 speed does not depend on the weights)."""
    import edgepack

    out = {}
    for name, settings in WHAT_IF:
        folder = work / name.replace(" ", "_").replace(",", "").replace(".", "")
        report = edgepack.export(model, calib=data[0][:CALIB_SAMPLES], out=folder, input_shape=(1, 1, 32, 32),
                                 validate=False, target=target, force=True, **settings)
        tflite = Path(report.artifacts["int8_tflite"]["path"]).read_bytes()
        out[name] = {"settings": settings, "tflite": tflite, "macs": report.summary["macs"], **estimates(folder),
                     "macs_ratio": report.shrink["macs_ratio"], "tflite_bytes": len(tflite), "folder": folder,
                     "layers": layers(tflite), "op_counts": op_counts(tflite)}
    return out


# ---------------------------------------------------------------- one model

def trained(build, epochs, lr):
    """(model, data, seconds): the same model on every run (seeded initial weights)."""
    import torch

    data = common.digits(32)
    torch.manual_seed(0)  # the initial weights too, so every run trains the same model
    t0 = time.perf_counter()
    return common.train(build(), data[0], data[1], epochs=epochs, lr=lr), data, round(time.perf_counter() - t0, 1)


def bench_model(name, model, data, target: str, distill_epochs, work: Path, rounds: dict) -> dict:
    res = {"target": target, "distill_epochs": distill_epochs}
    t0 = time.perf_counter()
    variants = export_variants(model, data, distill_epochs, work / name, target)
    if target == PHONE:
        variants.update(export_what_if(model, data, work / name, target))
    res["export_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    res["latency"] = time_files({k: v["tflite"] for k, v in variants.items()}, rounds["files"])
    per_file = {k: blocks(v["layers"]) for k, v in variants.items()}
    units = time_units([b for bs in per_file.values() for b in bs], rounds["units"])
    res["timing_s"] = round(time.perf_counter() - t0, 1)
    res["invoke_overhead_us"] = units["(invoke overhead)"]
    base_blocks = per_file[VARIANTS[0][0]]
    for k, v in variants.items():
        mcu = mcu_blocks(v["folder"], TARGET)
        v["blocks"] = [{"layer": unit_key(b), "macs": sum(r["macs"] for r in b),
                        "outputs": sum(int(np.prod(r["out"][1:])) for r in b),
                        "xnnpack_us": units[unit_key(b)]["xnnpack"], "ref_us": units[unit_key(b)]["ref"],
                        "mcu_ms": mcu[i] if mcu and len(mcu) == len(per_file[k]) else None,
                        "base_layer": unit_key(base_blocks[i]) if len(per_file[k]) == len(base_blocks) else None}
                       for i, b in enumerate(per_file[k])]
        v.pop("tflite")
        v["folder"] = str(v["folder"].name)
    res["variants"] = variants
    return res


# ---------------------------------------------------------------- output

def _x(v: float | None) -> str:
    return "-" if v is None else f"x{v:.2f}"


def tables(results: dict) -> str:
    head = ["variant", "MACs", "MACs cut", "params", "XNNPACK us", "XNNPACK speed-up (paired, range)", "ref us",
            "ref speed-up (paired, range)", "MCU est. ms", "MCU speed-up", "TFLM arena B", ".tflite B", "ops"]
    acc_head = ["variant", "MACs", "MACs cut", "int8 top-1 (LiteRT ref)", "int8 top-1 (TFLM)",
                "float top-1 of the shrunk graph", "int8 - original float", "distillation best / run epochs"]
    layer_head = ["variant", "layer(s)", "MACs", "MACs cut", "XNNPACK us", "x", "ref us", "x", "MCU ms", "x", ""]
    parts = []
    for mname, m in results["models"].items():
        vs, lat = m["variants"], m["latency"]
        base = vs[VARIANTS[0][0]]
        rows, acc, lrows = [], [], []
        for vname, v in vs.items():
            cells = []
            for k in KERNELS:
                c = lat[vname][k]["cpu"]
                cells += [f"{c['median_us']:.1f}", "{} ({:.2f}, {:.2f}-{:.2f})".format(
                    _x(c["speedup"]), c["paired_speedup"], *c["paired_range"])]
            mcu = v.get("mcu_ms")
            rows.append([vname, f"{v['macs'] / 1e6:.3f}M", _x(v["macs_ratio"]), v.get("params", "-"), *cells,
                         f"{mcu:.1f}" if mcu else "-", _x(base["mcu_ms"] / mcu) if mcu else "-",
                         v.get("tflm_arena_bytes") or "-", v["tflite_bytes"],
                         ", ".join(f"{o} {n}" for o, n in v["op_counts"].items())])
            if "int8_acc" in v:
                d = v["distillation"]
                acc.append([vname, f"{v['macs'] / 1e6:.3f}M", _x(v["macs_ratio"]), f"{v['int8_acc']:.4f}",
                            f"{v['int8_acc_tflm']:.4f}" if v["int8_acc_tflm"] is not None else "-", f"{v['shrunk_float_acc']:.4f}",
                            f"{v['int8_acc'] - m['original_float_acc']:+.4f}",
                            f"{d['best_epoch']} / {d['epochs_run']}" + (" (still improving)" if d["best_epoch"]
                                                                          == m["distill_epochs"] else "")
                            if d else "-"])
            for b, b0 in zip(v["blocks"], base["blocks"] if v["blocks"][0]["base_layer"] else [None] * 99):
                ratio = {k: (b0[k] / b[k] if b0 and b[k] and b0[k] > 0.02 and b[k] > 0.02 else None)
                         for k in ("xnnpack_us", "ref_us", "mcu_ms")}
                mr = b0["macs"] / b["macs"] if b0 else None
                flag = ", ".join(f"no {k[:-3]} gain" for k in ("xnnpack_us", "ref_us") if mr and mr >= 1.25 and
                                 ratio[k] is not None and ratio[k] < NO_GAIN)
                lrows.append([vname, b["layer"], b["macs"], _x(mr), f"{b['xnnpack_us']:.2f}", _x(ratio["xnnpack_us"]),
                              f"{b['ref_us']:.1f}", _x(ratio["ref_us"]),
                              f"{b['mcu_ms']:.2f}" if b["mcu_ms"] is not None else "-", _x(ratio["mcu_ms"]), flag])
        oh = m["invoke_overhead_us"]
        parts.append(f"""## {mname}

Trained {m['train_epochs']} epochs; shrunk variants distilled {m['distill_epochs']} epochs from the original
("still improving": the best epoch was the last, more epochs would raise the accuracy; latency does not
depend on it).
Original float top-1: **{m['original_float_acc']:.4f}**.

### Latency, memory, size

{md_table(head, rows)}

### Accuracy against MACs (held-out digits)

{md_table(acc_head, acc)}

### Layer by layer

Each block timed on its own (a one-block .tflite of the same shapes), CPU us per invoke minus the cost of
invoking a one-op file ({oh['xnnpack']:.2f} us XNNPACK, {oh['ref']:.2f} us ref); "x" is the speed-up over the
same layer of the unshrunk file. A depthwise + pointwise pair (`separable`) counts as the layer it replaced.
"no ... gain": at least 1.25x fewer MACs than the unshrunk layer but less than x{NO_GAIN:.2f} faster.

{md_table(layer_head, lrows)}
""")
    probe = results["kernel_probe"]
    prow = [[n, p["macs"], f"{p['xnnpack']:.2f}", f"{1e6 * p['xnnpack'] / p['macs']:.1f}", f"{p['ref']:.1f}",
             f"{1e6 * p['ref'] / p['macs']:.0f}"] for n, p in probe.items()]
    mc, st = results["machine"], results["settings"]
    return f"""# Shrinking: LiteRT latency, TFLM arena, size, MCU estimate and accuracy

Measured {mc['date']} on {mc['cpu']} ({mc['cores']} cores, AVX512-VNNI: {mc['vnni']}), ai-edge-litert
{results['versions']['ai_edge_litert']}, torch {mc['torch']}. Regenerate with
`.venv/bin/python benchmarks/bench_shrink.py` ({results['wall_s']:.0f} s here, on a machine shared with other jobs:
load average {results['load_average_at_start']:.1f} at the start). Raw numbers: `shrink.json`.

Every variant is a public `edgepack.export(model, calib=300 training images, prune=..., separable=...,
finetune_epochs=..., train=training digits, val=the {st['test_samples']} held-out digits)`; the unshrunk
"int8" row is the same call without shrinking. Latency: LiteRT, batch 1, 1 thread, default resolver
(XNNPACK) and BUILTIN_REF kernels ("ref", plain C loops, the closest thing to a microcontroller's
reference kernels on this machine); all files of a model, both kernel sets, timed in one loop of
{st['rounds_files']} interleaved rounds (order rotated each round) of ~{BLOCK_S * 1000:.0f} ms blocks. Times are the
median CPU time of the invoking thread per invoke (equal to wall time on an idle core, and not inflated
when other processes share the machine; wall-clock numbers are in the JSON). Speed-up: unshrunk median /
variant median; in brackets the median and range of the per-round ratios. "MCU est." is
edgepack's latency estimate of the exported graph on {TARGET} (its fitted CMSIS-NN cost model, not a measurement);
"TFLM arena" is the arena TFLite Micro reports for the file. Accuracy: top-1 on the held-out digits,
LiteRT reference kernels and TFLM; "int8 - original float" is against the unshrunk float model.
"{WHAT_IF[0][0]}" is timed only (not distilled or validated), for the phone only.

{section(results, VARIANTS[0][0])}
{"".join(parts)}
## Kernel probe

One-layer files (8x8 output pixels), net us per invoke and picoseconds per MAC.

{md_table(["layer", "MACs", "XNNPACK us", "XNNPACK ps/MAC", "ref us", "ref ps/MAC"], prow)}

## Findings of this run

""" + "\n".join(f"- {f}" for f in results["findings"]) + "\n" + READING


READING = """
- **The shrink budget sees the calibration split, not unseen data.** It is measured on a held-out 20% of
  the training samples (here the digits the original model was trained on), in float: the original is
  right on nearly all of them, so a shrunk model that generalises worse can pass it. Compare the budget
  column (points lost on the split) with "int8 top-1 - original float" (the held-out test digits, which
  the export never sees): pass test-like samples as `--train` data for a budget that means more.
- **Phone estimate vs this CPU.** The phone profile prices ~3 us per op (4-thread dispatch on a phone),
  which this 1-thread x86 LiteRT does not pay (~0.5 us per op), so its speed-ups are below the measured
  ones, and it refuses separable convs on the narrow CNN that this CPU runs faster (x1.51 in this
  benchmark's run of 2026-11-24, when `separable auto` ranked by MACs). It errs on the side of not rewriting.
## Reading the numbers

- **Channel counts vs the SIMD tile (XNNPACK).** On this CPU XNNPACK's int8 conv computes output channels
  in tiles of 16 (the kernel probe is a staircase: 8 costs what 16 costs, 24 what 32 costs, ...). The phone
  profile's `round_to` is 16, so pruning keeps whole tiles (and the cost model rounds a conv's output
  channels up to them); the "round_to 8" row, with the old default, cuts 32-channel groups to 24, saving
  MACs and no time on the conv that produces them (only its consumer gets cheaper). ref kernels and the
  MCU model (`round_to` 4) follow the MACs there.
- **Depthwise is expensive per MAC.** A depthwise 3x3 costs ~10x (XNNPACK) / ~12x (ref) per MAC what a
  dense 3x3 conv costs, a 1x1 ~2x, and each replaced conv becomes two ops. The phone profile's cost model
  carries those ratios, so `separable auto` for the phone replaces only the convs it prices faster (none
  of the narrow CNN's, whose convs are one or two XNNPACK tiles; the wide CNN's); for the MCU (depthwise
  2x a dense conv per MAC in the fitted model) it replaces more.
- **The first conv is a floor.** It reads the 1-channel input at full resolution: few MACs, many output
  elements (ref kernels pay per output element, XNNPACK runs a K=9 GEMM far below its peak), its output
  channels are protected from pruning and `separable auto` skips it (fewer than 8 input channels). Its
  share of the time grows with every transform, which caps the speed-up of the heavily shrunk files.
- **PAD ops** (PyTorch's symmetric padding on stride-2 convs) are unchanged by shrinking and cost ~nothing
  in time (see the PAD line of the findings). In TFLM they set the arena's peak: the
  padded copy of the first conv's output (17x17xC) lives next to the output itself (16x16xC), C the first
  conv's protected channel count, so the planned activations are the same in every variant and only the
  per-op kernel data (per-channel requantization tables) shrinks with pruning; separable adds three ops
  and their tables, hence a larger arena.
- **The MCU estimate is a cost model, not a measurement**: it prices MACs almost linearly (depthwise at
  2x a dense conv per MAC, a prior of the fit) and so predicts speed-ups close to the MAC cut, well above
  what either host kernel family shows for separable and for the heavily pruned files. Only a board can
  say which is closer for CMSIS-NN.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: cnn4_32, 2 distillation epochs, few "
                        "rounds; writes no results files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from importlib.metadata import version

    rounds = {"files": 8, "units": 4, "probe": 4} if args.quick else {"files": 24, "units": 10, "probe": 10}
    test_samples = len(common.digits(32)[3])
    results = {"machine": common.machine(), "versions": {"ai_edge_litert": version("ai-edge-litert")},
               "settings": {"calib_samples": CALIB_SAMPLES, "test_samples": test_samples, "target": TARGET,
                            "rounds_files": rounds["files"], "rounds_units": rounds["units"], "quick": args.quick},
               "models": {}}
    results["load_average_at_start"] = os.getloadavg()[0]
    t0 = time.perf_counter()
    results["kernel_probe"] = kernel_probe(rounds["probe"])
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, epochs, lr, distill in model_specs(args.quick):
            model, data, train_s = trained(build, epochs, lr)
            for target in TARGETS:
                print(f"{name} for {target}: exporting the variants, timing ...", flush=True)
                m = bench_model(f"{name} @ {target}", model, data, target, distill, Path(tmp), rounds)
                m.update(train_epochs=epochs, train_s=train_s,
                         original_float_acc=m["variants"][VARIANTS[0][0]]["shrunk_float_acc"])
                results["models"][f"{name} @ {target}"] = m
                print(f"  exports {m['export_s']} s, timing {m['timing_s']} s", flush=True)
                md = write(results, t0, args.quick)  # after each model: a long run leaves what it measured
    print(md.split("\n## ", 1)[1])
    print(f"total {results['wall_s']} s")
    return 0


def write(results: dict, t0: float, quick: bool) -> str:
    results["findings"] = findings(results, [n for n, _ in VARIANTS], PAIRS)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    md = tables(results)
    json.dumps(results)  # fail here, before anything is written, if a value is not JSON
    if not quick:
        print("wrote", *common.write_results("shrink", results, md))
    return md

if __name__ == "__main__":
    raise SystemExit(main())
