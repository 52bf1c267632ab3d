"""bench_shrink.py layer by layer: what each op of a .tflite is (shapes, channels, MACs), each layer timed
on its own as a one-layer .tflite of the same shapes, its estimated MCU time, the kernel probe (how LiteRT's
kernels price a layer), and the findings drawn from those numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shrink_timing import KERNELS, time_files


# ---------------------------------------------------------------- what is in a file

def layers(data: bytes) -> list[dict]:
    """Per op of the .tflite: type, shapes (NHWC), channel counts and MACs. A PAD feeding a conv (how
    a PyTorch stride-2, padding-1 conv is written) is folded into that conv's row ("pad": True, "in" is
    the PAD's input), so the row describes the PyTorch layer that became the pair."""
    from edgepack.targets.tflite_file import read_tflite

    tm = read_tflite(data)
    rows, pads = [], {}
    for o in tm.ops:
        x, y = tm.tensors[o.inputs[0]], tm.tensors[o.outputs[0]]
        if o.op == "PAD":
            pads[o.outputs[0]] = x
        row = {"op": o.op, "in": list(x.shape), "out": list(y.shape), "macs": 0}
        if o.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = tm.tensors[o.inputs[1]].shape  # conv (Cout, kh, kw, Cin), depthwise (1, kh, kw, C)
            _, h, wd, c = y.shape
            row.update(kernel=[w[1], w[2]], cin=x.shape[3], cout=c, pad=o.inputs[0] in pads,
                       macs=h * wd * c * w[1] * w[2] * (w[3] if o.op == "CONV_2D" else 1))
            if row["pad"]:
                row["in"] = list(pads[o.inputs[0]].shape)
            row["stride"] = max(1, round(row["in"][1] / h))
        elif o.op == "FULLY_CONNECTED":
            w = tm.tensors[o.inputs[1]].shape
            row.update(cin=w[1], cout=w[0], macs=w[0] * w[1])
        rows.append(row)
    return rows


def op_counts(data: bytes) -> dict[str, int]:
    from edgepack.targets.tflite_file import read_tflite

    return read_tflite(data).op_counts()


# ---------------------------------------------------------------- layer by layer

def blocks(rows: list[dict]) -> list[list[dict]]:
    """The MAC ops of a file grouped by the original layer they implement: a depthwise conv followed by a
    1x1 conv is one block (what `separable` makes of one KxK conv), any other conv or FC is its own."""
    macs = [r for r in rows if r["macs"]]
    out, i = [], 0
    while i < len(macs):
        r = macs[i]
        nxt = macs[i + 1] if i + 1 < len(macs) else None
        if r["op"] == "DEPTHWISE_CONV_2D" and nxt and nxt["op"] == "CONV_2D" and nxt["kernel"] == [1, 1]:
            out.append([r, nxt])
            i += 2
        else:
            out.append([r])
            i += 1
    return out


def _unit_module(block: list[dict]):
    import torch.nn as nn

    mods = []
    for row in block:
        if row["op"] == "FULLY_CONNECTED":
            mods.append(nn.Linear(row["cin"], row["cout"]))
            continue
        k, s = row["kernel"][0], row["stride"]
        groups = row["cin"] if row["op"] == "DEPTHWISE_CONV_2D" else 1
        mods.append(nn.Conv2d(row["cin"], row["cout"], k, s, row.get("padding", k // 2), groups=groups))
    first = block[0]
    shape = (1, first["cin"]) if first["op"] == "FULLY_CONNECTED" else (1, first["cin"], *first["in"][1:3])
    return nn.Sequential(*mods, nn.ReLU()).eval(), shape


def unit_tflite(block: list[dict]) -> bytes:
    """An int8 .tflite holding just ``block`` (same shapes, random weights), made by edgepack from a
    PyTorch Conv2d/Linear (+ ReLU): a stride-2 padding-1 conv becomes PAD + CONV_2D as in the model."""
    import torch

    import edgepack
    from edgepack.calibration import calibrate_graph, load_samples
    from edgepack.exporter.emit_tflite import to_tflite

    torch.manual_seed(0)
    module, shape = _unit_module(block) if block else (torch.nn.Sequential(torch.nn.ReLU()).eval(), (1, 16))
    graph = edgepack.load(module, input_shape=shape)
    x = np.random.default_rng(0).random((16,) + shape[1:], np.float32)
    qgraph, _ = calibrate_graph(graph, load_samples(x, shape), "minmax")
    return to_tflite(qgraph, int8=True)


def unit_key(block: list[dict]) -> str:
    parts = []
    for row in block:
        if row["op"] == "FULLY_CONNECTED":
            parts.append(f"fc {row['cin']}->{row['cout']}")
            continue
        kind = "dw" if row["op"] == "DEPTHWISE_CONV_2D" else ("pw" if row["kernel"] == [1, 1] else "conv")
        k = "" if kind == "pw" else f" {row['kernel'][0]}x{row['kernel'][1]}"
        where = f" s{row['stride']} @{row['in'][1]}x{row['in'][2]}" if row is block[0] else ""
        parts.append(f"{'pad+' if row.get('pad') else ''}{kind}{k} {row['cin']}->{row['cout']}{where}")
    return " + ".join(parts)


def time_units(all_blocks: list[list[dict]], rounds: int) -> dict[str, dict]:
    """Microseconds (CPU) per invoke of each distinct block on its own, all interleaved, minus the cost of
    invoking a one-op file (ReLU on 16 values): what the block adds to a whole model's invoke."""
    files = {"(invoke overhead)": unit_tflite([])}
    for b in all_blocks:
        files.setdefault(unit_key(b), unit_tflite(b))
    timed = time_files(files, rounds)
    overhead = {k: timed["(invoke overhead)"][k]["cpu"]["median_us"] for k in KERNELS}
    out = {key: {k: max(0.0, timed[key][k]["cpu"]["median_us"] - overhead[k]) for k in KERNELS}
           for key in files if key != "(invoke overhead)"}
    out["(invoke overhead)"] = overhead
    return out


def mcu_blocks(folder: Path, target: str) -> list[float] | None:
    """Estimated ms on ``target`` (bench_shrink: stm32l4r5) of each Conv/Gemm block of the exported float
    graph (same cost model as report.latency), grouped like `blocks`."""
    import edgepack
    from edgepack.targets.latency import estimate_latency
    from edgepack.targets.profile import load_profile

    est = estimate_latency(edgepack.load(folder / "model.float.onnx"), load_profile(target))
    nodes = [n for n in est.nodes if n.op in ("Conv", "Gemm")]
    out, i = [], 0
    while i < len(nodes):
        if nodes[i].kind == "depthwise" and i + 1 < len(nodes) and nodes[i + 1].kind == "pointwise":
            out.append(nodes[i].ms + nodes[i + 1].ms)
            i += 2
        else:
            out.append(nodes[i].ms)
            i += 1
    return out


def kernel_probe(rounds: int) -> dict[str, dict]:
    """How LiteRT's kernels price a layer: a 3x3 conv with 32 input channels at 8x8 pixels and 8..64 output
    channels (the SIMD tile shows as steps), and the depthwise 3x3 and pointwise 1x1 convs `separable`
    would put in place of the 32->32 one. Values: net us per kernels, and MACs."""
    probe = {f"conv 3x3 32->{c}": [{"op": "CONV_2D", "in": [1, 8, 8, 32], "kernel": [3, 3], "stride": 1, "cin": 32,
                                     "cout": c, "macs": 64 * 9 * 32 * c}] for c in range(8, 72, 8)}
    probe["dw 3x3 32"] = [{"op": "DEPTHWISE_CONV_2D", "in": [1, 8, 8, 32], "kernel": [3, 3], "stride": 1, "cin": 32,
                           "cout": 32, "macs": 64 * 9 * 32}]
    probe["pw 32->32"] = [{"op": "CONV_2D", "in": [1, 8, 8, 32], "kernel": [1, 1], "stride": 1, "cin": 32,
                           "cout": 32, "macs": 64 * 32 * 32}]
    # What a PAD op costs: the stride-2 conv as the models have it (PAD + CONV_2D) vs the same conv on an
    # input that is already padded (no PAD op).
    conv = {"op": "CONV_2D", "kernel": [3, 3], "stride": 2, "cin": 16, "cout": 32, "macs": 64 * 9 * 16 * 32}
    probe["pad+conv 3x3 16->32 s2 @16x16"] = [{**conv, "in": [1, 16, 16, 16], "pad": True}]
    probe["conv 3x3 16->32 s2 @17x17, no PAD"] = [{**conv, "in": [1, 17, 17, 16], "padding": 0}]
    timed = time_units(list(probe.values()), rounds)
    return {name: {**timed[unit_key(b)], "macs": b[0]["macs"]} for name, b in probe.items()}



# ---------------------------------------------------------------- findings

NO_GAIN = 1.10  # at least 1.25x fewer MACs but less than this much faster: flagged
MIN_SHARE = 0.03  # layers below this share of their file's time are too small to flag (FC heads)


def findings(results: dict, variants: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """Where MACs fell but time did not, and what caps the speed-ups, from this run's numbers. ``variants``:
    the distilled variants' names, the unshrunk file first; ``pairs``: (from, to) transforms to compare."""
    out, probe = [], results["kernel_probe"]
    for mname, m in results["models"].items():
        vs, lat = m["variants"], m["latency"]
        base = vs[variants[0]]
        for a, b in pairs:
            if a not in vs or b not in vs:  # the latency-only variants are made for the phone only
                continue
            va, vb = vs[a], vs[b]
            mr = va["macs"] / vb["macs"]
            for k in KERNELS:
                tr = lat[a][k]["cpu"]["median_us"] / lat[b][k]["cpu"]["median_us"]
                if mr >= 1.25 and tr < NO_GAIN:
                    out.append(f"{mname}, {a} -> {b}: {mr:.2f}x fewer MACs, {k} only x{tr:.2f} faster")
            if len(va["blocks"]) != len(vb["blocks"]):
                continue
            for ba, bb in zip(va["blocks"], vb["blocks"]):
                lmr = ba["macs"] / bb["macs"]
                for k in KERNELS:
                    ta, tb = ba[f"{k}_us"], bb[f"{k}_us"]
                    if lmr >= 1.25 and ta >= MIN_SHARE * lat[a][k]["cpu"]["median_us"] and ta / max(tb, 1e-9) < NO_GAIN:
                        out.append(f"{mname}, {a} -> {b}: layer `{ba['layer']}` -> `{bb['layer']}`: {lmr:.2f}x fewer "
                                   f"MACs, {k} x{ta / max(tb, 1e-9):.2f} ({ta:.2f} -> {tb:.2f} us)")
        first, smallest = base["blocks"][0], min(variants, key=lambda v: vs[v]["macs"])
        for k in KERNELS:
            share = [first[f"{k}_us"] / lat[n][k]["cpu"]["median_us"] for n in (variants[0], smallest)]
            out.append(f"{mname}: the first conv `{first['layer']}` (output channels protected from pruning, skipped "
                       f"by separable auto) is {first['macs'] / base['macs']:.1%} of the MACs but {share[0]:.0%} of "
                       f"the {k} time of the unshrunk file and {share[1]:.0%} of `{smallest}`")
    dense = {b["layer"]: b for m in results["models"].values() for v in m["variants"].values() for b in v["blocks"]
             if " + " not in b["layer"] and "conv 3x3" in b["layer"]}
    if len(dense) >= 3:  # ref kernels: time = a * MACs + b * output elements
        a = np.array([[b["macs"], b["outputs"]] for b in dense.values()], float)
        t = np.array([b["ref_us"] for b in dense.values()])
        coef = np.linalg.lstsq(a, t, rcond=None)[0]
        worst = float(np.max(np.abs(a @ coef - t) / t))
        out.append(f"ref kernels, dense 3x3 convs ({len(dense)} layers): time ~ {coef[0] * 1e6:.0f} ps per MAC + "
                   f"{coef[1] * 1e3:.1f} ns per output element (worst fit error {worst:.0%}): a conv pruned on both "
                   f"sides loses MACs quadratically but outputs only linearly")
    ps = {n: {k: 1e6 * p[k] / p["macs"] for k in KERNELS} for n, p in probe.items()}
    out.append("per MAC, depthwise 3x3 costs {:.0f}x (XNNPACK) / {:.0f}x (ref) a dense 3x3 conv, pointwise 1x1 "
               "{:.1f}x / {:.1f}x (kernel probe, 8x8x32)".format(
                   ps["dw 3x3 32"]["xnnpack"] / ps["conv 3x3 32->32"]["xnnpack"],
                   ps["dw 3x3 32"]["ref"] / ps["conv 3x3 32->32"]["ref"],
                   ps["pw 32->32"]["xnnpack"] / ps["conv 3x3 32->32"]["xnnpack"],
                   ps["pw 32->32"]["ref"] / ps["conv 3x3 32->32"]["ref"]))
    pad, nopad = probe["pad+conv 3x3 16->32 s2 @16x16"], probe["conv 3x3 16->32 s2 @17x17, no PAD"]
    out.append("a PAD op costs {:.2f} us on XNNPACK, {:.1f} us on ref (PAD + conv 3x3 16->32 s2 at 16x16: {:.2f} / "
               "{:.1f} us, the same conv on a pre-padded input: {:.2f} / {:.1f} us)".format(
                   pad["xnnpack"] - nopad["xnnpack"], pad["ref"] - nopad["ref"], pad["xnnpack"], pad["ref"],
                   nopad["xnnpack"], nopad["ref"]))
    steps = [f"{c}: {probe[f'conv 3x3 32->{c}']['xnnpack']:.2f}" for c in range(8, 72, 8)]
    out.append("XNNPACK conv 3x3 32->C at 8x8, us by C: " + ", ".join(steps))
    return out
