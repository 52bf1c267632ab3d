"""The aarch64 build of LiteRT, run under qemu-user: the phone target's own ARM kernels (XNNPACK's NEON /
dot-product paths), not the x86 ones, checked on this machine. tools/install_arm_runtime.sh installs it:
qemu-aarch64-static, an aarch64 Python 3.11 in ``<root>/sysroot`` and the aarch64 wheels of ai-edge-litert
and numpy in ``<root>/site``; ``<root>`` is $EDGEPACK_AARCH64_ROOT, default /opt/edgepack-aarch64.

The runtime child (isolated.py) runs there with the same job code as the native one; it imports only the
parts of edgepack that runtime_jobs needs (numpy and LiteRT are all that the aarch64 side has), so the
package's __init__ (which imports the frontends) is skipped.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

DEFAULT_ROOT = "/opt/edgepack-aarch64"
QEMU = ("qemu-aarch64-static", "qemu-aarch64")
INSTALL_HINT = "tools/install_arm_runtime.sh installs it"
QEMU_CPU = "cortex-a76"  # the phone-arm64 profile's core: XNNPACK picks that core's kernels (NEON dot product)


def root() -> Path:
    return Path(os.environ.get("EDGEPACK_AARCH64_ROOT") or DEFAULT_ROOT)


def _qemu() -> str | None:
    return next((found for found in map(shutil.which, QEMU) if found), None)


def missing() -> str | None:
    """Why the aarch64 runtime cannot run here (one line), or None when it can."""
    if _qemu() is None:
        return f"qemu-user is not installed ({' or '.join(QEMU)} not on PATH; {INSTALL_HINT})"
    base = root()
    if not (base / "sysroot/usr/bin/python3.11").is_file():
        return f"no aarch64 Python in {base}/sysroot ({INSTALL_HINT})"
    if not (base / "sysroot/proc/cpuinfo").is_file():  # LiteRT crashes on the host's (install script)
        return f"no aarch64 /proc/cpuinfo in {base}/sysroot ({INSTALL_HINT})"
    if not (base / "site/ai_edge_litert/interpreter.py").is_file():
        return f"no aarch64 ai-edge-litert wheel in {base}/site ({INSTALL_HINT})"
    return None


def litert_version() -> str | None:
    """The version of the aarch64 ai-edge-litert wheel (its dist-info), None when absent."""
    found = sorted(root().glob("site/ai_edge_litert-*.dist-info"))
    return found[-1].name[len("ai_edge_litert-"):-len(".dist-info")] if found else None


def child_command(serve_code: str) -> list[str]:
    """argv of the aarch64 runtime child running ``serve_code`` (after the edgepack stub is in place).
    ``-I``: no PYTHONPATH or user site of this machine's (x86) Python leaks into the aarch64 one."""
    base, edgepack_dir = root(), Path(__file__).resolve().parents[1]
    boot = ("import sys, types; sys.path.insert(0, %r); pkg = types.ModuleType('edgepack'); "
            "pkg.__path__ = [%r]; sys.modules['edgepack'] = pkg; " % (str(base / "site"), str(edgepack_dir)))
    return [_qemu(), "-cpu", QEMU_CPU, "-L", str(base / "sysroot"), str(base / "sysroot/usr/bin/python3.11"), "-I", "-c",
            boot + serve_code]
