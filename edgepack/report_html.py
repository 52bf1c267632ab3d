"""report.json -> one self-contained report.html: tables, and plots embedded as PNG (no external files)."""
from __future__ import annotations

import base64
import html
import io
import math


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _figure(width=7.0, height=3.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def plot_sqnr(layers: list[dict]) -> str:
    rows = [r for r in layers if r.get("sqnr_db") is not None and math.isfinite(r["sqnr_db"])]
    if not rows:
        return ""
    fig, ax = _figure(max(6.0, 0.35 * len(rows)), 3.2)
    values = [r["sqnr_db"] for r in rows]
    colors = ["#c0392b" if v < 20 else "#e67e22" if v < 30 else "#2e86c1" for v in values]
    ax.bar(range(len(rows)), values, color=colors)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['op']}\n{r['tensor'][-18:]}" for r in rows], rotation=70, fontsize=6)
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("per-layer SQNR, int8 vs float (higher is better)")
    return _png(fig)


def plot_memory(memory: dict) -> str:
    bars = [("flash", memory.get("flash_bytes"), memory.get("flash_budget")),
            ("RAM (arena)", memory.get("ram_bytes"), memory.get("ram_budget"))]
    bars = [b for b in bars if b[1] is not None and b[2]]
    if not bars:
        return ""
    fig, ax = _figure(6.0, 1.8)
    for i, (_name, used, budget) in enumerate(bars):
        pct = 100.0 * used / budget
        ax.barh(i, 100, color="#eaeded")
        ax.barh(i, max(pct, 0.4), color="#2e86c1" if used <= budget else "#c0392b")
        ax.text(min(pct, 100) + 1, i, f"{used / 1024:.1f} of {budget / 1024:.0f} KiB ({pct:.1f}%)",
                va="center", fontsize=8)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([b[0] for b in bars])
    ax.set_xlim(0, max(110, max(100.0 * b[1] / b[2] for b in bars) + 10))
    ax.set_xlabel("% of the target's budget")
    ax.set_title("memory against the target's budget")
    return _png(fig)


def plot_latency(latency: dict) -> str:
    per_op = latency.get("per_op_type_ms") or {}
    if not per_op:
        return ""
    items = sorted(per_op.items(), key=lambda kv: -kv[1])
    fig, ax = _figure(6.0, 0.4 * len(items) + 1.0)
    ax.barh([k for k, _ in items], [v for _, v in items], color="#2e86c1")
    ax.invert_yaxis()
    ax.set_xlabel("estimated ms")
    ax.set_title(f"estimated latency per op type (total {latency.get('total_ms', 0):.2f} ms)")
    return _png(fig)


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else html.escape(str(v))
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    return html.escape("" if v is None else str(v))


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f2f4f4}.ok{color:#1e8449;font-weight:bold}.bad{color:#c0392b;font-weight:bold}img{max-width:100%}"""


def _verdict_html(r: dict) -> list[str]:
    verdict = r.get("verdict") or {}
    if not verdict:
        return []
    ok = verdict.get("fits")
    return [f"<h2>Verdict for {html.escape(str(r.get('target')))}: "
            f"<span class='{'ok' if ok else 'bad'}'>{'fits' if ok else 'does not fit'}</span></h2>",
            "<ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in verdict.get("messages", [])) + "</ul>"]


def _validation_html(val: dict) -> list[str]:
    cols = ["run", "accuracy", "top1_agreement", "per_position_agreement", "cosine", "sqnr_db", "rmse", "mae",
            "l2r", "tflm_vs_ref"]
    if any("not_run" in v for v in val.values()):
        cols.append("not_run")
    rows = [{"run": k, **v, "tflm_vs_ref": _tflm_vs_ref(v.get("vs_litert_reference"))} for k, v in val.items()]
    parts = ["<h2>Accuracy and agreement with the float model</h2>" + _table(rows, cols)]
    notes = sorted({v[k] if k == "metrics_used" else v[k]["why"] for v in val.values()
                    for k in ("metrics_used", "vs_litert_reference")
                    if k in v and (k == "metrics_used" or "why" in (v[k] or {}))})
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return parts


def render_html(r: dict) -> str:
    parts = [f"<h1>edgepack report: {html.escape(r['model'])}</h1>"] + _verdict_html(r)
    s = r.get("summary") or {}
    parts.append(f"<p>{s.get('nodes', 0)} nodes, {s.get('params', 0):,} parameters, {s.get('macs', 0):,} MACs; "
                 f"inputs {html.escape(str(r.get('inputs')))}, outputs {html.escape(str(r.get('outputs')))}</p>")
    parts.append("<h2>Artifacts</h2>" + _table([{"kind": k, **v} for k, v in r.get("artifacts", {}).items()],
                                               ["kind", "path", "bytes"]))
    val = r.get("validation") or {}
    if val:
        parts += _validation_html(val)
    pl = r.get("per_layer") or {}
    if pl.get("layers"):
        parts.append("<h2>Where int8 loses accuracy: per-layer SQNR</h2>" + plot_sqnr(pl["layers"]))
        parts.append("<p>worst layers:</p>" + _table(pl.get("worst", []), ["tensor", "op", "sqnr_db"]))
        if pl.get("advice"):
            parts.append("<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in pl["advice"]) + "</ul>")
    if r.get("lint"):
        parts.append("<h2>Quantization-friendliness check</h2>" +
                     _table(r["lint"], ["severity", "rule", "node", "message", "suggestion"]))
    mem = r.get("memory") or {}
    if mem:
        parts.append("<h2>Memory</h2>" + plot_memory(mem) +
                     _table([{"what": k, "bytes": v} for k, v in mem.items() if isinstance(v, (int, float))],
                            ["what", "bytes"]))
    lat = r.get("latency") or {}
    if lat:
        parts.append("<h2>Latency</h2>" + plot_latency(lat) +
                     _table([{"what": k, "value": v} for k, v in lat.items() if not isinstance(v, dict)],
                            ["what", "value"]))
    energy = r.get("energy") or {}
    if energy:
        parts.append(f"<h2>Energy per inference (estimate, beside {(lat or {}).get('total_ms', 0):.3g} ms)</h2>"
                     + _table([{"what": k, "value": energy.get(k)} for k in
                               ("total_uj", "weights_from_flash_uj", "activations_in_sram_uj", "macs_uj",
                                "weight_bytes", "activation_bytes", "macs")], ["what", "value"])
                     + f"<p>{html.escape(energy.get('model', ''))}. Per access: "
                     + html.escape(", ".join(f"{k} {v}" for k, v in (energy.get("per_access") or {}).items()))
                     + "</p>")
    ladder = r.get("ladder") or {}
    if ladder.get("rungs"):
        parts.append("<h2>Size ladder (vs " + html.escape(ladder.get("reference", "")) + ")</h2>"
                     + _table([_ladder_row(x) for x in ladder["rungs"]], ["rung", "what", "bytes", "x_smaller",
                                                                          "accuracy", "sqnr_db"]))
        if ladder.get("notes"):
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in ladder["notes"]) + "</ul>")
    parts += _budget_html(r.get("budget") or {})
    comp = r.get("compatibility") or {}
    if comp:
        parts.append("<h2>What the target cannot run</h2>" +
                     _table(comp.get("unsupported", []), ["op", "node", "reason"]))
    if r.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in r["notes"]) + "</ul>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>edgepack report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def _budget_html(budget: dict) -> list[str]:
    """--accuracy-budget: each fix tried, what it bought and cost, and the settings that reproduce it."""
    if not budget.get("steps"):
        return []
    rows = [{"step": x["step"], "kept": x.get("kept", x.get("skipped")), **(x.get("measured") or {}),
             **(x.get("cost") or {}), "seconds": x.get("seconds")} for x in budget["steps"]]
    return [f"<h2>Accuracy budget {html.escape(str(budget['budget']))}: " + ("met" if budget["met"] else "not met")
            + "</h2>" + _table(rows, ["step", "kept", "top1_points_lost", "sqnr_db", "flash_bytes", "arena_bytes",
                                      "latency_ms", "seconds"])
            + "<pre>" + html.escape(budget["reproduce"]["toml"]) + "</pre>"]


def _tflm_vs_ref(exact: dict | None) -> str:
    if not exact:
        return ""
    if exact["bit_exact"]:
        return "bit-exact"
    pct = 100 * exact["identical_fraction"]
    return f"{min(pct, 99.99):.2f}% equal, max {exact['max_lsb']} LSB"


def _ladder_row(rung: dict) -> dict:
    runs = rung.get("runs")
    if not isinstance(runs, dict):
        return {**rung, "accuracy": runs}
    acc = ", ".join(f"{rt} {m['accuracy']:.4g}" for rt, m in runs.items() if m.get("accuracy") is not None)
    sqnr = ", ".join(f"{rt} {m['sqnr_db']:.3g}" for rt, m in runs.items() if m.get("sqnr_db") is not None)
    return {**rung, "accuracy": acc, "sqnr_db": sqnr}
