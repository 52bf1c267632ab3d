"""Per-layer settings (`layers`, keyed by node name, output tensor or op:TYPE): what one layer may set,
parsed from TOML or the CLI's NAME:KEY=VALUE items, and bound to the loaded graph's node names."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, fields

from .errors import ConfigError

CALIBRATIONS = ("auto", "minmax", "percentile", "mse", "entropy")


def check_percentile(value, key: str) -> float:
    if not 50.0 < float(value) <= 100.0:
        raise ConfigError(f"{key} must be in (50, 100], got {value}", key)
    return float(value)


def parse_bool(value, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ConfigError(f"{key} '{value}' is not true or false", key)


@dataclass(frozen=True)
class LayerSettings:
    """What one layer (a node, or every node of an op type) may set; None: the next level decides."""
    calibration: str | None = None  # range method of the layer's output
    percentile: float | None = None  # for calibration percentile
    per_channel: bool | None = None  # weights per output channel (Conv: yes; Gemm: chosen from data)
    precision: str | None = None  # int8 | int16 (16x8: int16 activations, int8 weights) | float (phones, hosts)
    prune: bool | None = None  # false: pruning leaves this layer's channels alone
    sparsity: float | None = None  # fraction of this layer's weights set to zero (--sparsity per layer)
    rank: int | None = None  # low rank: this layer's rank (0: not factorised), instead of --low-rank energy
    cluster: int | None = None  # weight sharing: this layer's K (0: not clustered), instead of --cluster

    def given(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


LAYER_KEYS = tuple(f.name for f in fields(LayerSettings))
PRECISIONS = ("int8", "int16", "float")  # what the target runs is checked once the model is loaded (precision.py)


def _layer_settings(name: str, values) -> LayerSettings:
    values = values.given() if isinstance(values, LayerSettings) else values
    if not isinstance(values, dict):
        raise ConfigError(f"layers '{name}' must be a table of settings, got {values!r}", "layers", LAYER_KEYS)
    for key in values:
        if key not in LAYER_KEYS:
            raise ConfigError(f"unknown key '{key}' for layer '{name}'", "layers", LAYER_KEYS)
    v = dict(values)
    where = f"layers '{name}'"
    if "calibration" in v and v["calibration"] not in CALIBRATIONS:
        raise ConfigError(f"unknown calibration '{v['calibration']}' for layer '{name}'", "layers", CALIBRATIONS)
    if "percentile" in v:
        try:
            v["percentile"] = check_percentile(v["percentile"], f"{where} percentile")
        except ValueError:
            raise ConfigError(f"{where} percentile '{v['percentile']}' is not a number", "layers") from None
    for key in ("per_channel", "prune"):
        if key in v:
            v[key] = parse_bool(v[key], f"{where} {key}")
    _layer_shrink(v, where)
    if "precision" in v and v["precision"] not in PRECISIONS:
        raise ConfigError(f"precision '{v['precision']}' for layer '{name}' is unknown", "layers", PRECISIONS)
    return LayerSettings(**v)


def _layer_shrink(v: dict, where: str) -> None:
    """The per-layer sparsity (a fraction in [0, 1)), rank and cluster K (integers), from TOML or CLI text."""
    for key, kind, ok, allowed in (("sparsity", float, lambda x: 0.0 <= x < 1.0, "a fraction in [0, 1)"),
                                   ("rank", int, lambda x: x >= 0, "an integer >= 0 (0: not factorised)"),
                                   ("cluster", int, lambda x: x == 0 or 2 <= x <= 128,  # cluster.MIN_K, MAX_K
                                    "0 (not clustered) or K in 2..128")):
        if key not in v:
            continue
        try:
            value = kind(v[key]) if not isinstance(v[key], bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not ok(value) or (kind is int and str(v[key]).strip() != str(value)
                                              and not isinstance(v[key], int)):
            raise ConfigError(f"{where} {key} '{v[key]}' is not allowed ({allowed})", "layers")
        v[key] = value


def parse_layers(value) -> dict[str, LayerSettings]:
    """``layers`` from Python or TOML ({name: {key: value}}) or from the CLI (["NAME:KEY=VALUE", ...])."""
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        merged: dict[str, dict] = {}
        for item in value:
            head, eq, text = str(item).partition("=")
            name, colon, key = head.rpartition(":")
            if not (eq and colon and name and key):
                raise ConfigError(f"layer setting '{item}' is not NAME:KEY=VALUE "
                                  "(example: conv1:calibration=percentile)", "layers", LAYER_KEYS)
            merged.setdefault(name, {})[key.strip()] = text.strip()
        value = merged
    if not isinstance(value, dict):
        raise ConfigError(f"layers must be a table keyed by node name or op:TYPE, got {value!r}", "layers")
    layers = {}
    for name, values in value.items():
        if name.startswith("op:"):
            from .ir.ops import OPS

            if name[3:] not in OPS:
                raise ConfigError(f"unknown op type '{name[3:]}' in layers key '{name}'", "layers", sorted(OPS))
        layers[str(name)] = _layer_settings(name, values)
    return layers


def merge_layers(base: dict[str, LayerSettings], items) -> dict[str, LayerSettings]:
    """``base`` (e.g. from a TOML file) with the CLI's NAME:KEY=VALUE items on top, key by key."""
    merged = {name: s.given() for name, s in base.items()}
    for name, s in parse_layers(items).items():
        merged.setdefault(name, {}).update(s.given())
    return parse_layers(merged)


def bind_layers(cfg, graph):
    """``cfg`` (an ExportConfig) with its per-layer keys checked against the loaded graph; a key naming an output tensor (as
    the report's per-layer rows do) is rewritten to the node that produces it."""
    if not cfg.layers:
        return cfg
    nodes = {n.name for n in graph.nodes}
    bound = {}
    for key, settings in cfg.layers.items():
        if not key.startswith("op:") and key not in nodes:
            producer = graph.producer(key) if key in graph.tensors else None
            if producer is None:
                close = difflib.get_close_matches(key, sorted(nodes | set(graph.tensors)), n=3, cutoff=0.5)
                hint = f"close matches: {', '.join(close)}" if close else "`edgepack inspect` lists the nodes"
                raise ConfigError(f"layers: '{key}' is not a node or tensor of this model ({hint})", "layers")
            key = producer.name
        bound[key] = LayerSettings(**{**bound[key].given(), **settings.given()}) if key in bound else settings
    return cfg.replace(layers=bound)
