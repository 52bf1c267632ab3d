"""The whole pass pipeline, read as one list: ``build_pipeline(cfg)``.

Each step is a named pass of the one contract (``ir.passes``: ``(graph) -> PassResult(graph, changed)``,
declared in place or copying, checked by ``run_passes``) and the stage that runs it:
- load: the frontends' normalisations, run by the ONNX frontend on every graph it builds (the Keras
  tidying only on tf2onnx files); listed here so that the order is read in one place;
- cleanup: ``exporter.passes.DEFAULT_PASSES``, run by ``api.load``;
- equalize: run by ``api.export`` and kept only when the fake-quant int8 check says it does not hurt;
- shrink: separable replacement then channel pruning, run by ``shrink.shrink`` (the passes keep what they
  did, ``.replaced`` and ``.plan``, for plan.json).
"""
from __future__ import annotations

from dataclasses import dataclass

from .config import ExportConfig
from .ir.passes import Pass

STAGES = ("load", "cleanup", "equalize", "shrink")


@dataclass(frozen=True)
class Step:
    stage: str
    graph_pass: Pass

    @property
    def name(self) -> str:
        return self.graph_pass.pass_name


def build_pipeline(cfg: ExportConfig, train=None) -> list[Step]:
    """The passes ``cfg`` asks for, in the order they run. ``train``: samples for taylor importance."""
    from .exporter.passes import DEFAULT_PASSES
    from .exporter.passes.equalize import equalize
    from .exporter.passes.prune import PrunePass
    from .exporter.passes.separable import AUTO_ERROR_THRESHOLD, SeparablePass
    from .frontends.keras_normalize import normalize_keras_graph
    from .frontends.onnx_normalize import ONNX_NORMALIZATION
    from .shrink import SEPARABLE_ERROR_WITH_FINETUNE

    steps = [Step("load", p) for p in [*ONNX_NORMALIZATION, normalize_keras_graph]]
    steps += [Step("cleanup", p) for p in DEFAULT_PASSES]
    if cfg.equalize:
        steps.append(Step("equalize", equalize))
    if cfg.separable not in (None, "none"):
        threshold = SEPARABLE_ERROR_WITH_FINETUNE if cfg.finetune_epochs else AUTO_ERROR_THRESHOLD
        steps.append(Step("shrink", SeparablePass(cfg.separable, error_threshold=threshold)))
    if cfg.prune:
        samples = train[:256] if train is not None else None
        steps.append(Step("shrink", PrunePass(cfg.prune, importance=cfg.prune_importance,
                                              round_to=cfg.round_to, samples=samples)))
    return steps


def stage(steps: list[Step], name: str) -> list[Pass]:
    """The passes of one stage, in order."""
    if name not in STAGES:
        raise ValueError(f"unknown pipeline stage {name!r} (allowed: {', '.join(STAGES)})")
    return [s.graph_pass for s in steps if s.stage == name]


def describe(steps: list[Step]) -> list[str]:
    """``stage: pass`` per step, for logs and docs."""
    return [f"{s.stage}: {s.name}" for s in steps]
