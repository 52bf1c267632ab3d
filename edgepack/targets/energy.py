"""Energy per inference, from memory traffic and arithmetic (the Deep Compression point: a weight fetched
from flash or DRAM costs far more than the MAC that uses it).

energy = weight bytes read from flash (or DRAM) x pJ/byte
       + activation bytes read and written in SRAM x pJ/byte
       + MACs x pJ/MAC
with the per-access energies of the target profile's ``[energy]`` table (each with its source). The
traffic is a lower bound, counted on the int8 .tflite: every constant byte is read once, every op reads
each of its activation inputs once and writes its output once (kernels that re-read inputs or weights,
e.g. im2col convolutions, move more); core, instruction and static power are not included.
"""
from __future__ import annotations

from dataclasses import dataclass

from .tflite_file import TfliteModel

PJ = 1e-12


@dataclass(frozen=True)
class EnergyCosts:
    pj_per_mac: float  # one 8-bit multiply-accumulate
    pj_per_flash_byte: float  # reading one weight byte where the model is stored (flash, or DRAM on a phone)
    pj_per_sram_byte: float  # reading or writing one activation byte in SRAM (the tensor arena / cache)
    source: str  # where the figures come from

    def to_dict(self) -> dict:
        return dict(vars(self))


def traffic(info: TfliteModel) -> dict[str, int]:
    """Bytes of weights read and of activations read + written per inference (see the module doc)."""
    itemsize = {"int8": 1, "uint8": 1, "int16": 2, "float16": 2, "int32": 4, "float32": 4, "int64": 8,
                "float64": 8, "bool": 1}
    weight = sum(t.data_bytes for t in info.tensors if t.is_const)
    act = 0
    for op in info.ops:
        for i in [*op.inputs, *op.outputs]:
            if i >= 0 and not info.tensors[i].is_const:
                t = info.tensors[i]
                n = 1
                for d in t.shape:
                    n *= max(int(d), 1)
                act += n * itemsize.get(t.dtype, 4)
    return {"weight_bytes": weight, "activation_bytes": act}


def estimate_energy(info: TfliteModel, macs: int, costs: EnergyCosts) -> dict:
    """The energy section of the report, in microjoules per inference, with the per-access costs."""
    moved = traffic(info)
    parts = {"weights_from_flash_uj": moved["weight_bytes"] * costs.pj_per_flash_byte * PJ * 1e6,
             "activations_in_sram_uj": moved["activation_bytes"] * costs.pj_per_sram_byte * PJ * 1e6,
             "macs_uj": int(macs) * costs.pj_per_mac * PJ * 1e6}
    return {"total_uj": sum(parts.values()), **parts, **moved, "macs": int(macs),
            "per_access": costs.to_dict(),
            "model": "lower bound: each weight byte read once, each op reads its inputs and writes its output "
                     "once; core, instruction and static power not included"}


def graph_energy_pj(graph, costs: EnergyCosts) -> float:
    """Energy of one inference of an IR graph as int8 (the same model as ``estimate_energy``, counted on
    the graph before it is written: 1 byte per weight and activation element, 4 per bias), in pJ. Used to
    rank shrink options (``--shrink-cost energy``)."""
    import numpy as np

    from ..ir import OPS
    from ..ir.summary import node_macs

    weights = acts = macs = 0
    for node in graph.nodes:
        weight_slots = OPS[node.op].weights
        for i, name in enumerate(node.inputs):
            t = graph.tensors.get(name) if name else None
            if t is None:
                continue
            n = int(np.prod(t.shape, dtype=np.int64))
            if t.is_const:
                weights += n * (4 if i == 2 and i in weight_slots else 1)
            else:
                acts += n
        acts += sum(int(np.prod(graph.tensors[o].shape, dtype=np.int64)) for o in node.outputs if o)
        macs += node_macs(graph, node)
    return weights * costs.pj_per_flash_byte + acts * costs.pj_per_sram_byte + macs * costs.pj_per_mac
