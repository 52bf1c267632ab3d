"""Reading the user's files safely: only regular files (a FIFO would block forever, /dev/zero never ends),
bounded in size, with one clear line when a file is missing, special, too big or not valid UTF-8.

A leaf module like errors.py: every stage may use it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError

GiB = 1 << 30
MAX_MODEL_BYTES = 8 * GiB  # larger than any model edgepack can fit on a phone, let alone an MCU
MAX_DATA_BYTES = 8 * GiB  # one sample file (.npy/.npz/image)
MAX_TEXT_BYTES = 64 << 20  # config, target profile, labels .txt, calibration.json

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket"}


def _size(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / (1 << 20):.1f} MiB"


def check_file(path, what: str, max_bytes: int | None = None, *, allow_dir: bool = False,
               error=InputError) -> Path:
    """``path`` if it is a regular file (or a folder, with allow_dir) no larger than ``max_bytes``,
    else ``error`` (an EdgepackError class) naming the path, what it is and what is allowed. Symlinks
    are followed."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except NotADirectoryError:
        raise error(f"{path}: {what} not found (a parent is a file, not a folder)") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        if allow_dir:
            return path
        raise error(f"{path}: is a folder; the {what} must be a file")
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise error(f"{path}: is {kind}, not a regular file; the {what} must be a file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: the {what} is {_size(st.st_size)}, "
                    f"more than the {_size(max_bytes)} edgepack reads")
    return path


def read_bytes(path, what: str, max_bytes: int, error=InputError) -> bytes:
    """The bytes of a regular file, refused (not read) when it is special or larger than ``max_bytes``."""
    path = check_file(path, what, max_bytes, error=error)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # it grew while we read it
        raise error(f"{path}: the {what} is more than the {_size(max_bytes)} edgepack reads")
    return data


def read_text(path, what: str, max_bytes: int = MAX_TEXT_BYTES, error=InputError) -> str:
    """A UTF-8 text file, bounded like read_bytes."""
    data = read_bytes(path, what, max_bytes, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None


def check_utf8(text: str, what: str, error=InputError) -> None:
    """A path or argument must be valid UTF-8: it is written into reports and printed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace") if isinstance(text, str) else text
        raise error(f"{what} '{shown}' is not valid UTF-8; rename it") from None
