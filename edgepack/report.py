"""The Report every run returns: plain data, saved as report.json and rendered as report.html."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .artifacts import write_text
from .report_sections import TYPED_SECTIONS, Latency, Memory, Verdict


@dataclass
class Report:
    model: str
    target: str | None = None
    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # params, macs, op counts
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> {path, bytes}
    shrink: dict[str, Any] = field(default_factory=dict)  # params/MACs before and after, distillation
    calibration: dict[str, Any] = field(default_factory=dict)
    lint: list[dict[str, Any]] = field(default_factory=list)  # quantization-friendliness findings
    validation: dict[str, Any] = field(default_factory=dict)  # "artifact@runtime" -> metrics
    per_layer: dict[str, Any] = field(default_factory=dict)  # {"layers": [...], "worst": [...]}
    memory: Memory | None = None  # None: not checked against a target ({} in report.json)
    latency: Latency | None = None  # None: not estimated ({} in report.json)
    ladder: dict[str, Any] = field(default_factory=dict)  # bytes and accuracy per compression step (ladder.py)
    budget: dict[str, Any] = field(default_factory=dict)  # --accuracy-budget: the fixes tried (budget.py)
    energy: dict[str, Any] = field(default_factory=dict)  # estimated energy per inference, with its sources
    compatibility: dict[str, Any] = field(default_factory=dict)  # unsupported ops with their nodes
    verdict: Verdict | None = None  # fits, margins, what overflows; None: not proved ({} in report.json)
    timing: dict[str, float] = field(default_factory=dict)  # wall seconds per export stage (and sub-stage)
    notes: list[str] = field(default_factory=list)

    def relocate(self, old_folder, new_folder) -> None:
        """Name the files under ``old_folder`` (a staging folder) where they are moved, ``new_folder``."""
        old, new = (os.path.join(str(Path(f)), "") for f in (old_folder, new_folder))  # with a final slash

        def moved(value):
            if isinstance(value, str):
                return value.replace(old, new)
            if isinstance(value, dict):
                return {k: moved(v) for k, v in value.items()}
            if isinstance(value, list):
                return [moved(v) for v in value]
            return value

        for f in fields(self):
            setattr(self, f.name, moved(getattr(self, f.name)))

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in TYPED_SECTIONS:  # their own to_json: optional keys left out, an unset section is {}
            section = getattr(self, name)
            data[name] = section.to_json() if section is not None else {}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=_plain)

    def save(self, path) -> None:
        write_text(path, self.to_json() + "\n")

    def save_html(self, path) -> None:
        from .report_html import render_html

        write_text(path, render_html(json.loads(self.to_json())))


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
