"""Writing artifacts safely: never overwrite without force, never leave a half-written file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError, OutputExistsError


def check_writable(paths, force: bool) -> None:
    """Refuse up front (before any work) when an output exists and force is off, or when a folder
    to write into cannot be created or written (a file, a read-only place), without creating it."""
    for folder in sorted({Path(p).parent for p in paths}):
        check_folder(folder)
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} already exists (use --force to overwrite)")
    for p in paths:
        if Path(p).is_dir():
            raise OutputExistsError(f"{p} is a folder where an artifact goes; move it away")


def check_folder(folder) -> None:
    """``folder`` exists as a writable folder or can be created: probe the nearest existing ancestor
    with a temporary folder, removed at once, so that nothing is left behind."""
    folder = Path(folder)
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = "the output folder" if probe == folder else f"a parent of the output folder {folder}"
        raise InputError(f"is a file, not a folder ({what})", str(probe))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgepack-probe.", dir=probe))
    except OSError as exc:
        raise InputError(f"cannot write the output folder here: {exc.strerror or exc}", str(folder)) from None


def write_bytes(path, data: bytes) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, quota, a folder in the way: the user's to fix
            raise InputError(f"cannot write: {exc.strerror or exc}", str(path)) from None
        raise
    return path


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
