"""bench_shrink.py's first table: each transform, chosen by the export target's cost model, against the
unshrunk int8 file of the same target: LiteRT latency measured on this CPU (XNNPACK, the phone's kernels),
estimated MCU latency, accuracy against the original float model and the shrink budget's verdict."""
from __future__ import annotations

from common import md_table


def _x(v: float | None) -> str:
    return "-" if v is None else f"x{v:.2f}"


def _budget(v: dict) -> str:
    b = v.get("budget")
    if not b:
        return "-"
    if not b.get("measured_on"):
        return b.get("note", "not measured")
    after = b.get("after") or {}
    lost = after.get("top1_points_lost")
    text = (f"{lost:+.2f} pts lost on {b['measured_on']} held-out (budget {b['metric']}:{b['value']:g}): "
            f"{'within' if b['within'] else 'OVER'}")
    if b["reverted"]:
        text += "; reverted " + ", ".join(f"{r['rewrite']} {r['layer']}" for r in b["reverted"])
    return text


def rows(results: dict, base_name: str) -> tuple[list[list], list[dict]]:
    """(table rows, one verdict per transform: faster measured on XNNPACK and estimated on the MCU)."""
    out, verdicts = [], []
    for mname, m in results["models"].items():
        vs, lat = m["variants"], m["latency"]
        base = vs[base_name]
        for vname, v in vs.items():
            if vname == base_name or "int8_acc" not in v:  # the latency-only rows are not shrink transforms
                continue
            c = lat[vname]["xnnpack"]["cpu"]
            mcu = base["mcu_ms"] / v["mcu_ms"]
            phone_est = base["phone_est_ms"] / v["phone_est_ms"]
            acc = v.get("int8_acc")
            lost = None if acc is None else acc - m["original_float_acc"]
            d = v.get("distillation")
            kept = v["macs_ratio"] != 1.0 or v.get("separable_nodes")  # else every rewrite was refused
            faster = c["speedup"] > 1.0 and c["paired_speedup"] > 1.0 and mcu > 1.0 if kept else None
            verdicts.append({"model": mname, "variant": vname, "xnnpack_speedup": c["speedup"],
                             "xnnpack_paired_range": c["paired_range"], "phone_est_speedup": phone_est,
                             "mcu_est_speedup": mcu, "int8_vs_original_float": lost, "faster_on_both": faster,
                             "within_budget": (v.get("budget") or {}).get("within")})
            out.append([mname, vname, _x(v["macs_ratio"]), "{} ({:.2f}-{:.2f})".format(_x(c["speedup"]),
                        *c["paired_range"]), _x(phone_est), f"{v['mcu_ms']:.1f}", _x(mcu),
                        "-" if lost is None else f"{100 * lost:+.1f}", _budget(v),
                        f"{d['best_epoch']} / {d['epochs_run']}" if d and d.get("epochs_run") else "-",
                        "no rewrite kept" if faster is None else "yes" if faster else "**no**"])
    return out, verdicts


def section(results: dict, base_name: str) -> str:
    table, verdicts = rows(results, base_name)
    results["target_verdicts"] = verdicts
    slower = [f"{v['model']} {v['variant']}" for v in verdicts if v["faster_on_both"] is False]
    head = ["model @ export target", "transform", "MACs cut", "XNNPACK measured speed-up (paired range)",
            "phone est. speed-up", "MCU est. ms", "MCU est. speed-up", "int8 top-1 - original float (pts)",
            "shrink budget (float, held-out calibration split)", "distillation best / run epochs",
            "faster on both"]
    return f"""## Shrinking for the target

Each transform is exported for the target after `@`: pruning keeps channel counts a multiple of the
profile's `round_to` (phone 16, the XNNPACK tile; MCU 4), `separable auto` replaces only the convs the
target's cost model prices faster as depthwise + pointwise, a pruned channel group whose cut does not lower
the estimated latency keeps its channels, and a rewrite that takes the shrunk float model over the shrink
budget (default top1:1, measured on a held-out 20% of the training samples) is reverted, layer by layer.
Distillation runs at most the epochs shown by the model (early stopping, patience 3). Speed-ups are against
the unshrunk int8 file of the same target. "XNNPACK measured": LiteRT on this CPU, 1 thread, interleaved
with the other files (in brackets the range of the per-round ratios); "phone est." and "MCU est." are
edgepack's cost models (phone-arm64: rough; stm32l4r5: fitted on MLPerf Tiny). "faster on both": the
median time and the median per-round ratio measured faster on XNNPACK, and faster on the MCU estimate ("no
rewrite kept": the target's cost model or the budget refused every rewrite, the file is the unshrunk one).
{"Every transform is faster on both." if not slower else "Not faster on both: " + ", ".join(slower) + "."}

{md_table(head, table)}
"""
