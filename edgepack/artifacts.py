"""Writing artifacts safely: never overwrite without force, never leave a half-written file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputExistsError


def check_writable(paths, force: bool) -> None:
    """Refuse up front (before any work) when an output exists and force is off."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise OutputExistsError(f"{existing[0]} already exists (use --force to overwrite)")


def write_bytes(path, data: bytes) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))
