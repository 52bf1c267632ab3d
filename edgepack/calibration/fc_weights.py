"""Per-tensor or per-channel int8 weights for each fully connected (Gemm) layer, chosen from data.

Per-channel FC weights give every output neuron its own scale: rows with small weights stop sharing
the step of the largest row. They cost TFLM persistent arena (an int32 multiplier and shift per output
channel, 8 B each) and 12 B of flash per channel (scale + zero-point), so they are chosen per layer,
where they lower the layer's error by at least ``MIN_GAIN_DB``.

The error measured is the layer output's noise from weight rounding alone, on the layer's real inputs
(the calibration samples run through the float graph): per output channel, noise power over signal
power, averaged over channels and given in dB. Averaging over channels (rather than one SQNR over the
whole tensor) is what catches the starved small rows that the next layers amplify: on a 10-Dense
autoencoder trained on digits per-channel weights gave +1.5 to +4.6 dB at the model output (3 seeds).
Without samples (ranges from a calibration file) the inputs are taken as white (the rows' own error).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edgepack.input_batch import as_float32
from ..ir import Graph
from .output_error import db_or_none
from ..ir.quant import quantize_array, symmetric_weight_params

log = logging.getLogger(__name__)

MIN_GAIN_DB = 1.0  # below this the extra TFLM arena and flash buy too little
MAX_SAMPLES = 64  # rows of layer inputs used to measure (enough for a stable average)
TFLM_BYTES_PER_CHANNEL = 8  # int32 multiplier + int32 shift kept by FULLY_CONNECTED's Prepare


def weight_noise_db(w: np.ndarray, x: np.ndarray | None, per_channel: bool) -> float:
    """Channel-averaged SNR (dB) of ``x @ w.T`` against ``x @ wq.T``; ``x`` None: white inputs."""
    w = np.asarray(w, np.float64)
    qp = symmetric_weight_params(w, 0 if per_channel else None)
    err = w - quantize_array(w, qp).astype(np.float64) * np.asarray(qp.scale).reshape(-1, 1)
    if x is None:
        signal, noise = np.sum(w * w, axis=1), np.sum(err * err, axis=1)
    else:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        signal, noise = np.sum((x @ w.T) ** 2, axis=0), np.sum((x @ err.T) ** 2, axis=0)
    live = signal > 1e-30 * max(float(signal.max(initial=0.0)), 1e-300)  # dead channels carry no signal
    if not live.any():
        return float("inf")
    ratio = float(np.mean(noise[live] / signal[live]))
    return float("inf") if ratio == 0.0 else -10.0 * np.log10(ratio)


@dataclass
class FcChoice:
    """Which Gemm layers get per-channel weights, and what each choice measured."""

    per_channel: frozenset[str] = frozenset()
    layers: list[dict] = field(default_factory=list)  # node, channels, per-tensor/per-channel dB, chosen
    measured_on: str = "calibration samples"
    decided_against: dict | None = None  # per-channel layers given up for a tight arena (without_layers)

    @property
    def tflm_bytes(self) -> int:
        return sum(r["channels"] * TFLM_BYTES_PER_CHANNEL for r in self.layers if r["per_channel"])

    def to_json(self) -> dict:
        out = {"rule": f"per-channel where the layer's weight-noise SNR gains >= {MIN_GAIN_DB} dB",
               "measured_on": self.measured_on, "layers": self.layers, "tflm_persistent_bytes": self.tflm_bytes}
        if self.decided_against:
            out["decided_against_for_arena"] = self.decided_against
        return out

    def without_layers(self, over_bytes: int, keep: frozenset = frozenset()) -> FcChoice:
        """This choice with per-channel layers turned back to per-tensor, the least gain first, until they
        free ``over_bytes`` of TFLM arena (layers in ``keep``, set by the user, stay); what it gave up is in
        ``decided_against``."""
        rows = sorted((r for r in self.layers if r["per_channel"] and r["node"] not in keep), key=_gain_db)
        dropped, saved = [], 0
        for r in rows:
            if saved >= over_bytes:
                break
            saved += r["channels"] * TFLM_BYTES_PER_CHANNEL
            dropped.append({"node": r["node"], "layer_snr_given_up_db": round(_gain_db(r), 2),
                            "bytes_saved": r["channels"] * TFLM_BYTES_PER_CHANNEL})
        names = {d["node"] for d in dropped}
        layers = [{**r, "per_channel": False, "decided_against": "arena"} if r["node"] in names else r
                  for r in self.layers]
        return FcChoice(self.per_channel - names, layers, self.measured_on,
                        {"over_budget_bytes": int(over_bytes), "bytes_saved": saved, "layers": dropped})


def _gain_db(row: dict) -> float:
    """Per-channel minus per-tensor weight-noise SNR of a layer row (None in a row means exact: inf)."""
    def db(v):
        return float("inf") if v is None else v
    return db(row["per_channel_db"]) - db(row["per_tensor_db"])


def choose_fc_weights(graph: Graph, samples: np.ndarray | None, float_values: dict | None = None) -> FcChoice:
    """Measure per-tensor vs per-channel weights of every Gemm on its inputs from ``samples``
    (``float_values``: the float activations of samples[:MAX_SAMPLES] when a caller already ran them)."""
    gemms = [n for n in graph.nodes if n.op == "Gemm" and graph.const(n.inputs[1]) is not None]
    if not gemms:
        return FcChoice()
    inputs = {}
    if samples is not None and len(samples):
        from ..ir.torch_exec import run

        keep = sorted({n.inputs[0] for n in gemms})
        inputs = float_values if float_values is not None else run(
            graph, [as_float32(samples[:MAX_SAMPLES])], keep=keep)
    layers, chosen = [], set()
    for n in gemms:
        w = np.asarray(graph.const(n.inputs[1]), np.float64)
        x = inputs.get(n.inputs[0])
        t_db, c_db = weight_noise_db(w, x, False), weight_noise_db(w, x, True)
        pick = bool(c_db - t_db >= MIN_GAIN_DB)
        if pick:
            chosen.add(n.name)
        layers.append({"node": n.name, "channels": int(w.shape[0]), "per_tensor_db": db_or_none(t_db),
                       "per_channel_db": db_or_none(c_db), "per_channel": pick})
    choice = FcChoice(frozenset(chosen), layers,
                      "calibration samples" if inputs else "weights alone (no samples)")
    log.info("per-channel FC weights on %d of %d Gemm layers (+%d B TFLM arena)", len(chosen), len(gemms),
             choice.tflm_bytes)
    return choice


