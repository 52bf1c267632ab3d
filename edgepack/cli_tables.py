"""The command line's tables: a Report's checks and a model's summary, printed with rich. Part of the CLI
(cli.py calls these); the library itself never prints."""
from __future__ import annotations


def _agreement(m: dict) -> str:
    for key in ("top1_agreement", "per_position_agreement"):
        if key in m:
            return f"{m[key]:.1%}"
    return ""


def _equal_pct(fraction: float) -> str:
    """A percentage that reads 100% only when it is: 99.98% stays 99.98%."""
    text = f"{100 * fraction:.1f}%"
    return f"{int(10000 * fraction) / 100:.2f}%" if fraction < 1 and text == "100.0%" else text


def print_checks(report) -> None:
    """Validation table, worst layers and verdict of a Report, if it has them."""
    from rich.console import Console

    console = Console()
    if report.validation:
        _print_validation(console, report)
    for finding in [f for f in report.lint if f["severity"] == "warn"][:5]:
        console.print(f"lint: {finding['rule']} at '{finding['node']}': {finding['message']}")
    worst = (report.per_layer or {}).get("worst", [])
    if worst:
        console.print("lowest per-layer SQNR: " + ", ".join(f"{r['op']} '{r['tensor']}' {r['sqnr_db']:.1f} dB"
                                                           for r in worst[:3]))
    for advice in (report.per_layer or {}).get("advice", []):
        console.print(f"hint: {advice}")
    if report.shrink:
        b, a = report.shrink["before"], report.shrink["after"]
        console.print(f"shrunk: MACs {b['macs']:,} -> {a['macs']:,} ({report.shrink['macs_ratio']:.2f}x), "
                      f"params {b['params']:,} -> {a['params']:,} ({report.shrink['params_ratio']:.2f}x)")
        for r in (report.shrink.get("budget") or {}).get("reverted", []):
            console.print(f"  {r['rewrite']} '{r['layer']}' {r['note']}")
    if report.latency:
        _print_latency(console, report.latency)
    if report.verdict:
        ok = report.verdict.fits
        console.print(f"[{'green' if ok else 'red'}]{'fits' if ok else 'does not fit'} {report.verdict.target}[/]")
        for m in report.verdict.messages:
            console.print(f"  {m}")


def _print_validation(console, report) -> None:
    from rich.table import Table

    table = Table(title=f"accuracy and agreement with the float model (target {report.target})")
    table.add_column("artifact @ runtime", no_wrap=True)
    for col in ("accuracy", "agree", "SQNR dB", "TFLM = ref"):
        table.add_column(col, justify="right", no_wrap=True)
    for run, m in report.validation.items():
        if "not_run" in m:
            why = f"no {m['missing_op']} kernel" if "missing_op" in m else m["not_run"]
            table.add_row(run.replace("@", " @ "), f"not run: {why}", "", "", "")
            continue
        exact = m.get("vs_litert_reference") or m.get("vs_litert_x86")
        table.add_row(run.replace("@", " @ "),
                      f"{m['accuracy']:.1%}" if "accuracy" in m else "",
                      _agreement(m), f"{m['sqnr_db']:.1f}" if "sqnr_db" in m else "",
                      "" if not exact else ("bit-exact" if exact["bit_exact"] else
                                            f"{_equal_pct(exact['identical_fraction'])} equal, "
                                            f"max {exact['max_lsb']} LSB"))
    console.print(table)
    used = sorted({m["metrics_used"] for m in report.validation.values() if "metrics_used" in m})
    why = sorted({m["vs_litert_reference"]["why"] for m in report.validation.values()
                  if "why" in (m.get("vs_litert_reference") or {})})
    arm = ["TFLM = ref on the litert-aarch64 row: LiteRT's aarch64 build (qemu-user) against its x86 build"
           ] if any("vs_litert_x86" in m for m in report.validation.values()) else []
    for line in [f"agree = {u}" for u in used] + [f"TFLM != ref: {w}" for w in why] + arm:
        console.print(line)


def _print_latency(console, latency) -> None:
    console.print(f"estimated latency on {latency.target}: {latency.total_ms:.2f} ms "
                  f"({latency.cost_model} cost model)")
    if latency.measured_here_ms is not None:
        console.print(f"LiteRT on this machine: {latency.measured_here_ms:.3f} ms")
    if latency.not_taken_by_xnnpack:
        from collections import Counter
        counts = Counter(r["op"] for r in latency.not_taken_by_xnnpack)
        console.print("not taken by XNNPACK (run on LiteRT's own kernels): "
                      + ", ".join(f"{op} x{n}" for op, n in sorted(counts.items())))


def print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    quantized = any("scale" in row for row in summary["nodes"])
    table = Table(title="nodes")
    cols = ["name", "op", "output shape", "params", "MACs"] + (["dtype", "scale", "zero point"] if quantized else [])
    for col in cols:
        table.add_column(col, justify="right" if col in ("params", "MACs", "scale", "zero point") else "left")
    for row in summary["nodes"]:
        op = row["op"] + (f"+{row['activation']}" if row.get("activation") else "")
        cells = [row["name"], op, "x".join(map(str, row["output_shape"])), f"{row['params']:,}", f"{row['macs']:,}"]
        if quantized:
            cells += [row.get("dtype", ""), "" if row.get("scale") is None else f"{row['scale']:.6g}",
                      "" if row.get("zero_point") is None else str(row["zero_point"])]
        table.add_row(*cells)
    console = Console()
    for kind in ("inputs", "outputs"):
        for name, shape in summary.get(kind, {}).items():
            console.print(f"{kind[:-1]} {name}: {'x'.join(map(str, shape))}")
    console.print(table)
    t = summary["totals"]
    size = f", {t['bytes']:,} bytes" if "bytes" in t else ""
    console.print(f"total: {t['nodes']} nodes, {t['params']:,} params, {t['macs']:,} MACs{size}")
