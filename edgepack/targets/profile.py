"""Target profiles as data: one ``profiles/<name>.toml`` per device; adding a target = adding a file.

A profile says where a model runs (kind, runtime, core, clock, threads), what it may use (RAM and flash
budgets, the TFLite builtin ops its op resolver registers, the tensor types it runs) and the
coefficients of the latency cost model (see ``latency.py``), one table per op kind.
"""
from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ..errors import ConfigError
from ..input_files import read_text
from .energy import EnergyCosts

PROFILE_DIR = Path(__file__).parent / "profiles"

KINDS = ("mcu", "phone", "host")
RUNTIMES = ("tflm", "litert")
DTYPES = ("int8", "int16", "float32")
ARCHES = ("aarch64",)  # aarch64: validation also runs LiteRT's aarch64 build (targets/aarch64.py)
GLOBAL_POOLS = ("average_pool", "mean")  # int8 global average pool forms (calibration/pool_form.py)
COST_STATUSES = ("fitted", "derived", "rough")  # fitted on measurements / derived by a ratio / guessed
# Op kinds of the cost model; latency.op_kind() maps every IR op to one of them.
COST_KINDS = ("conv", "pointwise", "depthwise", "fully_connected", "elementwise", "pooling", "other")
ALL_OPS = "*"  # in supported_ops: every builtin of the runtime (LiteRT's builtin resolver)

_TOP_KEYS = ("name", "description", "kind", "runtime", "core", "clock_mhz", "ram_bytes", "flash_bytes",
             "threads", "aliases", "dtypes", "supported_ops", "cost", "energy", "global_pool", "arch",
             "round_to")  # name defaults to the file name
_REQUIRED = ("kind", "runtime", "core", "clock_mhz", "ram_bytes", "flash_bytes", "supported_ops", "cost")
_COST_FIELDS = ("cycles_per_mac", "cycles_per_output", "overhead_cycles")


@dataclass(frozen=True)
class OpCost:
    """Cycles of one node = cycles_per_mac * MACs + cycles_per_output * output elements + overhead."""

    cycles_per_mac: float
    cycles_per_output: float
    overhead_cycles: float

    def cycles(self, macs: float, outputs: float) -> float:
        return self.cycles_per_mac * macs + self.cycles_per_output * outputs + self.overhead_cycles


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str
    kind: str  # mcu | phone | host
    runtime: str  # tflm | litert
    core: str
    clock_mhz: float
    ram_bytes: int  # budget for the tensor arena (MCU SRAM) or working memory
    flash_bytes: int  # budget for the model file (and code) in flash / storage
    threads: int  # the cost coefficients already include the speed-up of this many threads
    aliases: tuple[str, ...]
    dtypes: tuple[str, ...]  # tensor types the runtime's kernels run for this target
    supported_ops: tuple[str, ...]  # TFLite builtin names, e.g. CONV_2D; ("*",) = all builtins
    cost: Mapping[str, OpCost] = field(repr=False, hash=False)  # per COST_KINDS entry
    cost_model: str = "rough"  # fitted | derived | rough
    path: str = ""  # the .toml the profile was read from
    energy: EnergyCosts | None = None  # per-access energies with their source (energy.py); None: not given
    global_pool: str = "average_pool"  # int8 global average pool the kernels prefer: average_pool | mean
    arch: str = ""  # the CPU architecture of the runtime's build (ARCHES); "" when not said
    # The output-channel tile of the target's conv kernels: pruning keeps channel counts a multiple of it
    # (--round-to overrides) and the latency model rounds a conv's output channels up to it.
    round_to: int = 8

    def supports(self, builtin: str) -> bool:
        """True when the target's op resolver registers the TFLite builtin op ``builtin``."""
        return ALL_OPS in self.supported_ops or builtin.upper() in self.supported_ops

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "kind": self.kind,
                "runtime": self.runtime, "core": self.core, "clock_mhz": self.clock_mhz,
                "ram_bytes": self.ram_bytes, "flash_bytes": self.flash_bytes, "threads": self.threads,
                "aliases": list(self.aliases), "dtypes": list(self.dtypes),
                "supported_ops": list(self.supported_ops), "cost_model": self.cost_model,
                "global_pool": self.global_pool, "round_to": self.round_to,
                **({"arch": self.arch} if self.arch else {}),
                "cost": {k: vars(c).copy() for k, c in self.cost.items()},
                "energy": self.energy.to_dict() if self.energy else None}


# ---- parsing --------------------------------------------------------------------------------
def _unknown_keys(table: dict, allowed, where: str) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise ConfigError(f"{where}: unknown key '{extra[0]}'", extra[0], sorted(allowed))


# Upper bounds no real device reaches: a value past them is a typo or garbage, not a target.
LIMITS = {"clock_mhz": 100_000.0, "ram_bytes": 2**48, "flash_bytes": 2**48, "threads": 1024, "round_to": 1024}
MAX_COST = 1e9  # cycles per MAC / output / node


def _number(value, key: str, where: str, positive: bool = True, integer: bool = False):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    limit = LIMITS.get(key, MAX_COST)
    if (isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < 0
            or (positive and value == 0) or value > limit):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: '{key}' must be {kind} {'> 0' if positive else '>= 0'} and at most "
                          f"{limit:g}, got {value!r}", key)
    return value if integer else float(value)


def _strings(value, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of strings, got {value!r}", key)
    return tuple(value)


def _choice(value, key: str, where: str, allowed) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: {key} '{value}' is not known", key, allowed)
    return value


def _parse_cost(table, where: str) -> tuple[dict[str, OpCost], str]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'cost' must be a table with one sub-table per op kind", "cost",
                          COST_KINDS)
    _unknown_keys(table, ("status",) + COST_KINDS, f"{where} [cost]")
    missing = [k for k in COST_KINDS if k not in table]
    if missing:
        raise ConfigError(f"{where}: [cost.{missing[0]}] is missing (every op kind needs its "
                          "coefficients)", missing[0], COST_KINDS)
    status = _choice(table.get("status", "rough"), "status", f"{where} [cost]", COST_STATUSES)
    costs = {}
    for kind in COST_KINDS:
        sub, here = table[kind], f"{where} [cost.{kind}]"
        if not isinstance(sub, dict):
            raise ConfigError(f"{here} must be a table of {', '.join(_COST_FIELDS)}", kind)
        _unknown_keys(sub, _COST_FIELDS, here)
        # a coefficient left out is 0 (e.g. no per-MAC term for elementwise ops)
        costs[kind] = OpCost(*(_number(sub.get(k, 0.0), k, here, positive=False) for k in _COST_FIELDS))
    return costs, status


_ENERGY_FIELDS = ("pj_per_mac", "pj_per_flash_byte", "pj_per_sram_byte")
MAX_PJ = 1e6  # pJ per access: far past any memory; a larger value is a typo


def _parse_energy(table, where: str) -> EnergyCosts | None:
    if table is None:
        return None
    here = f"{where} [energy]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'energy' must be a table of {', '.join(_ENERGY_FIELDS)} and source", "energy")
    _unknown_keys(table, _ENERGY_FIELDS + ("source",), here)
    missing = [k for k in _ENERGY_FIELDS + ("source",) if k not in table]
    if missing:
        raise ConfigError(f"{here}: '{missing[0]}' is missing (each figure needs its value and a source)",
                          missing[0], _ENERGY_FIELDS + ("source",))
    values = {}
    for k in _ENERGY_FIELDS:
        v = table[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v <= MAX_PJ:
            raise ConfigError(f"{here}: '{k}' must be a number > 0 and at most {MAX_PJ:g} (pJ), got {v!r}", k)
        values[k] = float(v)
    if not isinstance(table["source"], str) or not table["source"].strip():
        raise ConfigError(f"{here}: 'source' must say where the figures come from (a non-empty string)", "source")
    return EnergyCosts(**values, source=table["source"].strip())


def parse_profile(data: dict, name: str, path: str = "") -> TargetProfile:
    """Build a TargetProfile from the parsed TOML ``data``; ``name`` is used when it has no 'name'."""
    where = path or name
    _unknown_keys(data, _TOP_KEYS, where)
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"{where}: required key '{missing[0]}' is missing", missing[0], _REQUIRED)
    cost, status = _parse_cost(data["cost"], where)
    dtypes = _strings(data.get("dtypes", ["int8"]), "dtypes", where)
    for d in dtypes:
        _choice(d, "dtype", where, DTYPES)
    ops = tuple(op.upper() for op in _strings(data["supported_ops"], "supported_ops", where))
    return TargetProfile(
        name=str(data.get("name", name)).lower(), description=str(data.get("description", "")),
        kind=_choice(data["kind"], "kind", where, KINDS),
        runtime=_choice(data["runtime"], "runtime", where, RUNTIMES), core=str(data["core"]),
        clock_mhz=_number(data["clock_mhz"], "clock_mhz", where),
        ram_bytes=_number(data["ram_bytes"], "ram_bytes", where, integer=True),
        flash_bytes=_number(data["flash_bytes"], "flash_bytes", where, integer=True),
        threads=_number(data.get("threads", 1), "threads", where, integer=True),
        aliases=tuple(a.lower() for a in _strings(data.get("aliases", []), "aliases", where)),
        dtypes=dtypes, supported_ops=ops, cost=MappingProxyType(cost), cost_model=status, path=path,
        energy=_parse_energy(data.get("energy"), where),
        global_pool=_choice(data.get("global_pool", "average_pool"), "global_pool", where, GLOBAL_POOLS),
        arch=_choice(data["arch"], "arch", where, ARCHES) if "arch" in data else "",
        round_to=_number(data.get("round_to", 8), "round_to", where, integer=True))


def read_profile(path) -> TargetProfile:
    """Read one profile .toml (a built-in one or a user's own)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"target profile file not found: {path}", "target")
    try:
        data = tomllib.loads(read_text(path, "target profile", error=ConfigError))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not a valid TOML file: {exc}", "target") from None
    return parse_profile(data, path.stem, str(path))


# ---- registry -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, TargetProfile], dict[str, str]]:
    profiles = {p.name: p for p in (read_profile(f) for f in sorted(PROFILE_DIR.glob("*.toml")))}
    aliases: dict[str, str] = {}
    for p in profiles.values():
        for alias in p.aliases:
            if alias in profiles or alias in aliases:
                raise ConfigError(f"{p.path}: alias '{alias}' is already the name or alias of another "
                                  "profile", "aliases")
            aliases[alias] = p.name
    return profiles, aliases


def list_profiles() -> list[TargetProfile]:
    """The built-in profiles, sorted by name."""
    return list(_builtin()[0].values())


def profile_names() -> list[str]:
    """Every name and alias ``load_profile`` accepts, sorted (names first)."""
    profiles, aliases = _builtin()
    return sorted(profiles) + sorted(aliases)


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or "\\" in text


def load_profile(target) -> TargetProfile:
    """A built-in profile by name or alias (case-insensitive), or a user's own .toml by path."""
    if isinstance(target, TargetProfile):
        return target
    if isinstance(target, Path) or (isinstance(target, str) and _looks_like_path(target)):
        return read_profile(target)
    if not isinstance(target, str):
        raise ConfigError(f"a target is a profile name or a .toml path, not a {type(target).__name__}",
                          "target", profile_names())
    profiles, aliases = _builtin()
    key = target.strip().lower()
    name = aliases.get(key, key)
    if name not in profiles:
        raise ConfigError(f"unknown target '{target}'", "target", profile_names())
    return profiles[name]
