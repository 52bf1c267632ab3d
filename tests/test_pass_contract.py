"""The pass contract (ir.passes): every pass returns PassResult(graph, changed), declared in place or
copying, and run_passes refuses a pass that breaks its declaration; the pipeline is one list from the config."""
import numpy as np
import pytest

import zoo
from edgepack import load
from edgepack.config import ExportConfig
from edgepack.ir.passes import PassContractError, PassResult, graph_pass, run_one, run_passes
from edgepack.pipeline import build_pipeline, describe, stage


def _graph():
    model, shape = zoo.build("plain_cnn")
    return load(model, input_shape=shape)


def test_in_place_pass_returning_another_graph_is_refused():
    @graph_pass
    def sneaky_copy(g):
        return PassResult(g.copy(), False)
    with pytest.raises(PassContractError, match="sneaky_copy is declared in place"):
        run_passes(_graph(), [sneaky_copy])


def test_copying_pass_that_edits_its_input_is_refused():
    @graph_pass(in_place=False)
    def edits_input(g):
        g.nodes.pop()
        return PassResult(g.copy(), True)
    with pytest.raises(PassContractError, match="edits_input is declared copying"):
        run_one(_graph(), edits_input)


def test_undeclared_pass_is_refused():
    with pytest.raises(PassContractError, match="not declared"):
        run_one(_graph(), lambda g: (g, False))


def test_the_pipeline_is_one_list_from_the_config():
    base = describe(build_pipeline(ExportConfig()))
    assert base == ["load: fuse_bias_add", "load: lift_1d", "load: remove_unused", "load: normalize_keras_graph",
                    "cleanup: remove_identity", "cleanup: fold_batchnorm", "cleanup: fold_input_affine",
                    "cleanup: fold_hard_sigmoid", "cleanup: decompose_layernorm",
                    "cleanup: fuse_activations", "cleanup: remove_dead"]
    full = describe(build_pipeline(ExportConfig(equalize=True, separable="auto", prune=0.5)))
    assert full == base + ["equalize: equalize", "shrink: separable_convs", "shrink: prune_channels"]
    assert all(isinstance(s.graph_pass.in_place, bool) for s in build_pipeline(ExportConfig(prune=0.5)))
    with pytest.raises(ValueError, match="allowed: load, cleanup, equalize, shrink"):
        stage(build_pipeline(ExportConfig()), "calibrate")


def test_every_pass_of_the_pipeline_keeps_its_declaration_on_a_zoo_model():
    """Equalize, separable and prune on a loaded CNN under the runner's checks: the graph shrinks, the
    caller's graph is untouched, and each pass's result unpacks as (graph, changed)."""
    g = _graph()
    steps = build_pipeline(ExportConfig(equalize=True, separable="auto", prune=0.5))
    nodes_before = [id(n) for n in g.nodes]
    out = run_passes(g, stage(steps, "cleanup") + stage(steps, "equalize") + stage(steps, "shrink"))
    assert [id(n) for n in g.nodes] == nodes_before
    prune = stage(steps, "shrink")[-1]
    assert prune.plan.removed_channels > 0
    w_before = sum(int(np.prod(t.shape)) for t in g.tensors.values() if t.is_const)
    assert sum(int(np.prod(t.shape)) for t in out.tensors.values() if t.is_const) < w_before
    graph, changed = stage(steps, "cleanup")[0](out.copy())
    assert changed is False and graph.op_counts() == out.op_counts()
