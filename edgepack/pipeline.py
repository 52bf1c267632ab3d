"""The whole pass pipeline, read as one list: ``build_pipeline(cfg)``.

Each step is a named pass of the one contract (``ir.passes``: ``(graph) -> PassResult(graph, changed)``,
declared in place or copying, checked by ``run_passes``) and the stage that runs it:
- load: the frontends' normalisations, run by the ONNX frontend on every graph it builds (the Keras
  tidying only on tf2onnx files); listed here so that the order is read in one place;
- cleanup: ``exporter.passes.DEFAULT_PASSES``, run by ``api.load``;
- equalize: run by ``api.export`` and kept only when the fake-quant int8 check says it does not hurt;
- shrink: separable replacement, channel pruning, low rank, unstructured sparsity, then weight clustering,
  run by ``shrink.shrink`` (the passes keep what they did, ``.replaced``, ``.plan``, ``.done``, ``.masks``
  and ``.assignments``, for plan.json and for the fine-tuning); the structural passes are distilled first,
  then sparsity is raised in steps with distillation between them, clustering comes last (Deep
  Compression's order). Low rank, ``--separable auto`` and each pruned channel group ask the target's
  cost model, latency or energy (``shrink_cost``), whether the change is cheaper; pruning keeps channel
  counts a multiple of the profile's ``round_to`` (``--round-to`` overrides).
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
    from .config import parse_low_rank
    from .exporter.passes import DEFAULT_PASSES
    from .exporter.passes.cluster import ClusterPass
    from .exporter.passes.equalize import equalize
    from .exporter.passes.low_rank import LowRankPass
    from .exporter.passes.sparsity import SparsityPass
    from .exporter.passes.prune import PrunePass
    from .exporter.passes.separable import AUTO_ERROR_THRESHOLD, SEPARABLE_ERROR_WITH_FINETUNE, SeparablePass
    from .frontends.keras_normalize import normalize_keras_graph
    from .frontends.onnx_normalize import ONNX_NORMALIZATION

    steps = [Step("load", p) for p in [*ONNX_NORMALIZATION, normalize_keras_graph]]
    steps += [Step("cleanup", p) for p in DEFAULT_PASSES]
    if cfg.equalize:
        steps.append(Step("equalize", equalize))
    if cfg.separable not in (None, "none"):
        threshold = SEPARABLE_ERROR_WITH_FINETUNE if cfg.finetune_epochs else AUTO_ERROR_THRESHOLD
        cost = shrink_cost(cfg) if cfg.separable == "auto" else None
        steps.append(Step("shrink", SeparablePass(cfg.separable, error_threshold=threshold, cost=cost)))
    if cfg.prune:
        samples = train[:256] if train is not None else None
        steps.append(Step("shrink", PrunePass(cfg.prune, importance=cfg.prune_importance, round_to=round_to(cfg),
                                              samples=samples, keep=_kept(cfg), cost=shrink_cost(cfg))))
    energy = parse_low_rank(cfg.low_rank)
    if energy is not None or any(s.rank is not None for s in cfg.layers.values()):
        steps.append(Step("shrink", LowRankPass(energy, shrink_cost(cfg), lambda node, op: cfg.layer(node, op).rank)))
    if cfg.sparsity or any(s.sparsity for s in cfg.layers.values()):
        steps.append(Step("shrink", SparsityPass(lambda node, op: _sparsity(cfg, node, op))))
    if cfg.cluster or any(s.cluster for s in cfg.layers.values()):
        steps.append(Step("shrink", ClusterPass(cfg.cluster, lambda node, op: cfg.layer(node, op).cluster)))
    return steps


def _sparsity(cfg: ExportConfig, node: str, op: str) -> float:
    """A layer's sparsity; the two layers low rank made of one (``NODE/low_rank_a``, ``_b``) take NODE's."""
    own = cfg.layer(node, op).sparsity
    if own is None and "/low_rank_" in node:
        own = cfg.layer(node.rsplit("/low_rank_", 1)[0], op).sparsity
    return float(cfg.sparsity if own is None else own)


def round_to(cfg: ExportConfig) -> int:
    """The channel multiple of pruning: --round-to, else the target profile's (its kernels' channel tile)."""
    from .targets.profile import load_profile

    return int(cfg.round_to) if cfg.round_to is not None else load_profile(cfg.target).round_to


def shrink_cost(cfg: ExportConfig):
    """``cost(graph)`` of the target named by ``cfg``: estimated cycles, or pJ with ``shrink_cost = energy``."""
    from .errors import ConfigError
    from .targets.energy import graph_energy_pj
    from .targets.latency import estimate_latency
    from .targets.profile import load_profile

    profile = load_profile(cfg.target)
    if cfg.shrink_cost == "latency":
        return lambda graph: estimate_latency(graph, profile).total_cycles
    if profile.energy is None:
        raise ConfigError(f"--shrink-cost energy: target '{profile.name}' has no [energy] table", "shrink_cost")
    return lambda graph: graph_energy_pj(graph, profile.energy)


def _kept(cfg: ExportConfig):
    """``keep(node, op)`` for pruning: the layers whose settings say ``prune = false`` (None: no such layer)."""
    if not any(s.prune is False for s in cfg.layers.values()):
        return None
    return lambda node, op: cfg.layer(node, op).prune is False


def stage(steps: list[Step], name: str) -> list[Pass]:
    """The passes of one stage, in order."""
    if name not in STAGES:
        raise ValueError(f"unknown pipeline stage {name!r} (allowed: {', '.join(STAGES)})")
    return [s.graph_pass for s in steps if s.stage == name]


def describe(steps: list[Step]) -> list[str]:
    """``stage: pass`` per step, for logs and docs."""
    return [f"{s.stage}: {s.name}" for s in steps]
