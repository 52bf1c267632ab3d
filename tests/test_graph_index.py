"""The graph's producer/consumer index stays equal to a full scan under every kind of edit passes make."""
import random

from edgepack.ir import Graph, Node, Tensor


def scan_consumers(g: Graph, name: str):
    return [n for n in g.nodes if name in n.inputs]


def scan_producer(g: Graph, name: str):
    return next((n for n in g.nodes if name in n.outputs), None)


def check(g: Graph, names):
    for t in names:
        assert g.consumers(t) == scan_consumers(g, t), t
        assert g.producer(t) is scan_producer(g, t), t
    for n in g.nodes:
        assert g.node(n.name) is next(m for m in g.nodes if m.name == n.name)


def test_index_matches_a_full_scan_after_random_edits():
    rng = random.Random(0)
    g = Graph("g")
    names = [f"t{i}" for i in range(30)]
    for t in names:
        g.add_tensor(Tensor(t, (1,)))
    g.nodes = [Node(f"n{i}", "Add", [rng.choice(names), rng.choice(names)], [rng.choice(names)]) for i in range(20)]
    check(g, names)  # builds the index
    counter = 100
    for step in range(2000):
        kind = rng.randrange(11)
        node = rng.choice(g.nodes) if g.nodes else None
        if kind == 0 and node:
            node.inputs[rng.randrange(len(node.inputs))] = rng.choice(names)
        elif kind == 1 and node:
            node.inputs = [rng.choice(names) for _ in range(rng.randrange(1, 4))]
        elif kind == 2 and node:
            node.outputs.append(rng.choice(names))
        elif kind == 3 and node and node.outputs:
            node.outputs.pop()
        elif kind == 4:
            counter += 1
            g.nodes.insert(rng.randrange(len(g.nodes) + 1), Node(f"n{counter}", "Relu", [rng.choice(names)],
                                                                 [rng.choice(names)]))
        elif kind == 5 and node:
            g.remove_node(node)
        elif kind == 6 and len(g.nodes) > 2:
            at = rng.randrange(len(g.nodes) - 1)
            counter += 2
            g.nodes[at:at + 1] = [Node(f"n{counter - 1}", "Mul", [rng.choice(names)], [rng.choice(names)]),
                                  Node(f"n{counter}", "Add", [rng.choice(names)], [rng.choice(names)])]
        elif kind == 7:
            g.nodes = [n for n in g.nodes if rng.random() > 0.05]
        elif kind == 8 and node:
            counter += 1
            node.name = f"renamed{counter}"
        elif kind == 9:
            g.replace_uses(rng.choice(names), rng.choice(names))
        elif kind == 10 and len(g.nodes) > 1:
            del g.nodes[0]
        if step % 50 == 0:
            check(g, names)
    check(g, names)


def test_a_copy_has_its_own_index():
    g = Graph("g")
    for t in ("a", "b", "c"):
        g.add_tensor(Tensor(t, (1,)))
    g.nodes = [Node("n0", "Relu", ["a"], ["b"]), Node("n1", "Relu", ["b"], ["c"])]
    assert [n.name for n in g.consumers("b")] == ["n1"]
    h = g.copy()
    h.nodes[1].inputs[0] = "a"
    assert [n.name for n in h.consumers("b")] == [] and [n.name for n in h.consumers("a")] == ["n0", "n1"]
    assert [n.name for n in g.consumers("b")] == ["n1"]  # the original is untouched


def test_unique_name_sees_nodes_and_tensors():
    g = Graph("g")
    g.add_tensor(Tensor("x", (1,)))
    g.nodes = [Node("conv", "Relu", ["x"], ["x_out"])]
    assert g.unique_name("x") == "x_1" and g.unique_name("conv") == "conv_1" and g.unique_name("new") == "new"
