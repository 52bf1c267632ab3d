"""Errors a user can cause. Each message says what went wrong, where, and what is allowed.

The CLI prints ``str(error)`` on one line and exits with code 2 (``BudgetExceeded`` exits 3).
"""
from __future__ import annotations


class EdgepackError(Exception):
    """Base of every error a user can cause (bad input, bad option, unsupported model)."""

    exit_code = 2


class InputError(EdgepackError):
    """A file or argument given by the user cannot be used."""

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ModelLoadError(InputError):
    """A model file is missing, truncated, or not a model of the expected format."""


class ConfigError(EdgepackError):
    """An option or configuration key is unknown or has a value outside what is allowed."""

    def __init__(self, message: str, key: str | None = None, allowed=None):
        self.key = key
        self.allowed = list(allowed) if allowed is not None else None
        text = message
        if self.allowed is not None:
            text += f" (allowed: {', '.join(map(str, self.allowed))})"
        super().__init__(text)


class UnsupportedOpError(EdgepackError):
    """The model uses an op edgepack (or the chosen target) cannot handle."""

    def __init__(self, op: str, node: str, supported, where: str = "edgepack"):
        self.op, self.node, self.where = op, node, where
        self.supported = sorted(supported)
        super().__init__(
            f"unsupported op '{op}' at node '{node}' ({where} supports: {', '.join(self.supported)})"
        )


class UnsupportedOpsError(UnsupportedOpError):
    """Every op of a model edgepack cannot take, in one error: ``missing`` maps op -> node names (in
    model order). ``op`` and ``node`` are the first ones, so one missing op reads as before."""

    def __init__(self, missing: dict[str, list[str]], supported, where: str = "edgepack",
                 details: dict[str, str] | None = None):
        self.missing = {op: list(nodes) for op, nodes in missing.items()}
        self.details = dict(details or {})  # node -> why a table op is refused in that form
        op, nodes = next(iter(self.missing.items()))
        super().__init__(op, nodes[0], supported, where)
        if len(self.missing) == 1 and len(nodes) == 1:
            if nodes[0] in self.details:
                self.args = (self.details[nodes[0]],)
            return
        total = sum(len(v) for v in self.missing.values())
        parts = [f"'{op}' x{len(nodes)} (" + ", ".join(f"'{n}'" for n in nodes[:3])
                 + (", ..." if len(nodes) > 3 else "") + ")" for op, nodes in self.missing.items()]
        self.args = (f"unsupported ops at {total} nodes: {'; '.join(parts)} ({where} supports: "
                     f"{', '.join(self.supported)})",)

    def lines(self) -> list[str]:
        """One line per op: the op, its count and every node (`edgepack inspect --missing`)."""
        return [f"{op}\t{len(nodes)}\t" + ", ".join(nodes) for op, nodes in self.missing.items()]


class ShapeError(EdgepackError):
    """An input shape does not fit the model, or a model shape is not static."""


class DataError(EdgepackError):
    """Sample data cannot be used (empty, wrong shape, NaN/Inf, unreadable)."""


class OutputExistsError(EdgepackError):
    """An output would overwrite an existing file without --force."""


class OutputBusyError(EdgepackError):
    """Another edgepack run is writing the same output folder."""


class BudgetExceeded(EdgepackError):
    """The model does not fit the target's flash or RAM budget (with --fail-on-budget)."""

    exit_code = 3


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A library's exception text as one line (whitespace collapsed, at most ``limit`` characters)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception text (the rest is usually its traceback or context)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
