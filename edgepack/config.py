"""Typed export settings. CLI flags and config-file keys have the same names (dashes or underscores).

Unknown keys are an error listing the valid ones; values outside the allowed set say what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
import tomllib
import typing
from dataclasses import dataclass, fields

from .errors import ConfigError
from .input_files import read_text

EXPORTERS = ("auto", "legacy", "dynamo")
CALIBRATIONS = ("minmax", "percentile", "mse", "entropy")
ONNX_ACTIVATIONS = ("uint8", "int8")


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
    if math.prod(shape) > MAX_ELEMENTS:  # each dim and the element count must fit int32 (ONNX, TFLite)
        raise ConfigError(f"input shape '{text}' has {math.prod(shape):,} elements, more than the "
                          f"{MAX_ELEMENTS:,} a model input may hold", "input_shape")
    return shape


def _floats(value, key: str) -> tuple[float, ...]:
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        values = tuple(float(p) for p in parts if not isinstance(p, bool))
    except (TypeError, ValueError):
        values = ()
    if not values or len(values) != len(parts):
        raise ConfigError(f"{key} '{value}' is not a list of numbers (example: 0.5,0.5,0.5)", key)
    # mean/std are applied to samples in float32: a value outside its range, or a std near 0, makes inf
    lo = 1e-12 if key == "std" else -MAX_NORM
    if not all(lo <= v <= MAX_NORM for v in values):
        allowed = "finite numbers in [1e-12, 1e12]" if key == "std" else "finite numbers in [-1e12, 1e12]"
        raise ConfigError(f"{key} '{value}' is not allowed ({key} values must be {allowed})", key)
    return values


MAX_ELEMENTS = 2**31 - 1
MAX_NORM = 1e12
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _check_types(cfg) -> None:
    """Each setting has the type its field declares (a TOML file can hold anything)."""
    hints = typing.get_type_hints(type(cfg))
    for f in fields(cfg):
        value, args = getattr(cfg, f.name), typing.get_args(hints[f.name])
        if value is None and type(None) in args:
            continue
        kind = next(t for t in (args or (hints[f.name],)) if t is not type(None))
        if kind not in _TYPE_NAMES:
            continue  # tuples (input_shape, mean, std) are parsed from text or lists in __post_init__
        if kind is str:  # a path or a profile object is fine from Python; what TOML holds besides text is not
            ok = not isinstance(value, (numbers.Number, list, tuple, dict))
        elif kind is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, {int: numbers.Integral, float: numbers.Real}[kind]) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(f"setting '{f.name}' must be {_TYPE_NAMES[kind]}, got {value!r}", f.name)
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"setting '{f.name}' must be a finite number, got {value!r}", f.name)


@dataclass(frozen=True)
class ExportConfig:
    input_shape: tuple[int, ...] | None = None  # model input incl. batch (PyTorch without example)
    exporter: str = "auto"  # torch.onnx exporter: auto | legacy | dynamo
    opset: int | None = None  # ONNX opset used by torch.onnx.export
    trust_pickle: bool = False  # allow torch.load of whole pickled modules (runs code)
    trust_code: bool = False  # Keras: load Lambda layers' Python code (safe_mode=False)
    force: bool = False  # overwrite existing artifacts
    calibration: str = "minmax"  # range observer: minmax | percentile | mse | entropy
    percentile: float = 99.99  # for calibration="percentile"
    calibration_file: str | None = None  # reuse a calibration.json instead of running the samples
    calib_limit: int | None = None  # use at most this many calibration samples
    mean: tuple[float, ...] | None = None  # image folders: (x - mean) / std per channel, after scaling to [0, 1]
    std: tuple[float, ...] | None = None
    equalize: bool = False  # cross-layer equalisation of conv/gemm pairs before calibration
    lint: bool = True  # run the quantization-friendliness check and put its findings in the report
    prune: float = 0.0  # fraction of channels to remove per coupled group (0 = no pruning)
    prune_importance: str = "l1"  # l1 | l2 | taylor (taylor needs --train data)
    round_to: int = 8  # keep channel counts a multiple of this (SIMD-friendly kernels)
    separable: str = "none"  # none | auto | NODE,NODE: convs to replace by depthwise + pointwise
    finetune_epochs: int = 0  # distillation epochs from the original model (needs --train data)
    finetune_lr: float = 3e-3  # Adam learning rate of the distillation
    target: str = "stm32l4r5"  # target profile name, alias or .toml path (see `edgepack targets`)
    validate: bool = True  # run the artifacts on the target's runtimes and write report.html
    val_limit: int = 300  # validate on at most this many samples
    fail_on_budget: bool = False  # exit code 3 when the model does not fit the target
    io: str = "int8"  # int8 .tflite input/output: int8, or float with QUANTIZE/DEQUANTIZE at the edges
    onnx_activations: str = "uint8"  # int8 ONNX activation storage (uint8: same values, faster on x86 ORT)

    def __post_init__(self):
        _check_types(self)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", parse_shape(self.input_shape))
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"unknown exporter '{self.exporter}'", "exporter", EXPORTERS)
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"unknown calibration method '{self.calibration}'", "calibration", CALIBRATIONS)
        if self.onnx_activations not in ONNX_ACTIVATIONS:
            raise ConfigError(f"unknown onnx_activations '{self.onnx_activations}'", "onnx_activations",
                              ONNX_ACTIVATIONS)
        if not 0.0 <= float(self.prune) < 1.0:
            raise ConfigError(f"prune ratio must be in [0, 1), got {self.prune}", "prune")
        if self.prune_importance not in ("l1", "l2", "taylor"):
            raise ConfigError(f"unknown prune importance '{self.prune_importance}'", "prune_importance",
                              ("l1", "l2", "taylor"))
        if int(self.round_to) < 1 or int(self.finetune_epochs) < 0:
            raise ConfigError("round_to must be >= 1 and finetune_epochs >= 0")
        for key in ("calib_limit", "val_limit"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(f"{key} must be a positive number of samples, got {getattr(self, key)}", key)
        if not 0.0 < self.finetune_lr <= 1.0:
            raise ConfigError(f"finetune_lr must be in (0, 1], got {self.finetune_lr}", "finetune_lr")
        if self.opset is not None and not 11 <= self.opset <= 21:
            raise ConfigError(f"opset {self.opset} is not supported", "opset", range(11, 22))
        if self.io not in ("int8", "float"):
            raise ConfigError(f"unknown io '{self.io}'", "io", ("int8", "float"))
        if not 50.0 < float(self.percentile) <= 100.0:
            raise ConfigError(f"percentile must be in (50, 100], got {self.percentile}", "percentile")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _floats(value, key))

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict) -> "ExportConfig":
        return cls().replace(**values)

    @classmethod
    def from_toml(cls, path) -> "ExportConfig":
        try:
            data = tomllib.loads(read_text(path, "config file", error=ConfigError))
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
