"""Keras layer names on the nodes tf2onnx makes. TensorFlow makes every name scope unique within the traced
graph, so the ops of layer ``activation`` sit under ``activation_1`` (a name that may be another layer's):
reporting the scope shifts names by one. The scopes are rebuilt here by replaying TensorFlow's
uniquifier over the layers in call order, and each node's scope is replaced by its layer's own name."""
from __future__ import annotations


def _replay(names: list[str], uses: int) -> dict[str, str]:
    """{scope TensorFlow gave: name} when each name asked for a unique scope ``uses`` times (the last kept),
    as tf.Graph.unique_name does."""
    in_use: dict[str, int] = {}
    scopes = {}
    for name in names:
        for _ in range(uses):
            key = name.lower()
            i = in_use.get(key, 0)
            in_use[key] = i + 1
            scope = name
            if i > 0:
                base = key
                while key in in_use:
                    key, i = f"{base}_{i}", i + 1
                in_use[key] = 1
                scope = f"{name}_{i - 1}"
        scopes[scope] = name
    return scopes


def keras_layer_scopes(model, node_names: list[str]) -> dict[str, str]:
    """{scope in the node names: Keras layer name}, from the replay that explains the most node names."""
    names = [model.name] + [layer.name for layer in model.layers if type(layer).__name__ != "InputLayer"]
    scoped = [n.split("/") for n in node_names]
    best, best_hits = {}, 0
    for uses in (2, 1, 3):
        scopes = _replay(names, uses)
        hits = sum(len(p) > 2 and p[0] in scopes and p[1] in scopes for p in scoped)
        if hits > best_hits:
            best, best_hits = scopes, hits
    return best


def rename_nodes(proto, model) -> None:
    """Node ``functional_1/activation_1/Relu`` of layer ``activation`` becomes ``functional/activation/Relu``."""
    scopes = keras_layer_scopes(model, [n.name for n in proto.graph.node])
    if not scopes:
        return
    for node in proto.graph.node:
        parts = node.name.split("/")
        if len(parts) > 2 and parts[0] in scopes and parts[1] in scopes:
            node.name = "/".join([scopes[parts[0]], scopes[parts[1]]] + parts[2:])

