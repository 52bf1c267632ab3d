"""What an int8 .tflite costs once compressed: for an over-the-air update or a compressed flash image.

- Huffman: the int8 constant buffers (weights) entropy-coded, one canonical code per tensor (Deep
  Compression's last step; a clustered layer's K values need about log2(K) bits or fewer), the rest of
  the file as it is;
- zlib and lzma (Python's standard library) on the whole file.
Each is decoded again and compared with the original bytes, so a size is only reported for a lossless
coding (``lossless``).
"""
from __future__ import annotations

import lzma
import zlib

import numpy as np

from .huffman import coded_size, decode, encode

ROUND_TRIP_LIMIT = 1 << 20  # bytes of weights decoded again to prove the Huffman round trip (pure Python)


def int8_constants(model: bytes) -> dict[str, bytes]:
    """Tensor name -> raw bytes of each int8 constant (weights) of a .tflite."""
    from ai_edge_litert import schema_py_generated as schema

    fb = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    out = {}
    for t in fb.subgraphs[0].tensors:
        buf = fb.buffers[t.buffer] if t.buffer < len(fb.buffers) else None
        if t.type == schema.TensorType.INT8 and buf is not None and buf.data is not None and len(buf.data):
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            out[name] = np.asarray(buf.data, np.uint8).tobytes()
    return out


def huffman_file_bytes(model: bytes) -> dict:
    """Bytes of the file with its int8 weights Huffman-coded per tensor (plus each code table)."""
    weights = int8_constants(model)
    raw = sum(len(w) for w in weights.values())
    coded = sum(coded_size(w) for w in weights.values())
    checked = raw <= ROUND_TRIP_LIMIT
    if checked:
        for w in weights.values():
            payload, nbits, lengths = encode(w)
            if decode(payload, nbits, lengths) != w:
                raise AssertionError("Huffman round trip failed")  # a bug in huffman.py, never user input
    return {"bytes": len(model) - raw + coded, "weight_bytes": raw, "coded_weight_bytes": coded,
            "bits_per_weight": 8.0 * coded / max(raw, 1), "lossless": "decoded and compared" if checked
            else f"not decoded (over {ROUND_TRIP_LIMIT} bytes of weights)"}


def stdlib_compressed_bytes(model: bytes) -> dict[str, dict]:
    """{"zlib": {...}, "lzma": {...}}: whole-file compression at the highest level, decoded and compared."""
    out = {}
    for name, packed, unpack in (("zlib", zlib.compress(model, 9), zlib.decompress),
                                 ("lzma", lzma.compress(model, preset=9 | lzma.PRESET_EXTREME),
                                  lzma.decompress)):
        if unpack(packed) != model:
            raise AssertionError(f"{name} round trip failed")
        out[name] = {"bytes": len(packed), "lossless": "decoded and compared"}
    return out
