"""AdaRound: learned up/down rounding of int8 Conv/Gemm weights on calibration data (Nagel et al., 2020).

Round-to-nearest is optimal per weight, not per layer output: rounding some weights the other way can
cancel the errors of others. Walking the graph in topological order on the calibration samples,
fake-quantized with the chosen parameters (upstream layers already rounded), each Conv/Gemm gets a
continuous variable per weight, ``h(V) = clip(sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1)`` (rectified
sigmoid), and its weights become ``s * clip(floor(w / s) + h(V), -127, 127)``; Adam minimises the squared
error of the layer's int8 output (after its fused activation) against float, plus a regulariser
``sum(1 - |2h - 1|^beta)`` whose beta anneals from 20 to 2, pushing every h to 0 or 1. The scales stay the
per-channel int8 scales already chosen (each channel's largest weight keeps its nearest rounding, so the
scales the quantizer derives again from the rounded weights are the same). A layer keeps the learned
rounding only where its int8 output error on the calibration samples is lower than round-to-nearest.

Deterministic: a seeded generator draws the mini-batches, torch runs single-threaded. Cost: ``iters``
Adam steps per layer on mini-batches of BATCH samples (benchmarks/results/autoquant.md measures it).
"""
from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph
from .output_error import db_or_none, ratio_to_db

log = logging.getLogger(__name__)

ROUNDED_OPS = ("Conv", "Gemm")
ZETA, GAMMA = 1.1, -0.1  # rectified sigmoid stretch (the paper's values)
REG_WEIGHT = 0.01  # regulariser weight against the reconstruction loss (the paper's lambda)
BETA_START, BETA_END, WARMUP = 20.0, 2.0, 0.2  # annealing of the regulariser (first 20%: no regulariser)
LR = 1e-2
BATCH = 32
ITERS = 200  # default Adam steps per layer
MAX_SAMPLES = 256


@dataclass
class AdaRound:
    """What AdaRound did: ``graph`` is the float graph whose rounded layers' weights are replaced by their
    int8 grid values (quantizing it again with the same ranges gives the learned integers),
    ``flips`` per weight tensor the packed mask of weights rounded away from nearest (calibration.json)."""

    graph: Graph
    layers: list[dict] = field(default_factory=list)
    flips: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    iters: int = ITERS

    def gain_db(self) -> dict[str, float]:
        """Per kept layer: its int8 output error drop (dB) against round-to-nearest."""
        return {r["node"]: r["gain_db"] for r in self.layers if r["kept"]}

    def to_json(self) -> dict:
        return {"rule": "per conv/FC layer, learned up/down rounding of the int8 weights (same scales) kept "
                        "where the layer's int8 output error on the calibration samples is lower than "
                        "round-to-nearest", "iters_per_layer": self.iters, "seconds": round(self.seconds, 2),
                "layers_rounded": sum(1 for r in self.layers if r["kept"]), "layers": self.layers}

    @property
    def note(self) -> str:
        kept = sum(1 for r in self.layers if r["kept"])
        return (f"adaround: learned rounding kept on {kept} of {len(self.layers)} conv/FC layers "
                f"({self.seconds:.1f} s, {self.iters} steps per layer)")


def adaround(graph: Graph, qgraph: Graph, x: np.ndarray, *, iters: int = ITERS, seed: int = 0) -> AdaRound:
    """Learn the rounding of every Conv/Gemm weight of ``qgraph`` (``graph`` quantized: its scales are
    kept) on samples ``x`` (at most MAX_SAMPLES used). One step of the accuracy-budget ladder."""
    import torch

    from ..ir.torch_exec import run, to_module

    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = np.asarray(x[:MAX_SAMPLES], np.float32)
        qmod = to_module(qgraph, fake_quant=True).eval()
        ref = {k: torch.from_numpy(v) for k, v in run(graph, [x], keep="all").items()}
        result = AdaRound(graph.copy(), iters=iters)
        gen = torch.Generator().manual_seed(seed)
        last_use = {i: idx for idx, n in enumerate(graph.nodes) for i in n.inputs}
        env = {name: _quantized(ref[name], qgraph, name) for name in graph.inputs}
        for idx, n in enumerate(graph.nodes):
            if _roundable(qgraph, n):
                record, q = _round_layer(n, qmod, qgraph, env, ref, iters, gen)
                result.layers.append(record)
                if record["kept"]:
                    _install(result, qmod, qgraph, n, q)
            with torch.no_grad():
                env[n.outputs[0]] = _quantized(qmod.node_value(n, env), qgraph, n.outputs[0])
            for i in set(n.inputs):  # keep memory flat: drop values no later node reads
                if last_use.get(i) == idx and i in env:
                    del env[i]
    finally:
        torch.set_num_threads(threads)
    result.seconds = time.perf_counter() - t0
    log.info(result.note)
    return result


def _roundable(qgraph: Graph, n) -> bool:
    if n.op not in ROUNDED_OPS or len(n.inputs) < 2:
        return False
    w = qgraph.tensors[n.inputs[1]]
    return w.is_const and w.quant is not None and w.dtype.startswith("float") and w.data.size > 0


def _quantized(value, q: Graph, name: str):
    from ..ir.torch_exec import fake_quant_activation

    qp = q.tensors[name].quant if name in q.tensors else None
    return fake_quant_activation(value, qp) if qp is not None and value.is_floating_point() else value


def _scales(w: np.ndarray, qp):
    import torch

    shape = [1] * w.ndim
    if qp.axis is not None:
        shape[qp.axis] = len(qp.scale)
    return torch.tensor(np.asarray(qp.scale, np.float64).reshape(shape))


def _nearest(scaled):
    import torch

    return torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)  # half away from zero, as the emitters


def _round_layer(n, qmod, qgraph: Graph, env: dict, ref: dict, iters: int, gen):
    """(record, int8 weights as float64 tensor) for one layer: learned rounding against nearest."""
    import torch

    from ..ir.torch_exec import apply_activation

    wname, out = n.inputs[1], n.outputs[0]
    w = np.asarray(qgraph.tensors[wname].data, np.float64)
    qp = qgraph.tensors[wname].quant
    s = _scales(w, qp)
    scaled = torch.from_numpy(w) / s
    nearest = _nearest(scaled).clamp(-127, 127)
    floor = torch.floor(scaled)
    frozen = _channel_max_mask(scaled, qp.axis)  # keeps each channel's scale exactly
    rest = (scaled - floor).clamp(1e-4, 1 - 1e-4)
    v = torch.log((rest - GAMMA) / (ZETA - rest)).float().requires_grad_(True)  # h(v) == rest at the start
    floor32, s32 = floor.float(), s.float()
    inputs = {i: env[i] for i in n.inputs if i in env}
    target = ref[out]
    count = len(target)
    opt = torch.optim.Adam([v], lr=LR)
    warm = int(WARMUP * iters)
    for step in range(iters):
        pick = torch.randint(0, count, (min(BATCH, count),), generator=gen)
        h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
        wq = s32 * torch.clamp(floor32 + h, -127, 127)
        y = apply_activation(n, qmod.node_value(n, {**{k: t[pick] for k, t in inputs.items()}, wname: wq},
                                                activation=False))
        loss = _recon(y, target[pick])
        if step >= warm:
            beta = BETA_END + (BETA_START - BETA_END) * (1 - (step - warm) / max(iters - warm, 1))
            loss = loss + REG_WEIGHT * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        learned = floor + (v.double() >= 0).double()  # h >= 0.5 exactly where v >= 0 (symmetric stretch)
        learned = torch.where(frozen, nearest, learned).clamp(-127, 127)
        err_rtn = _layer_error(n, qmod, qgraph, inputs, wname, nearest * s, ref)
        err_ada = _layer_error(n, qmod, qgraph, inputs, wname, learned * s, ref)
    kept = err_ada < err_rtn
    flipped = int((learned != nearest).sum())
    record = {"node": n.name, "weights": int(w.size), "flipped": flipped, "kept": bool(kept),
              "error_db_nearest": db_or_none(ratio_to_db(err_rtn)), "error_db_adaround": db_or_none(ratio_to_db(err_ada)),
              "gain_db": round(ratio_to_db(err_ada) - ratio_to_db(err_rtn), 3) if err_ada > 0 and err_rtn > 0 else 0.0}
    return record, learned


def _recon(y, target):
    """Squared error summed over channels, mean over the rest (as the AdaRound reference does)."""
    d = (y - target) ** 2
    return d.sum(1).mean() if d.dim() > 1 else d.mean()


def _layer_error(n, qmod, qgraph: Graph, inputs: dict, wname: str, wq, ref: dict) -> float:
    """Relative squared error of the layer's int8 output (output quantization included) with weights ``wq``."""
    from ..ir.torch_exec import apply_activation

    out = n.outputs[0]
    y = _quantized(apply_activation(n, qmod.node_value(n, {**inputs, wname: wq.float()}, activation=False)),
                   qgraph, out)
    r = ref[out].double()
    return float(((y.double() - r) ** 2).sum()) / max(float((r * r).sum()), 1e-30)


def _channel_max_mask(scaled, axis):
    """True at each output channel's largest |w| (per tensor: the largest overall)."""

    a = scaled.abs()
    if axis is None:
        return a == a.max()
    dims = tuple(d for d in range(a.dim()) if d != axis)
    return a == a.amax(dim=dims, keepdim=True)


def _install(result: AdaRound, qmod, qgraph: Graph, n, q) -> None:
    """Put the learned int8 grid values into the result's float graph and the running module (so later
    layers see them) and record the flip mask."""
    import torch

    wname = n.inputs[1]
    w = np.asarray(qgraph.tensors[wname].data, np.float64)
    s = _scales(w, qgraph.tensors[wname].quant)
    grid = (q * s).numpy()
    t = result.graph.tensors[wname]
    t.data = grid.astype(t.data.dtype)
    getattr(qmod, qmod.attr_of[wname]).data = torch.from_numpy(np.array(t.data, np.float32, copy=True))
    nearest = _nearest(torch.from_numpy(w) / s).clamp(-127, 127)
    result.flips[wname] = pack_mask((q != nearest).numpy())


def pack_mask(mask: np.ndarray) -> str:
    return base64.b64encode(np.packbits(mask.ravel().astype(np.uint8)).tobytes()).decode("ascii")


def apply_flips(graph: Graph, qgraph: Graph, flips: dict[str, str]) -> Graph:
    """A copy of ``graph`` with recorded roundings (calibration.json) applied: the weights ``flips`` marks
    are rounded away from nearest at the scales of ``qgraph`` (``graph`` quantized with the same ranges)."""
    import torch

    from ..errors import DataError

    g = graph.copy()
    for name, packed in flips.items():
        t, qt = g.tensors.get(name), qgraph.tensors.get(name)
        if t is None or t.data is None or qt is None or qt.quant is None:
            raise DataError(f"calibration file: adaround rounding for '{name}' does not match this model")
        w = np.asarray(t.data, np.float64)
        bits = np.frombuffer(base64.b64decode(packed), np.uint8)
        if bits.size != (w.size + 7) // 8:
            raise DataError(f"calibration file: adaround rounding for '{name}' does not match this model")
        mask = torch.from_numpy(np.unpackbits(bits)[:w.size].reshape(w.shape).astype(bool))
        s = _scales(w, qt.quant)
        scaled = torch.from_numpy(w) / s
        nearest = _nearest(scaled)
        other = torch.where(nearest > scaled, nearest - 1, nearest + 1)  # the other neighbour on the grid
        q = torch.where(mask, other, nearest).clamp(-127, 127)
        t.data = (q * s).numpy().astype(t.data.dtype)
    return g
