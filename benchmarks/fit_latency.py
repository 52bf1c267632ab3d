"""Fit the MCU latency cost models on published MLPerf Tiny results and write them into the profiles.

    .venv/bin/python benchmarks/fit_latency.py            # fit and print, change nothing
    .venv/bin/python benchmarks/fit_latency.py --write    # also rewrite the [cost] part of the MCU tomls

The model (edgepack/targets/latency.py): cycles of a node = cycles_per_mac[kind] * MACs
+ cycles_per_output[kind] * output elements + overhead[kind]. Each fitted board has four published results
(IC ResNet-8, KWS DS-CNN, AD FC auto-encoder, VWW MobileNetV1-0.25), and three coefficients per core are
fitted on all four (least squares: one equation to spare):

- ``mac``: cycles per MAC of the s8 convolution core (regular k x k conv; pointwise = R_PW x mac and
  depthwise = R_DW x mac, with the ratios fixed as priors below);
- ``fc``: cycles per MAC of fully connected layers (weight streaming, no reuse at batch 1);
- ``out``: cycles per output element of conv / pointwise / depthwise / FC (requantize, clamp, store,
  per-pixel loop set-up), which is what makes layers with few MACs per output slow.

They are found by non-negative least squares on the relative error (rows divided by the measurement).
Everything else is a prior, written as such into the toml. The Cortex-M7 and ESP32-S3 profiles have no
measurements in the table and are derived from the fitted Cortex-M4 by a documented factor.

Held-out check: with four results per board there is no fifth to hold out, so every result is predicted
leave-one-out (the three coefficients refitted on the board's other three results) and written to
results/latency_fit.md. Depthwise and pointwise are separate kinds with separate coefficients, but their
ratio to the conv core is a prior: the published nets cannot separate them (KWS and VWW have the same
depthwise : pointwise MAC ratio, 0.14 and 0.13, and no other net has either).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import mlperf_tiny  # noqa: E402

import edgepack  # noqa: E402
from edgepack.targets.latency import estimate_latency, node_work, op_kind  # noqa: E402
from edgepack.targets.profile import COST_KINDS, PROFILE_DIR, parse_profile  # noqa: E402

MARKER = "# ---- cost model: written by benchmarks/fit_latency.py, do not edit by hand ----"
CONV_KINDS = ("conv", "pointwise", "depthwise", "fully_connected")

# Priors per core family (cycles). Not fitted: three measurements cannot separate them from the rest.
PRIORS = {
    # ARMv7E-M / ARMv8-M with the DSP extension (Cortex-M4, M33; also the base of M7 and ESP32-S3):
    # CMSIS-NN widens int8 to int16 and uses SMLAD (2 MACs per instruction) for both conv and depthwise,
    # but depthwise has no reuse across output channels: about twice the cycles per MAC of the conv core.
    "dsp": {"r_pw": 1.0, "r_dw": 2.0, "out_min": 15.0, "overhead": 1000.0, "elementwise": 20.0,
            "pool_read": 2.0, "other": 4.0},
    # ARMv8.1-M with Helium (Cortex-M85): the conv core reduces 16 int8 lanes per VMLADAVA, depthwise
    # accumulates 4 int32 lanes per VMLA: about 4x the cycles per MAC of the conv core.
    "helium": {"r_pw": 1.0, "r_dw": 4.0, "out_min": 2.0, "overhead": 1000.0, "elementwise": 3.0,
               "pool_read": 0.5, "other": 1.0},
}
# out_min: floor of the fitted cycles per output element. Requantizing one int32 accumulator costs at
# least the instructions of CMSIS-NN's arm_nn_requantize plus bias, offset, clamp and store: ~15-20 on a
# scalar DSP core, ~2 when MVE requantizes 4 lanes at once. The fit may raise it, never lower it.
# overhead: TFLM interpreter loop + kernel Eval set-up per op (~1000 cycles, order of magnitude);
# elementwise: int8 ADD/MUL rescale both inputs and the output per element; pool_read: per element read
# by a pooling window; other: per output element of reshape/concat/pad/softmax (mostly a copy).
FITTED = {"stm32l4r5": "dsp", "ra6m4": "dsp", "ra8d1": "helium"}

# Cores without measurements: every coefficient of the fitted M4 profile times a factor.
M7_SPEEDUP = 1.8  # Cortex-M7 vs M4 per clock on CMSIS-NN int8: 1.6-2x (dual issue, caches); midpoint
ESP32_S3_PUBLISHED_MS = 54.0  # esp-tflite-micro README: person detection with ESP-NN, ESP32-S3 @ 240 MHz


def load_graphs() -> dict:
    graphs = {}
    for name in ("ic", "kws", "ad", "vww"):
        model, shape = mlperf_tiny.build(name)
        graphs[name] = edgepack.load(model, input_shape=shape)
    # TFLM's person_detect model: the same MobileNetV1-0.25 on a 96x96 grayscale image.
    graphs["person"] = edgepack.load(mlperf_tiny.mobilenet_v1(in_channels=1).eval(), input_shape=(1, 1, 96, 96))
    return graphs


def features(graph) -> dict[str, np.ndarray]:
    """Per op kind: [nodes, work (MACs or elements read), output elements]."""
    sums = {k: np.zeros(3) for k in COST_KINDS}
    for node in graph.nodes:
        kind = op_kind(graph, node)
        if kind is None:
            continue
        outputs = sum(int(np.prod(graph.tensors[o].shape)) for o in node.outputs)
        sums[kind] += (1, node_work(graph, node, kind), outputs)
    return sums


def design_row(f: dict, p: dict) -> tuple[np.ndarray, float]:
    """Columns (mac, fc, out) of the fitted coefficients, and the cycles the priors account for."""
    mac = f["conv"][1] + p["r_pw"] * f["pointwise"][1] + p["r_dw"] * f["depthwise"][1]
    out = sum(f[k][2] for k in CONV_KINDS)
    prior = (p["overhead"] * sum(f[k][0] for k in COST_KINDS) + p["elementwise"] * f["elementwise"][2]
             + p["pool_read"] * f["pooling"][1] + p["elementwise"] * f["pooling"][2]
             + p["other"] * f["other"][2])
    return np.array([mac, f["fully_connected"][1], out]), prior


def fit_core(feats: dict, measured_ms: dict, clock_mhz: float, p: dict) -> np.ndarray:
    """(mac, fc, out) minimising the squared relative errors, all >= 0 and out >= out_min."""
    floor = np.array([0.0, 0.0, p["out_min"]])
    rows, rhs = [], []
    for net, ms in measured_ms.items():
        a, prior = design_row(feats[net], p)
        cycles = ms * 1e-3 * clock_mhz * 1e6
        rows.append(a / cycles)  # relative error: every measurement weighs the same
        rhs.append((cycles - prior - a @ floor) / cycles)
    delta, _ = nnls(np.array(rows), np.array(rhs))
    return floor + delta


def coefficients(theta, p: dict) -> dict[str, dict[str, float]]:
    mac, fc, out = (float(t) for t in theta)
    conv = {"overhead_cycles": p["overhead"]}
    return {
        "conv": {"cycles_per_mac": mac, "cycles_per_output": out, **conv},
        "pointwise": {"cycles_per_mac": p["r_pw"] * mac, "cycles_per_output": out, **conv},
        "depthwise": {"cycles_per_mac": p["r_dw"] * mac, "cycles_per_output": out, **conv},
        "fully_connected": {"cycles_per_mac": fc, "cycles_per_output": out, **conv},
        "elementwise": {"cycles_per_mac": 0.0, "cycles_per_output": p["elementwise"], **conv},
        "pooling": {"cycles_per_mac": p["pool_read"], "cycles_per_output": p["elementwise"], **conv},
        "other": {"cycles_per_mac": 0.0, "cycles_per_output": p["other"], **conv},
    }


def scaled(coeffs: dict, factor: float, fields=("cycles_per_mac", "cycles_per_output", "overhead_cycles")):
    return {k: {f: v * factor if f in fields else v for f, v in c.items()} for k, c in coeffs.items()}


def header_of(name: str) -> str:
    text = (PROFILE_DIR / f"{name}.toml").read_text()
    return text.split(MARKER)[0].rstrip() + "\n\n"


def render(name: str, status: str, notes: list[str], coeffs: dict, origin: dict[str, dict[str, str]]) -> str:
    lines = [MARKER] + [f"# {n}" if n else "#" for n in notes] + ["[cost]", f'status = "{status}"']
    for kind in COST_KINDS:
        lines += ["", f"[cost.{kind}]"]
        for field, value in coeffs[kind].items():
            lines.append(f"{field} = {value:.4g}".ljust(34) + f"# {origin[kind][field]}")
    return header_of(name) + "\n".join(lines) + "\n"


def origins(fitted_label: str, prior_label: str, p: dict | None) -> dict:
    """Which coefficient is fitted, derived by a ratio, or a prior (for the comments in the toml)."""
    f, pr = fitted_label, prior_label
    ratio = (lambda r: f"{f} x {r:g} (prior ratio)") if p else (lambda r: f)
    rpw, rdw = (p["r_pw"], p["r_dw"]) if p else (1, 1)
    conv = {"cycles_per_output": f, "overhead_cycles": pr}
    return {"conv": {"cycles_per_mac": f, **conv},
            "pointwise": {"cycles_per_mac": ratio(rpw) if p else f, **conv},
            "depthwise": {"cycles_per_mac": ratio(rdw) if p else f, **conv},
            "fully_connected": {"cycles_per_mac": f, **conv},
            "elementwise": {"cycles_per_mac": "unused", "cycles_per_output": pr, "overhead_cycles": pr},
            "pooling": {"cycles_per_mac": f"{pr} (per element read)", "cycles_per_output": pr,
                        "overhead_cycles": pr},
            "other": {"cycles_per_mac": "unused", "cycles_per_output": pr, "overhead_cycles": pr}}


def profile_from(text: str, name: str):
    return parse_profile(tomllib.loads(text), name)


def predict(graphs: dict, profile, nets) -> dict[str, float]:
    return {net: estimate_latency(graphs[net], profile).total_ms for net in nets}


def board_fit(name: str, family: str, graphs: dict, feats: dict, measured: dict) -> tuple[str, dict, np.ndarray]:
    """(toml text without notes, coefficients, theta) of one board fitted on ``measured`` {net: ms}."""
    p = PRIORS[family]
    theta = fit_core(feats, measured, tomllib.loads(header_of(name))["clock_mhz"], p)
    coeffs, origin = coefficients(theta, p), origins("fitted", "prior", p)
    if theta[2] <= p["out_min"] + 1e-9:
        for kind in CONV_KINDS:
            origin[kind]["cycles_per_output"] = "fitted, at its floor (prior)"
    return origin, coeffs, theta


def leave_one_out(name: str, family: str, graphs: dict, feats: dict) -> dict[str, float]:
    """{net: predicted ms} of each published result, the coefficients fitted on the board's other ones."""
    published, out = mlperf_tiny.PUBLISHED_MS[name], {}
    for net in published:
        origin, coeffs, _ = board_fit(name, family, graphs, feats, {k: v for k, v in published.items() if k != net})
        out[net] = predict(graphs, profile_from(render(name, "fitted", [], coeffs, origin), name), [net])[net]
    return out


def fit_board(name: str, family: str, graphs: dict, feats: dict, today: str) -> tuple[str, dict, dict]:
    """Fit one board on all its published results: (toml text, coefficients, results for the JSON)."""
    p, measured = PRIORS[family], mlperf_tiny.PUBLISHED_MS[name]
    origin, coeffs, theta = board_fit(name, family, graphs, feats, measured)
    pred = predict(graphs, profile_from(render(name, "fitted", [], coeffs, origin), name), list(measured))
    resid = {net: pred[net] / measured[net] - 1 for net in measured}
    loo = leave_one_out(name, family, graphs, feats)
    loo_resid = {net: loo[net] / measured[net] - 1 for net in measured}
    at_floor = theta[2] <= p["out_min"] + 1e-9
    notes = [f"Fitted {today} by NNLS on relative error over the {len(measured)} published MLPerf Tiny results",
             "(TFLM + CMSIS-NN int8) of this board: " + ", ".join(
                 f"{n.upper()} {measured[n]:g} ms" for n in measured) + ".",
             f"Source: {mlperf_tiny.SOURCES[name]}.",
             "Fitted (3): conv cycles_per_mac, fully_connected cycles_per_mac, cycles_per_output of",
             "conv/pointwise/depthwise/fully_connected (one shared value, floor "
             f"{p['out_min']:g}{', reached' if at_floor else ''}).",
             f"Priors: pointwise = {p['r_pw']:g} x conv and depthwise = {p['r_dw']:g} x conv cycles/MAC (the published",
             "nets cannot separate them); overheads, elementwise, pooling and other costs (benchmarks/fit_latency.py).",
             "Residuals: fitted on all / leave-one-out (refitted on the other results; the held-out check):"]
    notes += [f"  {net.upper():<4}{pred[net]:8.4g} ms ({resid[net]:+.1%}) / {loo[net]:8.4g} ms ({loo_resid[net]:+.1%})"
              f" vs {measured[net]:g} ms" for net in measured]
    result = {"status": "fitted", "theta": dict(zip(("mac", "fc", "out"), map(float, theta))),
              "measured_ms": measured, "residuals": resid, "leave_one_out_ms": loo,
              "leave_one_out_residuals": loo_resid, "fitted_on": list(measured)}
    return render(name, "fitted", notes, coeffs, origin), coeffs, result


def residuals_md(results: dict, today: str) -> str:
    """results/latency_fit.md: per fitted board and published result, the fit's and leave-one-out's error."""
    rows = []
    for name in FITTED:
        r = results[name]
        for net, ms in r["measured_ms"].items():
            loo = r["leave_one_out_residuals"][net]
            rows.append(f"| {name} | {net.upper()} | {ms:g} | {r['predicted_ms'][net]:.4g} | {r['residuals'][net]:+.1%} "
                        f"| {r['leave_one_out_ms'][net]:.4g} | {loo:+.1%} | {'yes' if abs(loo) <= 0.15 else 'NO'} |")
    worst = max(abs(v) for n in FITTED for v in results[n]["leave_one_out_residuals"].values())
    return "\n".join([
        "# Latency model residuals on the published MLPerf Tiny results", "",
        f"`benchmarks/fit_latency.py --write`, {today}. Each fitted board (TFLM + CMSIS-NN int8) has four published "
        "results and three fitted coefficients (conv and FC cycles per MAC, cycles per output); pointwise and "
        "depthwise cycles per MAC are priors times the conv's (KWS and VWW have the same depthwise : pointwise "
        "MAC ratio, so the published data cannot separate them). `fit` = fitted on all four; `leave-one-out` = "
        "refitted on the board's other three, then predicted: the held-out check. There is no fifth result per "
        "board to hold out, and no per-layer timing is published.", "",
        "| board | net | published ms | fit ms | fit error | leave-one-out ms | leave-one-out error | within 15% |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        f"Worst leave-one-out error: {worst:.0%}. AD is the only net with fully connected layers, so with AD left out "
        "the FC cost is unconstrained; IC is the only one dominated by 3x3 convolutions. Derived (not fitted) "
        "profiles: stm32h7a3 = stm32l4r5 / 1.8, esp32-s3 = stm32l4r5 scaled to one published ESP-NN figure.", ""])


def derive_m7(m4: dict, today: str) -> tuple[str, dict]:
    notes = [f"Derived {today}, NOT fitted (no measurement of this board in the fit data): every coefficient",
             f"of the fitted stm32l4r5 (Cortex-M4) profile divided by {M7_SPEEDUP:g}, the assumed per-clock "
             "speed-up", "of a Cortex-M7 (dual issue, caches) over a Cortex-M4 on CMSIS-NN int8 (1.6-2x)."]
    origin = origins("derived from stm32l4r5", "derived from stm32l4r5", None)
    text = render("stm32h7a3", "derived", notes, scaled(m4, 1 / M7_SPEEDUP), origin)
    return text, {"status": "derived", "factor_vs_m4": 1 / M7_SPEEDUP}


def derive_esp32_s3(m4: dict, person_graph, today: str) -> tuple[str, dict]:
    """One scale factor on the M4's per-MAC and per-output cycles, set by the one published ESP-NN figure.
    The per-op overhead is scalar interpreter code and keeps the M4's cycles. The latency is linear in
    the factor: solve it from two points."""
    simd = ("cycles_per_mac", "cycles_per_output")
    origin = origins("derived from stm32l4r5", "prior (as stm32l4r5)", None)
    at = [estimate_latency(person_graph, profile_from(render(
        "esp32-s3", "derived", [], scaled(m4, f, simd), origin), "esp32-s3")).total_ms for f in (0.0, 1.0)]
    factor = (ESP32_S3_PUBLISHED_MS - at[0]) / (at[1] - at[0])
    notes = [f"Derived {today}, NOT fitted on MLPerf Tiny (no measurement of this chip in the fit data):",
             f"the cycles per MAC and per output of the fitted stm32l4r5 (Cortex-M4) profile times {factor:.3f},",
             "the one factor that reproduces the esp-tflite-micro README figure: person detection",
             f"(MobileNetV1-0.25, 96x96x1) with ESP-NN in {ESP32_S3_PUBLISHED_MS:g} ms at 240 MHz; per-op "
             "overheads as the M4.", "Assumes ESP-NN keeps the M4's relative costs of conv, depthwise and FC; "
             "only the overall", "per-clock speed of the SIMD kernels is taken from that figure."]
    text = render("esp32-s3", "derived", notes, scaled(m4, factor, simd), origin)
    return text, {"status": "derived", "factor_vs_m4": factor}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the [cost] part of the MCU profile tomls")
    args = ap.parse_args(argv)
    today = datetime.date.today().isoformat()
    graphs = load_graphs()
    feats = {k: features(g) for k, g in graphs.items()}
    texts, results, fitted = {}, {}, {}
    for name, family in FITTED.items():
        texts[name], fitted[name], results[name] = fit_board(name, family, graphs, feats, today)
    texts["stm32h7a3"], results["stm32h7a3"] = derive_m7(fitted["stm32l4r5"], today)
    texts["esp32-s3"], results["esp32-s3"] = derive_esp32_s3(fitted["stm32l4r5"], graphs["person"], today)

    nets = ["ic", "kws", "ad", "vww", "person"]
    print(f"{'profile':<11}" + "".join(f"{n:>20}" for n in nets))
    for name, text in texts.items():
        prof = profile_from(text, name)
        pred = results[name]["predicted_ms"] = predict(graphs, prof, nets)
        known = dict(mlperf_tiny.PUBLISHED_MS.get(name, {}))
        if name == "esp32-s3":
            known["person"] = ESP32_S3_PUBLISHED_MS
        cells = [f"{pred[n]:9.3g}" + (f" ({pred[n] / known[n] - 1:+5.1%})" if n in known else " " * 9)
                 for n in nets]
        print(f"{name:<11}" + "".join(f"{c:>20}" for c in cells))
        print(" " * 11 + "cycles: " + ", ".join(f"{k} {prof.cost[k].cycles_per_mac:.3g}/MAC" for k in CONV_KINDS)
              + f"; {prof.cost['conv'].cycles_per_output:.3g}/output, {prof.cost['conv'].overhead_cycles:.0f}/op")
        if args.write:
            (PROFILE_DIR / f"{name}.toml").write_text(text)
    out = ROOT / "benchmarks" / "results" / "latency_fit.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": today, "profiles": results}, indent=2, sort_keys=True) + "\n")
    out.with_suffix(".md").write_text(residuals_md(results, today))
    print(f"wrote {out}" + (" and the MCU profile tomls" if args.write else " (tomls unchanged: use --write)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
