"""Graph passes: each is ``pass_name(graph) -> PassResult(graph, changed)``, declared in place or copying
(``ir.passes.graph_pass``), run in order from one list by ``run_passes``, which checks the declaration.

``run_passes`` hands the passes a copy, so the caller's graph is untouched. The whole pipeline, from the
frontends' normalisations to the shrink steps, is one list: ``edgepack.pipeline.build_pipeline(cfg)``.
"""
from __future__ import annotations

from typing import Sequence

from edgepack.ir import Graph
from edgepack.ir.passes import Pass, PassContractError, PassResult, graph_pass
from edgepack.ir.passes import run_passes as _run_passes

from .cleanup import remove_dead, remove_identity
from .fold_affine import fold_hard_sigmoid, fold_input_affine
from .fold_bn import fold_batchnorm
from .fuse import fuse_activations
from .layernorm import decompose_layernorm

DEFAULT_PASSES: list[Pass] = [
    remove_identity,   # Identity / Dropout are no-ops at inference
    fold_batchnorm,    # BN into Conv/Gemm weights, else Mul + Add
    fold_input_affine,  # Rescaling/Normalization Mul/Add into the conv that reads them
    fold_hard_sigmoid,  # HardSigmoid after a conv: its scale, bias and RELU6 into the conv, then x/6
    decompose_layernorm,  # LayerNormalization -> ReduceMean/Sub/Mul/Add/Rsqrt (no TFLite builtin)
    fuse_activations,  # Relu / Relu6 into Conv, Gemm, Add, Sub, Mul
    remove_dead,       # whatever the passes above left unread
]


def run_passes(graph: Graph, passes: Sequence[Pass] = DEFAULT_PASSES) -> Graph:
    """Run the passes in order on a copy of ``graph``, verifying the graph after each one."""
    return _run_passes(graph, passes)


__all__ = ["DEFAULT_PASSES", "Pass", "PassContractError", "PassResult", "graph_pass", "run_passes",
           "remove_identity", "remove_dead", "fold_batchnorm", "fold_input_affine", "fold_hard_sigmoid", "fuse_activations", "decompose_layernorm"]
