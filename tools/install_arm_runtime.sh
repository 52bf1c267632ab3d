#!/usr/bin/env bash
# Install what `validate --target phone-arm64` needs to run a .tflite on the real aarch64 build of LiteRT:
# qemu-user (Debian's qemu-user-static), an aarch64 Python 3.11 unpacked from Debian's arm64 packages into a
# private root (nothing of it is installed into the system's dpkg database), and the aarch64 wheels of
# ai-edge-litert and numpy at the versions the host Python has. Idempotent: a second run checks and exits.
#
#   tools/install_arm_runtime.sh [HOST_PYTHON]     (default: .venv/bin/python, else python3.11)
#
# Where: $EDGEPACK_AARCH64_ROOT (default /opt/edgepack-aarch64): sysroot/ (the Python) and site/ (the wheels),
# the layout edgepack/targets/aarch64.py looks for. Needs root (apt-get) and Debian's and PyPI's registries.
set -euo pipefail
cd "$(dirname "$0")/.."
HOST_PY=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3.11 )}
ROOT=${EDGEPACK_AARCH64_ROOT:-/opt/edgepack-aarch64}
SYSROOT=$ROOT/sysroot
SITE=$ROOT/site

version() { "$HOST_PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
LITERT=$(version ai-edge-litert)
NUMPY=$(version numpy)
STAMP="litert=$LITERT numpy=$NUMPY"
if [ -f "$ROOT/.installed" ] && [ "$(cat "$ROOT/.installed")" = "$STAMP" ] \
   && command -v qemu-aarch64-static >/dev/null; then
  echo "aarch64 runtime already installed in $ROOT ($STAMP)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi
apt-get update -q >/dev/null
command -v qemu-aarch64-static >/dev/null || apt-get install -y -q --no-install-recommends qemu-user-static >/dev/null

# The aarch64 Python and the libraries it, numpy and LiteRT load (downloaded, then unpacked: not installed).
DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6 zlib1g libexpat1
      libffi8 libssl3 libbz2-1.0 liblzma5 libuuid1 libcrypt1 libsqlite3-0 libtinfo6 libncursesw6 libreadline8
      libnsl2 libtirpc3 libdb5.3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && apt-get download -q "${DEBS[@]/%/:arm64}" >/dev/null 2>&1)
rm -rf "$ROOT.new" && mkdir -p "$ROOT.new/sysroot"
for deb in "$WORK"/*.deb; do dpkg -x "$deb" "$ROOT.new/sysroot"; done

# The aarch64 wheels (manylinux 2.17-2.36: Debian 12's glibc is 2.36), unpacked into site/.
PLATFORMS=()
for v in 17 27 28 31 34 35 36; do PLATFORMS+=(--platform "manylinux_2_${v}_aarch64"); done
pip() { "$HOST_PY" -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }  # a config's missing mirror
pip download -q --disable-pip-version-check --only-binary=:all: "${PLATFORMS[@]}" \
  --python-version 3.11 --implementation cp -d "$WORK/wheels" "ai-edge-litert==$LITERT" "numpy==$NUMPY"
pip install -q --disable-pip-version-check --no-deps --only-binary=:all: "${PLATFORMS[@]}" \
  --python-version 3.11 --implementation cp --target "$ROOT.new/site" "$WORK"/wheels/*.whl

# qemu-user 7.2 shows the guest this machine's (x86) /proc/cpuinfo, on which LiteRT's CPU detection (cpuinfo)
# crashes (SIGSEGV in the Interpreter's constructor); with -L, qemu opens <sysroot>/proc/cpuinfo instead: a
# Cortex-A76's (the phone-arm64 profile's core, the CPU edgepack/targets/aarch64.py asks qemu to emulate).
mkdir -p "$ROOT.new/sysroot/proc"
for ((i = 0; i < $(nproc --all); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' "$i"
done > "$ROOT.new/sysroot/proc/cpuinfo"

# A first run under qemu: checks the install and byte-compiles what the runtime child imports.
qemu-aarch64-static -cpu cortex-a76 -L "$ROOT.new/sysroot" "$ROOT.new/sysroot/usr/bin/python3.11" -I -c "
import sys; sys.path.insert(0, '$ROOT.new/site')
import platform, numpy
from ai_edge_litert.interpreter import Interpreter
assert platform.machine() == 'aarch64', platform.machine()
"

rm -rf "$ROOT" && mv "$ROOT.new" "$ROOT"
echo "$STAMP" > "$ROOT/.installed"
echo "aarch64 runtime installed in $ROOT ($STAMP)"
