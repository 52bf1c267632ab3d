"""The shrink stage of export: structured channel pruning, depthwise-separable replacement, low-rank
factorisation, unstructured (magnitude) sparsity and weight clustering on the IR, with knowledge
distillation from the original graph to recover accuracy."""
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
    from .config import parse_low_rank

    per_layer = any(s.sparsity or s.rank is not None or s.cluster for s in cfg.layers.values())
    return (bool(cfg.prune) or cfg.separable not in (None, "none") or bool(cfg.cluster) or bool(cfg.sparsity)
            or parse_low_rank(cfg.low_rank) is not None or per_layer)


def shrink(graph: Graph, cfg: ExportConfig, train, train_labels, progress=None) -> tuple[Graph, dict]:
    """(student graph, shrink section of the report incl. plan.json content). ``train``: (N, ...) array."""
    student, section, _ = shrink_stages(graph, cfg, train, train_labels, progress)
    return student, section


def shrink_stages(graph: Graph, cfg: ExportConfig, train, train_labels, progress=None):
    """``shrink`` and the float graph after each step, {"pruned": ..., "sparse": ..., "clustered": ...} (for
    the size ladder). The structural passes (separable, pruning, low rank) are distilled first; sparsity is
    raised in steps after them; clustering comes last and its centroids are distilled with the weights
    kept shared (Deep Compression's order)."""
    from .pipeline import build_pipeline, stage

    if cfg.prune and cfg.prune_importance == "taylor" and train is None:
        raise ConfigError("--prune-importance taylor needs --train data", "prune_importance")
    if cfg.finetune_epochs and train is None:
        raise ConfigError("--finetune-epochs needs --train data (or calibration data to reuse)",
                          "finetune_epochs")
    before = summarize(graph)["totals"]
    passes = stage(build_pipeline(cfg, train), "shrink")  # separable, pruning, low rank, sparsity, clustering
    structural = [p for p in passes if p.pass_name not in ("cluster_weights", "sparse_weights")]
    sparsity = next((p for p in passes if p.pass_name == "sparse_weights"), None)
    clustering = next((p for p in passes if p.pass_name == "cluster_weights"), None)
    student, separable, plan, history, budget = _structural(graph, cfg, structural, train, train_labels, progress)
    if cfg.separable == "auto" and not separable:
        log.warning("--separable auto found no conv the target runs faster as depthwise + pointwise")
    stages = {}
    if structural:
        stages["pruned"] = student
    sparse = None
    if sparsity is not None:
        student, sparse = _sparsify(student, graph, sparsity, cfg, train, train_labels, progress)
        stages["sparse"] = student
    cluster = None
    if clustering is not None:
        kept = None if sparse is None else _nonzero(student)
        student, cluster = _cluster(student, graph, clustering, cfg, train, train_labels, progress, kept)
        stages["clustered"] = student
    extra = {"low_rank": next((_low_rank_section(p, cfg) for p in passes if p.pass_name == "low_rank"), None),
             "sparsity": sparse, "cluster": cluster, "budget": budget, "round_to": plan.round_to if plan else None}
    section = _section(before, summarize(student)["totals"], separable, history, plan, extra)
    return student, section, stages


def _structural(graph: Graph, cfg: ExportConfig, structural: list, train, labels, progress):
    """Separable, pruning, low rank: applied, distilled (early stopping) and held to the accuracy budget
    (shrink_budget.py). (student, separable nodes kept, pruning plan, distillation history, budget section)."""
    from .shrink_budget import shrink_within_budget

    if not structural:
        return graph, [], None, None, None

    def distill(student, x, y):
        return _distill(student, graph, cfg, x, y, progress)

    student, rewrites, plan, history, budget = shrink_within_budget(
        graph, cfg, structural, train, labels, distill if cfg.finetune_epochs else None)
    separable = [n for n in rewrites.separable if ("separable", n) not in rewrites.spared]
    return student, separable, plan, history, budget


def _section(before: dict, after: dict, separable, history, plan, extra: dict) -> dict:
    """The shrink section of the report and plan.json's content (``extra``: the optional steps' sections)."""
    section = {"before": {k: before[k] for k in ("params", "macs")},
               "after": {k: after[k] for k in ("params", "macs")},
               "macs_ratio": before["macs"] / max(after["macs"], 1),
               "params_ratio": before["params"] / max(after["params"], 1),
               "separable_nodes": separable, "distillation": history}
    section.update({k: v for k, v in extra.items() if v is not None})
    plan_json = plan.to_json() if plan is not None else {"separable_nodes": separable}
    plan_json["totals"] = {"before": section["before"], "after": section["after"]}
    for key in ("low_rank", "sparsity"):
        if key in section:
            plan_json[key] = {k: v for k, v in section[key].items() if k != "steps"}
    if "cluster" in section:
        plan_json["cluster"] = {"k": section["cluster"]["k"], "layers": section["cluster"]["layers"]}
    section["plan"] = plan_json
    return section


def _distill(student: Graph, teacher: Graph, cfg: ExportConfig, train, labels, progress, **kwargs):
    from .exporter.finetune import distill

    return distill(student, teacher, train, labels, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                   progress=progress, **kwargs)


def _cluster(student: Graph, teacher: Graph, clustering, cfg: ExportConfig, train, labels, progress, kept=None):
    """Cluster the weights, then (with --finetune-epochs) distil the centroids: each step sets every weight
    of a cluster to the cluster's mean, and the tuned codebook is put back on the int8 grid. ``kept``
    (after --sparsity): the nonzero weights; the pruned ones stay zero (K shared values plus the zeros)."""
    from .exporter.passes import run_passes
    from .exporter.passes.cluster import codebook_summary, share_weights, snap_graph
    from .exporter.passes.sparsity import keep_zeros

    def after_step(module):
        share_weights(module, clustering.assignments)
        keep_zeros(module, kept or {})

    clustered = run_passes(student, [clustering])
    history = None
    if cfg.finetune_epochs and clustering.assignments:
        tuned, history = _distill(clustered, teacher, cfg, train, labels, progress, after_step=after_step)
        clustered = snap_graph(tuned, clustering.assignments)
    for name, keep in (kept or {}).items():
        t = clustered.tensors[name]
        t.data = np.where(keep, t.data, 0).astype(t.data.dtype)
    return clustered, {"k": cfg.cluster, "layers": codebook_summary(clustered, clustering.assignments),
                       "distillation": history,
                       "schedule": ("k-means per layer (linear init), codebook on the int8 grid"
                                    + (f", centroids distilled for up to {cfg.finetune_epochs} epochs"
                                       if history else ", no fine-tuning"))}


SPARSE_RUNTIMES = ("dense zeros: every runtime runs the file unchanged and gains size only (Huffman / zlib / "
                   "lzma rungs of the size ladder), not speed; TFLite sparsity metadata is not written "
                   "(benchmarks/results/sparse_tflite.md: LiteRT's XNNPACK refuses such files, its builtin "
                   "kernels densify them and run no faster, TFLite Micro has no DENSIFY kernel)")


def _sparsify(student: Graph, teacher: Graph, sparsity, cfg: ExportConfig, train, labels, progress):
    """Magnitude pruning raised in steps (sparsity.schedule), each followed by distillation with the
    pruned weights held at zero; without --finetune-epochs one cut to the target."""
    from .exporter.passes import run_passes
    from .exporter.passes.sparsity import STEPS, SparsityPass, keep_zeros, schedule, zero_fractions

    tune = bool(cfg.finetune_epochs) and train is not None
    ramp = schedule(1.0, STEPS) if tune else [1.0]
    epochs = max(1, int(cfg.finetune_epochs) // len(ramp)) if tune else 0
    steps = []
    for fraction in ramp:
        cut = SparsityPass(lambda node, op, f=fraction: f * sparsity.sparsity_of(node, op))
        student = run_passes(student, [cut])
        history = None
        if tune and cut.masks:
            student, history = _distill(student, teacher, cfg.replace(finetune_epochs=epochs), train, labels,
                                        progress, after_step=lambda m, masks=cut.masks: keep_zeros(m, masks))
        steps.append({"fraction_of_target": fraction, "distillation": history})
    layers = zero_fractions(student)
    how = (f"{len(ramp)} steps to the target (cubic ramp: {', '.join(f'{f:.0%}' for f in ramp)} of it), "
           f"{epochs} epochs of distillation after each" if tune else
           "one cut to the target, no distillation (give --finetune-epochs and --train data to prune in steps)")
    return student, {"target": float(cfg.sparsity), "schedule": how, "steps": steps, "layers": layers,
                     "zero_fraction": _overall(student, layers), "runtimes": SPARSE_RUNTIMES}


def _nonzero(graph: Graph) -> dict:
    from .exporter.passes.sparsity import prunable_weights

    return {name: graph.tensors[name].data != 0 for _, name in prunable_weights(graph)}


def _overall(graph: Graph, layers: dict) -> float:
    sizes = {name: graph.tensors[name].size for name in layers}
    return sum(layers[n] * sizes[n] for n in layers) / max(sum(sizes.values()), 1)


def _low_rank_section(low_rank, cfg: ExportConfig) -> dict:
    return {"setting": cfg.low_rank, "chosen_by": f"the target's estimated {cfg.shrink_cost} ({cfg.target})",
            "layers": {f.node: {"rank": f.rank, "full_rank": f.full_rank, "energy_kept": f.energy_kept,
                                f"{cfg.shrink_cost}_before": f.cost_before, f"{cfg.shrink_cost}_after": f.cost_after}
                       for f in low_rank.done}}


def plan_bytes(section: dict) -> bytes:
    return (json.dumps(section["plan"], indent=2, sort_keys=True, default=_plain) + "\n").encode()


def _plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else str(v)
