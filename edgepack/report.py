"""The Report every run returns: plain data, saved as report.json."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .artifacts import write_text


@dataclass
class Report:
    model: str
    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # params, macs, op counts
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> {path, bytes}
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_plain)

    def save(self, path) -> None:
        write_text(path, self.to_json() + "\n")


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
