"""The size ladder of an export, Deep Compression style: what each step costs in bytes and in accuracy.

float file -> pruned -> sparse -> clustered -> int8 -> (TFLM LUT-compressed) -> Huffman-coded weights -> zlib / lzma.
Every rung that is a file is run on the real runtimes (float files on LiteRT's reference kernels, int8
ones on LiteRT and TFLite Micro; a LUT file on TFLM, the only runtime with its DECODE op) and compared with
the ORIGINAL float model (accuracy with labels, top-1 agreement, SQNR). The coded rungs are lossless
(decoded and compared), so they run as the int8 file does.
"""
from __future__ import annotations

import logging
import warnings


from .ir import Graph

log = logging.getLogger(__name__)

RUNG_RUNTIMES = ("litert-ref", "tflm")  # every runnable rung, float ones included, on both
WHAT = {"float": "the original float .tflite", "pruned": "after the structural passes (pruning, separable, low rank), "
        "float", "sparse": "after unstructured pruning, float (the zeros stored dense)", "clustered": "after weight clustering, float (same bytes, K values per layer)",
        "int8": "the int8 .tflite written", "tflm_lut": "int8 with TFLM LUT-compressed weights (DECODE ops)",
        "huffman": "int8 with its weights Huffman-coded per tensor", "zlib": "int8 file, zlib -9",
        "lzma": "int8 file, lzma -9e"}


def _measure(data: bytes, runtimes, x, labels, reference) -> dict:
    from .targets.metrics import compare
    from .targets.validate import run_artifact

    out = {}
    for runtime in runtimes:
        y, _ = run_artifact(data, "tflite", runtime, x, reference.shape)
        m = compare(reference, y.reshape(reference.shape), labels)
        out[runtime] = {k: m[k] for k in ("accuracy", "top1_agreement", "sqnr_db") if m.get(k) is not None}
    return out


def _rung(name: str, nbytes: int, float_bytes: int, **extra) -> dict:
    return {"rung": name, "what": WHAT[name], "bytes": int(nbytes), "x_smaller": float_bytes / max(nbytes, 1),
            **extra}


def size_ladder(original: Graph, stages: dict[str, Graph], int8: bytes, x, labels,
                clustered: dict | None = None) -> dict:
    """The ladder section of the report. ``stages``: float graphs after each shrink step (shrink_stages);
    ``x``/``labels``: validation samples (at most a few hundred)."""
    from .exporter.emit_tflite import to_tflite
    from .ir.torch_exec import run
    from .targets import tflm_lut
    from .targets.compressed_sizes import huffman_file_bytes, stdlib_compressed_bytes

    reference = run(original, [x])[original.outputs[0]]
    float_file = to_tflite(original, int8=False)
    fb = len(float_file)
    rungs = [_rung("float", fb, fb, runs=_measure(float_file, RUNG_RUNTIMES, x, labels, reference))]
    for name in ("pruned", "sparse", "clustered"):
        if name in stages:
            data = to_tflite(stages[name], int8=False)
            extra = _packed(stages[name], data, clustered) if name == "clustered" else {}
            rungs.append(_rung(name, len(data), fb, runs=_measure(data, RUNG_RUNTIMES, x, labels, reference),
                               **extra))
    int8_runs = _measure(int8, RUNG_RUNTIMES, x, labels, reference)
    rungs.append(_rung("int8", len(int8), fb, runs=int8_runs))
    notes = []
    why_not = tflm_lut.available()
    if why_not is None:
        with warnings.catch_warnings():  # the compressor warns about tiny tensors it grows; we report bytes
            warnings.simplefilter("ignore")
            lut = tflm_lut.lut_compress(int8)
        if lut is not None:
            data, tensors = lut
            runs = _measure(data, ("tflm",), x, labels, reference)
            rungs.append(_rung("tflm_lut", len(data), fb, runs=runs, tensors=tensors,
                               arena_bytes=_tflm_arena(data), int8_arena_bytes=_tflm_arena(int8)))
        else:
            notes.append("TFLM LUT compression: no int8 weight with at most 128 values per table "
                         "(use --cluster K)")
    else:
        notes.append(f"TFLM LUT compression not emitted: {why_not}")
    lossless = {"runs": "as int8 (lossless)"}
    huff = huffman_file_bytes(int8)
    rungs.append(_rung("huffman", huff.pop("bytes"), fb, **huff, **lossless))
    for name, info in stdlib_compressed_bytes(int8).items():
        rungs.append(_rung(name, info["bytes"], fb, lossless=info["lossless"], **lossless))
    best = min((r for r in rungs if r["rung"] in ("huffman", "zlib", "lzma")), key=lambda r: r["bytes"])
    return {"rungs": rungs, "reference": "the original float model (before any shrink step)",
            "samples": int(len(x)), "best": {"rung": best["rung"], "bytes": best["bytes"],
                                             "x_smaller": best["x_smaller"]}, "notes": notes}


def _packed(graph: Graph, data: bytes, clustered: dict | None) -> dict:
    """A clustered float file as Deep Compression stores it: each clustered weight as log2(K)-bit indices
    plus a float32 codebook (the rest of the file as it is). ``clustered``: weight -> {values, index_bits}
    (the shrink report's cluster layers; K can differ per layer)."""
    if not clustered:
        return {}
    saved = 0
    for name, layer in clustered.items():
        t = graph.tensors.get(name)
        if t is not None and t.is_const and t.dtype == "float32":
            saved += 4 * t.size - ((t.size * layer["index_bits"] + 7) // 8 + 4 * layer["values"])
    return {"index_packed_bytes": len(data) - saved,
            "index_bits": max(layer["index_bits"] for layer in clustered.values())}


def _tflm_arena(data: bytes) -> int | None:
    from .targets.runtimes import TFLM

    return TFLM(data).arena_used()
