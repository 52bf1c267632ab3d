"""Typed sections of the Report, one class per section with a fixed shape built in one place.

Each ``to_json()`` gives exactly the object report.schema.json describes for that section (optional keys are
left out when unset, never written as null); an unset section is ``None`` on the Report and ``{}`` in the JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Verdict:
    """Whether the model fits the target (prove.verdict): what overflows, and one line per budget or op."""

    fits: bool
    overflows: list[str]
    messages: list[str]
    target: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Memory:
    """Flash and RAM (tensor arena) against the target's budgets; ram_bytes is TFLM's arena when measured."""

    flash_bytes: int
    flash_budget: int
    ram_bytes: int
    ram_budget: int
    arena_estimate: int
    arena_lower_bound: int
    arena_measured_tflm: int | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Latency:
    """The cost model's estimate on the target, and LiteRT's measurement here for phone and host targets."""

    target: str
    total_ms: float
    cost_model: str  # "fitted", "derived" or "rough": how far to trust total_ms
    per_op_type_ms: dict[str, float]
    measured_here_ms: float | None = None
    not_taken_by_xnnpack: list | None = None  # the operators XNNPACK left to the reference kernels

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


TYPED_SECTIONS = {"verdict": Verdict, "memory": Memory, "latency": Latency}  # Report field -> its class
