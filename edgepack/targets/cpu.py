"""What this machine's CPU does to integer kernels (read once from the OS)."""
from __future__ import annotations

import functools
import platform
from pathlib import Path

VNNI_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}  # int8 dot products summed in int32, no int16 step


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def ort_u8s8_saturates() -> bool:
    """True on x86 CPUs with AVX2 but no VNNI: onnxruntime's U8S8 kernels multiply with vpmaddubsw, whose
    pairwise int16 sums saturate (255 x 127 x 2 > 32767)."""
    flags = cpu_flags()
    return platform.machine().lower() in ("x86_64", "amd64") and "avx2" in flags and not flags & VNNI_FLAGS
