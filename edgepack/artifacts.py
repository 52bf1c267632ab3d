"""Writing outputs safely: a run builds every file in a hidden staging folder and moves the whole set into
``--out`` only when it succeeded, so ``--out`` holds the previous set or the new one, never a mix, never a
half-written file, and nothing is overwritten without ``force``.

Hidden names beside ``--out`` (``.<out>.edgepack-*``), or inside it (``.edgepack-*``) when its parent is
not writable:
  lock           flock'ed from the start of a run (before any long work) to its end, so a second run into
                 the same ``--out`` refuses at once with OutputBusyError; removed when the run ends.
  staging-<pid>  the run's files while it works; a killed run leaves it and the next run deletes it.
  commit-<pid>   a complete set being moved file by file; a run killed mid-move leaves it and the next run
                 finishes the move.
The move (``commit``): ``--out`` missing or empty -> one rename of the staging folder; ``--out`` holding
only files of ours -> one atomic exchange (renameat2 RENAME_EXCHANGE), then the old set is deleted;
otherwise (files of the user there, ``--out`` is the working directory, no renameat2) file by file,
report.json last. Files of the user are never touched; ours are the names the command writes.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
import sys
import threading
from pathlib import Path

from .errors import InputError, OutputBusyError, OutputExistsError

# The files `export` writes: report kind -> file name.
EXPORT_FILES = {"float_onnx": "model.float.onnx", "float_tflite": "model.float.tflite",
                "int8_onnx": "model.int8.onnx", "int8_tflite": "model.int8.tflite",
                "calibration": "calibration.json", "plan": "plan.json",
                "report": "report.json", "report_html": "report.html"}
_LAST = ("report.html", "report.json")  # moved last file by file: a report means the set is whole
_MANIFEST, _OLD = ".edgepack-manifest", ".edgepack-old"


def write_bytes(path, data: bytes) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place (mode from the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # disk full, quota: the user's to fix
            raise InputError(f"cannot write: {exc.strerror or exc}", str(path)) from None
        raise
    return path


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


class StagedOutput:
    """``with StagedOutput(out, names, force) as stage:`` write into ``stage.dir``; a normal exit moves the
    set into ``out``, an exception or signal deletes it and leaves ``out`` as it was."""

    def __init__(self, out, names, force: bool = False):
        self.out = Path(out)  # as the user wrote it, for messages
        self.real = Path(os.path.realpath(out))  # a symlinked --out: work on the folder it points to
        self.names = frozenset(names)
        self.force = force
        self.dir: Path | None = None
        self._lock_fd = None

    def path(self, name: str) -> Path:
        return self.dir / name

    # -- start: lock, recover, check, stage --------------------------------------------------------------
    def __enter__(self) -> StagedOutput:
        if self.real.exists() and not self.real.is_dir():
            raise OutputExistsError(f"{self.out} is a file, not a folder (--out takes a folder)")
        parent = self.real.parent
        self._made = [p for p in [parent, *parent.parents] if not p.exists()]  # removed again on failure
        blocker = next((p for p in [parent, *parent.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise InputError(f"is a file, not a folder (a parent of --out {self.out})", str(blocker))
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the folder ({exc.strerror})", str(parent)) from None
        if self.real.name and os.access(parent, os.W_OK | os.X_OK):
            self.home, self.prefix, self.inside = parent, f".{self.real.name}.edgepack-", False
        elif self.real.is_dir() and os.access(self.real, os.W_OK | os.X_OK):
            self.home, self.prefix, self.inside = self.real, ".edgepack-", True
        else:
            raise InputError("cannot write there (no write permission)", str(self.out))
        with _signals_held():  # a Ctrl-C between taking the lock and returning would leave it held
            self._lock()
            try:
                self._recover()
                self._check_free()
                self.dir = self.home / f"{self.prefix}staging-{os.getpid()}"
                os.mkdir(self.dir, 0o777)  # the umask decides, as for the files
            except BaseException:
                self._unlock()
                self._remove_made()
                raise
        return self

    def _remove_made(self) -> None:
        """A failed run leaves no folder behind that it created for --out (when still empty)."""
        if not os.path.lexists(self.real):
            for folder in self._made:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)

    def _lock(self) -> None:
        import fcntl

        path = self.home / f"{self.prefix}lock"
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:  # /proc, a read-only mount that os.access did not tell
                raise InputError(f"cannot write there ({exc.strerror})", str(self.out)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise OutputBusyError(f"{self.out} is being written by another edgepack run"
                                      f"{f' (pid {owner})' if owner else ''}: wait for it or choose "
                                      "another --out") from None
            # The lock file is removed at the end of a run: make sure we locked the one still there.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._lock_fd, self._lock_path = fd, path
                return
            os.close(fd)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)  # while still holding it: see _lock
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        """Under the lock no other run works on this --out: whatever a run left here was killed."""
        pattern = re.compile(re.escape(self.prefix) + r"(staging|commit)-\d+")
        for entry in sorted(os.listdir(self.home)):
            match = pattern.fullmatch(entry)
            if match and match[1] == "commit":
                _finish_move(self.home / entry, self.real)
            elif match:
                _remove(self.home / entry)
        if self.real.is_dir():  # hidden temporaries of edgepack before staging (model.onnx.x1y2z3.tmp)
            legacy = re.compile(r"\.(%s)\.\w{8}\.tmp" % "|".join(re.escape(n) for n in sorted(self.names)))
            for entry in os.listdir(self.real):
                if legacy.fullmatch(entry):
                    _remove(self.real / entry)

    def _check_free(self) -> None:
        existing = sorted(n for n in self.names if os.path.lexists(self.real / n))
        if existing and not self.force:
            raise OutputExistsError(f"{self.out / existing[0]} already exists (use --force to overwrite)")

    # -- end: commit or discard --------------------------------------------------------------------------
    def __exit__(self, exc_type, exc, tb) -> None:
        with _signals_held():  # a Ctrl-C now would cut the move or the clean-up in two
            try:
                if exc_type is None:
                    try:
                        self._commit()
                    except OSError as err:  # e.g. permissions changed meanwhile: the user's to fix
                        raise InputError(f"cannot move the new files into place: {err.strerror or err}",
                                         str(self.out)) from None
            finally:
                if self.dir is not None and os.path.lexists(self.dir):
                    _remove(self.dir)
                self._unlock()
                self._remove_made()

    def _commit(self) -> None:
        _sync_tree(self.dir)
        self._check_free()  # again: something may have appeared in --out while we worked
        if not self.inside and not _holds_cwd(self.real):
            entries = _entries(self.real)
            if not entries:  # missing or empty: one rename
                if entries is not None:
                    os.chmod(self.dir, self.real.stat().st_mode & 0o7777)
                try:
                    os.rename(self.dir, self.real)
                    self.dir = None
                    _sync_dir(self.home)
                    return
                except OSError as exc:  # e.g. it appeared meanwhile, or is a mount point
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EBUSY, errno.EXDEV):
                        raise
                self._check_free()
                entries = _entries(self.real)
            if entries is not None and set(entries) <= self.names:
                os.chmod(self.dir, self.real.stat().st_mode & 0o7777)
                if _exchange(self.dir, self.real):  # self.dir now holds the old set: deleted on exit
                    _sync_dir(self.home)
                    return
        names = sorted(os.listdir(self.dir), key=lambda n: (n in _LAST, _LAST.index(n) if n in _LAST else 0, n))
        (self.dir / _MANIFEST).write_text(json.dumps({"new": names, "ours": sorted(self.names)}))
        commit = self.home / f"{self.prefix}commit-{os.getpid()}"
        os.rename(self.dir, commit)
        self.dir = None  # from here on the set is committed: a failure leaves it for the next run to finish
        _finish_move(commit, self.real)


def staged_output(out, names, force: bool = False) -> StagedOutput:
    """The context manager a command writes its output through (see StagedOutput)."""
    return StagedOutput(out, names, force)


def _finish_move(commit: Path, out: Path) -> None:
    """Move a committed set into ``out`` file by file; can be repeated after a kill at any point."""
    manifest = json.loads((commit / _MANIFEST).read_text())
    new, ours = manifest["new"], manifest["ours"]
    pending = [n for n in new if os.path.lexists(commit / n)]
    old = commit / _OLD
    old.mkdir(exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in ours:  # set aside what is ours in --out, except what a killed move already put there
        if os.path.lexists(out / name) and (name in pending or name not in new):
            if os.path.lexists(old / name):
                _remove(old / name)
            os.rename(out / name, old / name)
    for name in pending:
        os.rename(commit / name, out / name)
    _sync_dir(out)
    _remove(commit)


def _entries(folder: Path) -> list[str] | None:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return None


def _holds_cwd(folder: Path) -> bool:
    """Replacing the folder the process stands in would leave it in a deleted folder."""
    cwd = os.getcwd()
    return cwd == str(folder) or cwd.startswith(str(folder) + os.sep)


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _sync_tree(folder: Path) -> None:
    """Data on disk before the rename that publishes it (a power cut must not publish empty files)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _sync_dir(Path(root))


def _sync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step (Linux renameat2); False where the system or filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EBUSY, errno.EXDEV, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT/SIGTERM (delivered right after) while a commit or clean-up must not be cut in two."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
