"""The shrink stage of export: structured channel pruning and depthwise-separable replacement on the
IR, then knowledge distillation from the original graph to recover accuracy."""
from __future__ import annotations

import json
import logging

import numpy as np

from .config import ExportConfig
from .errors import ConfigError
from .ir import Graph
from .ir.summary import summarize

log = logging.getLogger(__name__)

# With distillation a factorised layer is retrained, so `--separable auto` may accept a rougher
# initial approximation than without (the SVD start only has to be a good starting point).
SEPARABLE_ERROR_WITH_FINETUNE = 0.9


def wants_shrink(cfg: ExportConfig) -> bool:
    return bool(cfg.prune) or cfg.separable not in (None, "none")


def shrink(graph: Graph, cfg: ExportConfig, train, train_labels, progress=None) -> tuple[Graph, dict]:
    """(student graph, shrink section of the report incl. plan.json content). ``train``: (N, ...) array."""
    from .exporter.passes import run_passes
    from .pipeline import build_pipeline, stage

    if cfg.prune and cfg.prune_importance == "taylor" and train is None:
        raise ConfigError("--prune-importance taylor needs --train data", "prune_importance")
    before = summarize(graph)["totals"]
    passes = stage(build_pipeline(cfg, train), "shrink")  # separable replacement, then pruning
    student = run_passes(graph, passes) if passes else graph
    separable = next((p.replaced for p in passes if p.pass_name == "separable_convs"), [])
    plan = next((p.plan for p in passes if p.pass_name == "prune_channels"), None)
    if cfg.separable == "auto" and not separable:
        log.warning("--separable auto found no conv worth replacing")
    history = None
    if cfg.finetune_epochs:
        if train is None:
            raise ConfigError("--finetune-epochs needs --train data (or calibration data to reuse)",
                              "finetune_epochs")
        from .exporter.finetune import distill

        student, history = distill(student, graph, train, train_labels, epochs=cfg.finetune_epochs,
                                   lr=cfg.finetune_lr, progress=progress)
    after = summarize(student)["totals"]
    section = {"before": {k: before[k] for k in ("params", "macs")},
               "after": {k: after[k] for k in ("params", "macs")},
               "macs_ratio": before["macs"] / max(after["macs"], 1),
               "params_ratio": before["params"] / max(after["params"], 1),
               "separable_nodes": separable, "distillation": history}
    plan_json = plan.to_json() if plan is not None else {"separable_nodes": separable}
    plan_json["totals"] = {"before": section["before"], "after": section["after"]}
    section["plan"] = plan_json
    return student, section


def plan_bytes(section: dict) -> bytes:
    return (json.dumps(section["plan"], indent=2, sort_keys=True, default=_plain) + "\n").encode()


def _plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else str(v)
