"""The shrink stage of export: structured channel pruning, depthwise-separable replacement and weight
clustering on the IR, with knowledge distillation from the original graph to recover accuracy."""
from __future__ import annotations

import json
import logging

import numpy as np

from .config import ExportConfig
from .errors import ConfigError
from .ir import Graph
from .ir.summary import summarize

log = logging.getLogger(__name__)

def wants_shrink(cfg: ExportConfig) -> bool:
    return bool(cfg.prune) or cfg.separable not in (None, "none") or bool(cfg.cluster)


def shrink(graph: Graph, cfg: ExportConfig, train, train_labels, progress=None) -> tuple[Graph, dict]:
    """(student graph, shrink section of the report incl. plan.json content). ``train``: (N, ...) array."""
    student, section, _ = shrink_stages(graph, cfg, train, train_labels, progress)
    return student, section


def shrink_stages(graph: Graph, cfg: ExportConfig, train, train_labels, progress=None):
    """``shrink`` and the float graph after each step, {"pruned": ..., "clustered": ...} (for the size
    ladder). The structural passes (separable, pruning) are distilled first; clustering comes
    after them and its centroids are distilled with the weights kept shared (Deep Compression's order)."""
    from .exporter.passes import run_passes
    from .pipeline import build_pipeline, stage

    if cfg.prune and cfg.prune_importance == "taylor" and train is None:
        raise ConfigError("--prune-importance taylor needs --train data", "prune_importance")
    if cfg.finetune_epochs and train is None:
        raise ConfigError("--finetune-epochs needs --train data (or calibration data to reuse)",
                          "finetune_epochs")
    before = summarize(graph)["totals"]
    passes = stage(build_pipeline(cfg, train), "shrink")  # separable, pruning, clustering
    structural = [p for p in passes if p.pass_name != "cluster_weights"]
    clustering = next((p for p in passes if p.pass_name == "cluster_weights"), None)
    student = run_passes(graph, structural) if structural else graph
    separable = next((p.replaced for p in passes if p.pass_name == "separable_convs"), [])
    plan = next((p.plan for p in passes if p.pass_name == "prune_channels"), None)
    if cfg.separable == "auto" and not separable:
        log.warning("--separable auto found no conv worth replacing")
    history, stages = None, {}
    if structural and cfg.finetune_epochs:
        student, history = _distill(student, graph, cfg, train, train_labels, progress)
    if structural:
        stages["pruned"] = student
    cluster = None
    if clustering is not None:
        student, cluster = _cluster(student, graph, clustering, cfg, train, train_labels, progress)
        stages["clustered"] = student
    after = summarize(student)["totals"]
    section = {"before": {k: before[k] for k in ("params", "macs")},
               "after": {k: after[k] for k in ("params", "macs")},
               "macs_ratio": before["macs"] / max(after["macs"], 1),
               "params_ratio": before["params"] / max(after["params"], 1),
               "separable_nodes": separable, "distillation": history}
    if cluster is not None:
        section["cluster"] = cluster
    plan_json = plan.to_json() if plan is not None else {"separable_nodes": separable}
    plan_json["totals"] = {"before": section["before"], "after": section["after"]}
    if cluster is not None:
        plan_json["cluster"] = {"k": cluster["k"], "layers": cluster["layers"]}
    section["plan"] = plan_json
    return student, section, stages


def _distill(student: Graph, teacher: Graph, cfg: ExportConfig, train, labels, progress, **kwargs):
    from .exporter.finetune import distill

    return distill(student, teacher, train, labels, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                   progress=progress, **kwargs)


def _cluster(student: Graph, teacher: Graph, clustering, cfg: ExportConfig, train, labels, progress):
    """Cluster the weights, then (with --finetune-epochs) distil the centroids: each step sets every weight
    of a cluster to the cluster's mean, and the tuned codebook is put back on the int8 grid."""
    from .exporter.passes import run_passes
    from .exporter.passes.cluster import codebook_summary, share_weights, snap_graph

    clustered = run_passes(student, [clustering])
    history = None
    if cfg.finetune_epochs and clustering.assignments:
        tuned, history = _distill(clustered, teacher, cfg, train, labels, progress,
                                  after_step=lambda m: share_weights(m, clustering.assignments))
        clustered = snap_graph(tuned, clustering.assignments, cfg.cluster)
    return clustered, {"k": cfg.cluster, "layers": codebook_summary(clustered, clustering.assignments),
                       "distillation": history,
                       "schedule": ("k-means per layer (linear init), codebook on the int8 grid"
                                    + (f", centroids distilled for up to {cfg.finetune_epochs} epochs"
                                       if history else ", no fine-tuning"))}


def plan_bytes(section: dict) -> bytes:
    return (json.dumps(section["plan"], indent=2, sort_keys=True, default=_plain) + "\n").encode()


def _plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else str(v)
