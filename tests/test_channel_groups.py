"""Channel groups: which channels must be removed together, on zoo models and hand-built graphs."""
from __future__ import annotations

import pytest

import zoo
from edgepack.exporter.passes.channel_groups import analyse_channels, find_channel_groups
from ir_build import make_graph, rand

CONV = dict(strides=[1, 1], pads=[1, 1, 1, 1], dilations=[1, 1], group=1)
PW = dict(strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)

graph = zoo.loaded


def group_with(groups, producer_part):
    found = [g for g in groups if any(producer_part in p for p in g.key)]
    assert len(found) == 1, f"{producer_part}: {[g.key for g in groups]}"
    return found[0]


def names(refs):
    return sorted({r.node for r in refs})


def test_residual_add_couples_both_producers():
    groups = find_channel_groups(graph("resnet"), protect_first_last=False)
    stem = group_with(groups, "/stem/")
    assert stem.key == ("/blocks/blocks.0/c2/c2.0/Conv", "/stem/stem.0/Conv")  # identity skip: stem + c2
    assert not stem.protected and stem.channels == 16
    assert names(stem.consumers) == ["/blocks/blocks.0/c1/c1.0/Conv", "/blocks/blocks.1/c1/c1.0/Conv",
                                     "/blocks/blocks.1/skip/skip.0/Conv"]
    down = group_with(groups, "skip")  # projection shortcut and c2 of block 1 share the Add
    assert down.key == ("/blocks/blocks.1/c2/c2.0/Conv", "/blocks/blocks.1/skip/skip.0/Conv")
    assert names(down.consumers) == ["/fc/Gemm"] and not down.protected
    assert {r.tensor for r in down.dependents} == {"/blocks/blocks.1/c2/c2.0/Conv.bias",
                                                   "/blocks/blocks.1/skip/skip.0/Conv.bias"}
    # With the default protection, the group holding the first layer is left alone.
    assert group_with(find_channel_groups(graph("resnet")), "/stem/").protected


def test_concat_places_each_producer_at_its_offset():
    groups = find_channel_groups(graph("squeezenet"))
    e1, e3 = group_with(groups, "features.4/e1"), group_with(groups, "features.4/e3")
    (c1,), (c3,) = e1.consumers, e3.consumers
    assert c1.node == c3.node == "/classifier/classifier.0/Conv" and c1.axis == c3.axis == 1
    assert (c1.offset, c3.offset, c1.block, c3.block) == (0, 16, 1, 1)
    assert c1.indices([0, 2]) == [0, 2] and c3.indices([0, 2]) == [16, 18]
    assert not e1.protected and not e3.protected
    squeeze = group_with(groups, "features.4/s/")
    assert names(squeeze.consumers) == ["/features/features.4/e1/e1.0/Conv", "/features/features.4/e3/e3.0/Conv"]


def test_depthwise_passes_channels_through():
    g = graph("mobilenet_v2")
    groups = find_channel_groups(g)
    expand = group_with(groups, "blocks.1/body/body.0/")
    assert expand.channels == 48 and not expand.protected
    deps = {r.tensor: r for r in expand.dependents}
    assert "blocks.1.body.1.0.weight" in deps and deps["blocks.1.body.1.0.weight"].axis == 0
    assert "/blocks/blocks.1/body/body.1/body.1.0/Conv.bias" in deps
    assert names(expand.consumers) == ["/blocks/blocks.1/body/body.2/Conv"]  # the projection, past the dw conv
    # The residual Add of block 2 ties the projections of blocks 1 and 2, read by block 2 and the head.
    res = group_with(groups, "blocks.2/body/body.2/")
    assert res.key == ("/blocks/blocks.1/body/body.2/Conv", "/blocks/blocks.2/body/body.2/Conv")
    assert names(res.consumers) == ["/blocks/blocks.2/body/body.0/body.0.0/Conv", "/fc/Gemm"]


def test_squeeze_excite_mul_ties_the_branches():
    groups = find_channel_groups(graph("mobilenet_v3"))
    se = group_with(groups, "blocks.0/body/body.2/fc2")
    assert se.key == ("/blocks/blocks.0/body/body.0/body.0.0/Conv", "/blocks/blocks.0/body/body.2/fc2/Conv")
    assert names(se.consumers) == ["/blocks/blocks.0/body/body.2/fc1/Conv", "/blocks/blocks.0/body/body.3/Conv"]
    assert "blocks.0.body.2.fc2.bias" in {r.tensor for r in se.dependents}
    assert "blocks.0.body.1.0.weight" in {r.tensor for r in se.dependents}  # depthwise in between
    squeeze = group_with(groups, "blocks.0/body/body.2/fc1")
    assert squeeze.channels == 8 and names(squeeze.consumers) == ["/blocks/blocks.0/body/body.2/fc2/Conv"]


def test_flatten_before_gemm_ties_a_block_of_rows():
    groups = find_channel_groups(graph("plain_cnn"))
    last_conv = group_with(groups, "features.2")
    (ref,) = last_conv.consumers
    assert (ref.node, ref.tensor, ref.axis, ref.block) == ("/head/head.1/Gemm", "head.1.weight", 1, 4)  # 2x2
    assert ref.indices([1]) == [4, 5, 6, 7]
    analysis = analyse_channels(graph("plain_cnn"))
    assert analysis.reshapes == ["/head/head.0/Flatten"]


def test_graph_output_and_first_layer_are_protected():
    groups = find_channel_groups(graph("plain_cnn"))
    assert group_with(groups, "Gemm").protected and "graph output" in group_with(groups, "Gemm").reason
    first = group_with(groups, "features.0")
    assert first.protected and "first layer" in first.reason
    assert not group_with(find_channel_groups(graph("plain_cnn"), protect_first_last=False), "features.0").protected


def test_add_with_graph_input_and_transpose_protect():
    g = make_graph({"x": (1, 4, 6, 6)},
                   [("Conv", ["x", "w1"], "a", CONV, "c1"), ("Add", ["a", "x"], "s", {}, "add"),
                    ("Conv", ["s", "w2"], "b", CONV, "c2"), ("Transpose", ["b"], "t", {"perm": [0, 2, 1, 3]}, "tr"),
                    ("Conv", ["t", "w3"], "c", CONV, "c3"), ("Relu", ["c"], "y", {}, "relu")],
                   {"w1": rand(4, 4, 3, 3), "w2": rand(6, 4, 3, 3), "w3": rand(5, 6, 3, 3, seed=1)})
    groups = {g.key: g for g in find_channel_groups(g, protect_first_last=False)}
    assert groups[("c1",)].protected and "graph input" in groups[("c1",)].reason
    assert groups[("c2",)].protected and "Transpose" in groups[("c2",)].reason
    assert groups[("c3",)].protected  # reaches the output


def test_depthwise_multiplier_and_constant_mul():
    g = make_graph({"x": (1, 4, 6, 6)},
                   [("Conv", ["x", "w1", "b1"], "a", PW, "c1"), ("Conv", ["a", "w1"], "a2", PW, "c1b"),
                    ("Conv", ["a2", "wd", "bd"], "d", dict(CONV, group=4), "dw"),
                    ("Mul", ["d", "scale"], "m", {}, "mul"), ("Conv", ["m", "w3"], "y", PW, "c3")],
                   {"w1": rand(4, 4, 1, 1), "b1": rand(4), "wd": rand(8, 1, 3, 3), "bd": rand(8),
                    "scale": rand(1, 8, 1, 1), "w3": rand(2, 8, 1, 1)})
    groups = {grp.key: grp for grp in find_channel_groups(g, protect_first_last=False)}
    # w1 is read by two nodes: its channels cannot be cut for one of them only.
    assert groups[("c1",)].protected and "shared" in groups[("c1",)].reason
    g.nodes[1].inputs[1] = g.add_const("w1b", rand(4, 4, 1, 1))
    groups = {grp.key: grp for grp in find_channel_groups(g, protect_first_last=False)}
    grp = groups[("c1b",)]
    assert not grp.protected
    deps = {r.tensor: r for r in grp.dependents}
    assert (deps["wd"].axis, deps["wd"].block, deps["scale"].axis, deps["scale"].block) == (0, 2, 1, 2)
    assert deps["wd"].indices([1]) == [2, 3]
    assert [r.block for r in grp.consumers] == [2]
    assert analyse_channels(g).depthwise == {"dw": 2}


@pytest.mark.parametrize("name", ["resnet", "squeezenet", "mobilenet_v2", "mobilenet_v3", "plain_cnn"])
def test_every_weight_cut_matches_its_channel_count(name):
    """Each cut's extent along its axis fits the tensor: offset + channels*block <= size."""
    g = graph(name)
    for grp in find_channel_groups(g, protect_first_last=False):
        for ref in grp.cuts:
            size = g.tensors[ref.tensor].shape[ref.axis]
            assert ref.offset + grp.channels * ref.block <= size, (grp.key, ref)
        assert len({g.tensors[r.tensor].shape[0] for r in grp.producers}) == 1
