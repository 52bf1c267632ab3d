"""Where artifacts run: target profiles as data (``profiles/*.toml``) and the latency cost model.

- ``load_profile(name | alias | path)`` -> ``TargetProfile``; ``list_profiles()``; ``profile_names()``
- ``estimate_latency(graph, profile)`` -> ``LatencyEstimate`` (total, per op type, per op kind, per node)

Imports only ``edgepack.ir`` and ``edgepack.errors``.
"""
from .latency import LatencyEstimate, NodeLatency, estimate_latency, node_work, op_kind
from .profile import (COST_KINDS, OpCost, TargetProfile, list_profiles, load_profile, profile_names,
                      read_profile)

__all__ = ["COST_KINDS", "LatencyEstimate", "NodeLatency", "OpCost", "TargetProfile", "estimate_latency",
           "list_profiles", "load_profile", "node_work", "op_kind", "profile_names", "read_profile"]
