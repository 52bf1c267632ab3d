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
from dataclasses import dataclass, field, fields

from .errors import ConfigError
from .input_files import read_text
from .layer_settings import CALIBRATIONS, LAYER_KEYS, LayerSettings, check_percentile, parse_layers

EXPORTERS = ("auto", "legacy", "dynamo")
BIAS_CORRECTIONS = ("auto", "off")
ONNX_ACTIVATIONS = ("uint8", "int8")
VALIDATION_MODES = ("fast", "full")  # validate = true means full


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
        kinds = tuple(t for t in (args or (hints[f.name],)) if t is not type(None))
        kind = kinds[0]
        if bool in kinds and str in kinds and isinstance(value, (bool, str)):
            continue  # bool | str (validate): true, false or one of its choices (checked in __post_init__)
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


def _check_ranges(cfg) -> None:
    """Counts, rates and times that must be positive (or within their range)."""
    if cfg.workers is not None and cfg.workers < 1:
        raise ConfigError(f"workers must be a positive number of processes, got {cfg.workers}", "workers")
    for key in ("calib_limit", "val_limit"):
        if getattr(cfg, key) is not None and getattr(cfg, key) < 1:
            raise ConfigError(f"{key} must be a positive number of samples, got {getattr(cfg, key)}", key)
    if not 0.0 < cfg.finetune_lr <= 1.0:
        raise ConfigError(f"finetune_lr must be in (0, 1], got {cfg.finetune_lr}", "finetune_lr")
    if cfg.opset is not None and not 11 <= cfg.opset <= 21:
        raise ConfigError(f"opset {cfg.opset} is not supported", "opset", range(11, 22))
    if not cfg.budget_time > 0:
        raise ConfigError(f"budget_time must be a positive number of seconds, got {cfg.budget_time}", "budget_time")


def _check_shrink(cfg) -> None:
    if not 0.0 <= float(cfg.prune) < 1.0:
        raise ConfigError(f"prune ratio must be in [0, 1), got {cfg.prune}", "prune")
    if cfg.cluster and not 2 <= int(cfg.cluster) <= 128:
        raise ConfigError(f"cluster must be 0 (off) or a number of shared values in 2..128, got {cfg.cluster}",
                          "cluster")
    if not 0.0 <= float(cfg.sparsity) < 1.0:
        raise ConfigError(f"sparsity must be a fraction of zero weights in [0, 1), got {cfg.sparsity}", "sparsity")
    parse_low_rank(cfg.low_rank)
    if (cfg.round_to is not None and int(cfg.round_to) < 1) or int(cfg.finetune_epochs) < 0 or int(cfg.qat_epochs) < 0:
        raise ConfigError("round_to must be >= 1, finetune_epochs and qat_epochs >= 0")


def parse_low_rank(value) -> float | None:
    """``low_rank``: "none" -> None, "energy:F" -> F, the fraction of singular-value energy kept."""
    text = str(value).strip().lower()
    if text in ("none", "", "off"):
        return None
    kind, _, number = text.partition(":")
    try:
        fraction = float(number) if kind == "energy" else None
    except ValueError:
        fraction = None
    if fraction is None or not 0.0 < fraction < 1.0:
        raise ConfigError(f"low_rank '{value}' is not allowed (none, or energy:F with F in (0, 1), e.g. "
                          "energy:0.9; a rank per layer: layers NODE:rank=N)", "low_rank")
    return fraction


BUDGET_METRICS = ("top1", "sqnr")


def parse_budget(text) -> tuple[str, float]:
    """'top1:0.5' -> ("top1", 0.5) (points lost, >= 0); 'sqnr:30' -> ("sqnr", 30.0) (dB, at least)."""
    metric, colon, value = str(text).partition(":")
    metric = metric.strip().lower()
    try:
        number = float(value) if colon else float("nan")
    except ValueError:
        number = float("nan")
    if metric not in BUDGET_METRICS or not math.isfinite(number) or (metric == "top1" and not 0 <= number <= 100):
        raise ConfigError(f"accuracy budget '{text}' is not METRIC:NUMBER (top1:POINTS with points in [0, 100], "
                          "or sqnr:DB; examples: top1:0.5, sqnr:30)", "accuracy_budget", BUDGET_METRICS)
    return metric, number


def setting(default, help: str, *, choices=None, commands=("export",), flag_help: str | None = None):
    """A field of ExportConfig with what its CLI flag needs: help text, allowed values and the commands that
    take it (the flag of the same name is generated from this, cli.py)."""
    meta = {"help": help, "choices": tuple(choices) if choices else None, "commands": tuple(commands)}
    if flag_help:
        meta["flag_help"] = flag_help
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


LOADING = ("export", "inspect", "lint")  # the commands that load a model
DATA = ("export", "lint")  # ... and read sample data


@dataclass(frozen=True)
class ExportConfig:
    input_shape: tuple[int, ...] | None = setting(
        None, "model input shape incl. batch, e.g. 1,3,32,32 (PyTorch without an example input)", commands=LOADING)
    exporter: str = setting("auto", "torch.onnx exporter for PyTorch models", choices=EXPORTERS, commands=LOADING)
    opset: int | None = setting(None, "ONNX opset of the PyTorch/Keras conversion", commands=LOADING)
    trust_pickle: bool = setting(
        False, "PyTorch: allow files whose loading runs code from them (a pickled whole module, a .pt2 with "
        "pickles or guard code, TorchScript that writes files)", commands=LOADING + ("validate",))
    trust_code: bool = setting(False, "Keras: allow Lambda layers' Python code stored in the file (safe_mode off)",
                               commands=LOADING + ("validate",))
    force: bool = setting(False, "overwrite existing artifacts")
    calibration: str = setting("auto", "activation range method (auto: per tensor, the range with the lowest "
                               "measured int8 error)", choices=CALIBRATIONS)
    bias_correction: str = setting("auto", "fold the mean int8 error of each conv/FC channel into its bias "
                                   "where it lowers the measured error", choices=BIAS_CORRECTIONS)
    adaround: bool = setting(False, "learned up/down rounding of conv/FC int8 weights (AdaRound, same scales) on "
                             "the calibration samples, kept per layer where it lowers the layer's int8 output "
                             "error; costs about 1-5 s per conv/FC layer on one core (200 Adam steps, "
                             "benchmarks/results/autoquant.md)")
    workers: int | None = setting(None, "processes scoring the --calibration auto candidates (default: one per "
                                        "core; 1: in this process); the choice is the same for any number")
    percentile: float = setting(99.99, "percentile for calibration percentile, in (50, 100]")
    calibration_file: str | None = setting(None, "reuse a calibration.json instead of running the samples")
    calib_limit: int | None = setting(None, "use at most this many calibration samples", commands=DATA)
    mean: tuple[float, ...] | None = setting(
        None, "image folders: per-channel mean, after scaling pixels to [0, 1]", commands=DATA)
    std: tuple[float, ...] | None = setting(None, "image folders: per-channel std", commands=DATA)
    equalize: bool = setting(False, "cross-layer equalisation of conv/gemm pairs before calibration "
                                    "(exact in float; kept only when int8 does not get worse)")
    lint: bool = setting(True, "run the quantization-friendliness check and put its findings in the report")
    prune: float = setting(0.0, "fraction of channels to remove per coupled group, in [0, 1) (0: no pruning)")
    prune_importance: str = setting("l1", "channel importance (taylor needs --train data)",
                                    choices=("l1", "l2", "taylor"))
    round_to: int | None = setting(None, "keep pruned channel counts a multiple of this (default: the target "
                                         "profile's round_to, its kernels' channel tile: 16 phone/host, 4 MCU)")
    separable: str = setting("none", "none | auto | NODE,NODE: convs to replace by depthwise + pointwise")
    cluster: int = setting(0, "share weights: K values per Conv/Gemm layer by k-means, exactly K distinct int8 "
                                 "values in the file (0: off; 2..128)")
    size_ladder: bool = setting(False, "report the Deep Compression size ladder (float, pruned, clustered, int8, "
                                       "Huffman/zlib/lzma bytes, each rung run); on with --cluster")
    sparsity: float = setting(0.0, "unstructured pruning: fraction of each Conv/Gemm layer's weights set to zero "
                                   "by magnitude, in steps with distillation between them (0: off; per layer: "
                                   "layers NODE:sparsity=F)")
    low_rank: str = setting("none", "none | energy:F: factorise Gemm/MatMul/1x1-conv weights by SVD keeping the "
                                    "fraction F of singular-value energy, where the target's cost falls (per "
                                    "layer: layers NODE:rank=N)")
    shrink_cost: str = setting("latency", "what ranks shrink options (low rank, --separable auto): the target's "
                                          "estimated latency or energy per inference",
                               choices=("latency", "energy"))
    finetune_epochs: int = setting(0, "distil the shrunk model from the original for this many epochs "
                                      "(on --train data, else the calibration samples)")
    finetune_lr: float = setting(3e-3, "Adam learning rate of the distillations (finetune and QAT)")
    qat_epochs: int = setting(0, "quantization-aware distillation after calibration: epochs of training "
                                 "through int8 rounding (on --train data, else the calibration samples)")
    accuracy_budget: str | None = setting(
        None, "top1:POINTS (at most this many points of top-1 agreement with float, or of accuracy with labels, "
        "lost) or sqnr:DB (output SQNR at least): the cheapest int8 fixes are applied until it holds; exit 3 "
        "naming the layers that stop it when it cannot (budget.py)")
    budget_time: float = setting(300.0, "seconds the --accuracy-budget fixes may take (no new fix starts after)")
    layers: dict = setting(
        {}, "per-layer settings, keyed by node name (or the tensor the report names) or op:TYPE; "
        "resolved node > op type > global", flag_help="per-layer setting NAME:KEY=VALUE (repeatable; NAME is a "
        "node, a tensor of the report's per-layer rows, or op:TYPE; keys: " + ", ".join(LAYER_KEYS) + ")")
    target: str = setting("stm32l4r5", "target profile name, alias or .toml path (see `edgepack targets`)",
                          commands=("export", "validate"))
    validate: bool | str = setting(
        True, "run the artifacts on the target's runtimes and write report.html: full (the default: every "
        "runtime on every sample, per-layer error on 32) or fast (the int8 files on the target's runtime and "
        "onnxruntime on every sample, the other runs and per-layer error on the first 16)", choices=VALIDATION_MODES)
    val_limit: int = setting(300, "validate on at most this many samples", commands=("export", "validate"))
    fail_on_budget: bool = setting(False, "exit with code 3 when the model does not fit the target (for CI)",
                                   commands=("export", "validate"))
    io: str = setting("int8", "int8 .tflite input/output type (float adds QUANTIZE/DEQUANTIZE at the edges)",
                      choices=("int8", "float"))
    arena_plan: str = setting("auto", "TFLM tensor arena plan: runtime (TFLM's own planner), offline "
                              "(edgepack's plan stored in the .tflite, used only where it is smaller) or auto "
                              "(offline on targets whose runtime is TFLM, which honours it)",
                              choices=("auto", "runtime", "offline"))
    onnx_activations: str = setting("uint8", "int8 ONNX activation storage (uint8: same values, faster on "
                                             "x86 onnxruntime)", choices=ONNX_ACTIVATIONS)

    def __post_init__(self):
        _check_types(self)
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", parse_shape(self.input_shape))
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if allowed and getattr(self, f.name) not in allowed and not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"unknown {f.name} '{getattr(self, f.name)}'", f.name, allowed)
        _check_shrink(self)
        _check_ranges(self)
        check_percentile(self.percentile, "percentile")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if value is not None:
                object.__setattr__(self, key, _floats(value, key))
        object.__setattr__(self, "layers", parse_layers(self.layers))
        if self.accuracy_budget is not None:
            parse_budget(self.accuracy_budget)

    def layer(self, node: str, op: str) -> "LayerSettings":
        """The settings of one node, resolved node > op:TYPE > global."""
        values = {"calibration": self.calibration, "percentile": self.percentile}
        for key in (f"op:{op}", node):
            if key in self.layers:
                values.update(self.layers[key].given())
        return LayerSettings(**values)

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

    @property
    def validation(self) -> str | None:
        """None (validation off), "fast" or "full" (``validate = true`` is full)."""
        return {True: "full", False: None}.get(self.validate, self.validate)

    def replace(self, **values) -> "ExportConfig":
        clean = {}
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in self.keys():
                raise ConfigError(f"unknown setting '{key}'", key, self.keys())
            clean[name] = value
        return dataclasses.replace(self, **clean)
