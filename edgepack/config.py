"""Typed export settings. CLI flags and config-file keys have the same names (dashes or underscores).

Unknown keys are an error listing the valid ones; values outside the allowed set say what is allowed.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import ConfigError

EXPORTERS = ("auto", "legacy", "dynamo")


def parse_shape(text) -> tuple[int, ...]:
    """'1,3,32,32' or '1x3x32x32' (or a sequence of ints) -> (1, 3, 32, 32)."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = re.split(r"\s*[,x]\s*", str(text).strip().strip("()[]").strip())
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"input shape '{text}' is not a list of positive integers "
                          "(example: 1,3,32,32)", "input_shape") from None
    if not shape or any(d <= 0 for d in shape):
        raise ConfigError(f"input shape '{text}' is not a list of positive integers "
                          "(example: 1,3,32,32)", "input_shape")
    return shape


@dataclass(frozen=True)
class ExportConfig:
    input_shape: tuple[int, ...] | None = None  # model input incl. batch (PyTorch without example)
    exporter: str = "auto"  # torch.onnx exporter: auto | legacy | dynamo
    opset: int | None = None  # ONNX opset used by torch.onnx.export
    trust_pickle: bool = False  # allow torch.load of whole pickled modules (runs code)
    force: bool = False  # overwrite existing artifacts

    def __post_init__(self):
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", parse_shape(self.input_shape))
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"unknown exporter '{self.exporter}'", "exporter", EXPORTERS)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict) -> "ExportConfig":
        return cls().replace(**values)

    @classmethod
    def from_toml(cls, path) -> "ExportConfig":
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **values) -> "ExportConfig":
        clean = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in self.keys():
                raise ConfigError(f"unknown setting '{key}'", key, self.keys())
            clean[name] = value
        return dataclasses.replace(self, **clean)
