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
