"""Does loading this SavedModel run more than a model? Read saved_model.pb before TensorFlow loads it.

tf.saved_model.load runs graph code from the folder: a TF1 main op, TF2 resource initializers, restore
functions. TensorFlow ops can write files (WriteFile, SaveV2, ...) or call Python (PyFunc). A SavedModel
is loaded by default only when every op outside its save function is one tf2onnx can convert or one
that holds and restores variables; anything else needs ``trust_code``.
"""
from __future__ import annotations

from pathlib import Path

# Ops a plain Keras/TF SavedModel needs besides the computation itself: variables, calls, restore.
_HOLDING_OPS = {"VarHandleOp", "VarIsInitializedOp", "ReadVariableOp", "AssignVariableOp",
                "DisableCopyOnRead", "RestoreV2", "StatefulPartitionedCall", "PartitionedCall", "Placeholder",
                "Const", "NoOp", "Identity", "IdentityN"}


def _convertible_ops() -> set[str]:
    import tf2onnx.tfonnx  # noqa: F401  (registers the op handlers)
    from tf2onnx.handler import tf_op

    return {op for opsets in tf_op.get_opsets().values() for table in opsets for op in table}


def _called(node) -> list[str]:
    """Functions a NodeDef calls through its attributes (f, then_branch, body, ...)."""
    names = []
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names += [f.name for f in attr.list.func]
    return names


def saved_model_problem(folder: Path) -> str | None:
    """The first op loading this SavedModel could run that is neither convertible nor variable handling."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(folder) / "saved_model.pb").read_bytes())
    allowed = _convertible_ops() | _HOLDING_OPS
    for meta in saved.meta_graphs:
        functions = {f.signature.name: f for f in meta.graph_def.library.function}

        def reach(roots):
            seen, todo = set(), list(roots)
            while todo:
                name = todo.pop()
                if name in functions and name not in seen:
                    seen.add(name)
                    todo += [c for n in functions[name].node_def for c in _called(n)]
            return seen

        save_node = meta.saver_def.save_tensor_name.split(":")[0]
        graph_calls = {n.name: _called(n) for n in meta.graph_def.node}
        others = reach([c for name, calls in graph_calls.items() if name != save_node for c in calls]
                       + list(meta.object_graph_def.concrete_functions))
        save_only = reach(graph_calls.get(save_node, [])) - others
        places = [("the graph", n) for n in meta.graph_def.node]
        places += [(name, n) for name, f in sorted(functions.items()) if name not in save_only
                   for n in f.node_def]
        for where, node in places:
            if node.op not in allowed:
                return f"the TensorFlow op {node.op} ('{node.name}' in {where})"
    return None
