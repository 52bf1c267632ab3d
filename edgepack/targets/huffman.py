"""A small canonical Huffman coder over bytes: how many bytes the int8 weights of a model take once
entropy-coded (Deep Compression's last step), for the size ladder of the report.

Canonical codes: only each symbol's code length is stored (the table), codes are assigned in order of
(length, symbol), so a decoder rebuilds them from the lengths alone. ``encode`` / ``decode`` round-trip
exactly; ``coded_size`` is the payload plus the table, in bytes.
"""
from __future__ import annotations

import heapq
from collections import Counter

import numpy as np


def code_lengths(data: bytes) -> dict[int, int]:
    """Huffman code length per byte value present (a single distinct value gets length 1)."""
    counts = Counter(data)
    if not counts:
        return {}
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    # heap of (weight, tie-break, symbols in the subtree); merging two deepens all their symbols by one
    heap = [(n, sym, [sym]) for sym, n in sorted(counts.items())]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    tie = 256
    while len(heap) > 1:
        n1, _, s1 = heapq.heappop(heap)
        n2, _, s2 = heapq.heappop(heap)
        for sym in s1 + s2:
            lengths[sym] += 1
        heapq.heappush(heap, (n1 + n2, tie, s1 + s2))
        tie += 1
    return lengths


def canonical_codes(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
    """symbol -> (code, length), codes assigned in (length, symbol) order."""
    codes, code, prev = {}, 0, 0
    for sym, length in sorted(lengths.items(), key=lambda kv: (kv[1], kv[0])):
        code <<= length - prev
        codes[sym] = (code, length)
        code, prev = code + 1, length
    return codes


def encode(data: bytes) -> tuple[bytes, int, dict[int, int]]:
    """(payload, number of bits, code lengths)."""
    lengths = code_lengths(data)
    codes = canonical_codes(lengths)
    bits = "".join(format(codes[b][0], f"0{codes[b][1]}b") for b in data)
    nbits = len(bits)
    padded = bits + "0" * (-nbits % 8)
    payload = int(padded, 2).to_bytes(len(padded) // 8, "big") if padded else b""
    return payload, nbits, lengths


def decode(payload: bytes, nbits: int, lengths: dict[int, int]) -> bytes:
    """The bytes ``encode`` coded (a canonical decoder: code lengths are all it needs)."""
    by_code = {(length, code): sym for sym, (code, length) in canonical_codes(lengths).items()}
    bits = np.unpackbits(np.frombuffer(payload, np.uint8))[:nbits]
    out, code, length = bytearray(), 0, 0
    for bit in bits.tolist():
        code, length = (code << 1) | bit, length + 1
        sym = by_code.get((length, code))
        if sym is not None:
            out.append(sym)
            code, length = 0, 0
    return bytes(out)


def table_bytes(lengths: dict[int, int]) -> int:
    """Bytes to store the code lengths: (symbol, length) pairs, or 256 4-bit lengths if that is smaller."""
    return min(2 * len(lengths), 128) + 1


def coded_size(data: bytes) -> int:
    """Bytes of ``data`` Huffman-coded: the payload and its table (from the lengths, without encoding)."""
    lengths = code_lengths(data)
    counts = Counter(data)
    nbits = sum(counts[s] * n for s, n in lengths.items())
    return (nbits + 7) // 8 + table_bytes(lengths)
