"""Structure-aware fuzz cases for the `.tflite` validate path and the ONNX loader, shared by
tests/test_fuzz.py (a few hundred cases) and tools/fuzz.py (`make fuzz`, thousands, with process
deaths counted). Everything is a function of (seed file, case number): a case can be rebuilt anywhere.

Seeds are files edgepack writes (int8 and float .tflite, float .onnx of small IR models); each case
applies one to three mutations of the parsed file (indices, dims, buffer indices, opcode indices and
builtin codes, quantization fields, options, subgraph and I/O lists) or of its bytes (truncation,
flipped bytes, overwritten words).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SPECIAL = [0, -1, 1, 2, 255, 256, 65535, 1 << 20, (1 << 31) - 1, -(1 << 31)]
SAMPLES = 6  # validation samples per case


# ---- seeds ------------------------------------------------------------------------------------------
def write_seeds(folder: Path) -> dict[str, Path]:
    """Seed files (int8 .tflite, float .tflite, float .onnx of small IR models) and the samples
    (NCHW float .npy) each one takes: name -> path; samples at ``<name>.npy`` beside."""
    from tflite_helpers import calibrate
    from tflite_models import conv_stack, flatten_gemm, matmul_attention, misc_activations, pools_and_pads, random_feeds

    from edgepack.exporter.emit_onnx import to_onnx
    from edgepack.exporter.emit_tflite import to_tflite

    folder.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for build in (conv_stack, flatten_gemm, misc_activations, pools_and_pads, matmul_attention):
        name, (g, _) = build.__name__, build()
        samples = random_feeds(g, n=SAMPLES)
        calibrate(g, samples)
        x = np.concatenate([s[g.inputs[0]] for s in samples])
        for kind, data in (("int8.tflite", to_tflite(g, int8=True)), ("float.tflite", to_tflite(g, int8=False)),
                           ("float.onnx", to_onnx(g).SerializeToString())):
            path = folder / f"{name}.{kind}"
            path.write_bytes(data)
            np.save(folder / f"{name}.{kind}.npy", x)
            seeds[path.name] = path
    return seeds


# ---- .tflite mutations ------------------------------------------------------------------------------
def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _index(rng, n: int) -> int:
    return int(_pick(rng, [n, n + 1, -1, -2, (1 << 31) - 1, int(rng.integers(max(n, 1))), 0]))


def _uindex(rng, n: int) -> int:  # an unsigned field (buffer, opcode index)
    return int(_pick(rng, [n, n + 1, (1 << 32) - 1, (1 << 31) - 1, int(rng.integers(max(n, 1))), 0]))


def mutate_tflite_model(m, rng) -> str:
    """One structural mutation of a schema.ModelT, in place; returns what it did."""
    if not m.subgraphs:  # an earlier mutation removed them
        return "none"
    sub = m.subgraphs[0]
    tensors, ops, n = sub.tensors, sub.operators, len(sub.tensors)
    kind = _pick(rng, ["op_input", "op_output", "op_arity", "dim", "rank", "buffer", "type", "opcode_index",
                       "builtin", "scale", "zero_point", "quant_dim", "quant_len", "data", "graph_io", "options",
                       "subgraphs", "op_order", "variable"])
    op = _pick(rng, ops) if ops else None
    t = _pick(rng, tensors)
    if kind == "op_input" and op is not None and len(op.inputs):
        op.inputs = list(op.inputs)
        op.inputs[int(rng.integers(len(op.inputs)))] = _index(rng, n)
    elif kind == "op_output" and op is not None:
        op.outputs = list(op.outputs)
        op.outputs[int(rng.integers(len(op.outputs)))] = _index(rng, n)
    elif kind == "op_arity" and op is not None:
        op.inputs = list(op.inputs)[:-1] if rng.random() < 0.6 else list(op.inputs) + [int(rng.integers(n))]
    elif kind == "dim" and t.shape is not None and len(t.shape):
        t.shape = list(t.shape)
        t.shape[int(rng.integers(len(t.shape)))] = int(_pick(rng, SPECIAL + [3, 7]))
    elif kind == "rank":
        shape = list(t.shape) if t.shape is not None else []
        t.shape = shape[:-1] if shape and rng.random() < 0.5 else shape + [int(_pick(rng, [1, 2, 3]))]
    elif kind == "buffer":
        t.buffer = _uindex(rng, len(m.buffers))
    elif kind == "type":
        t.type = int(rng.integers(0, 24))
    elif kind == "opcode_index" and op is not None:
        op.opcodeIndex = _uindex(rng, len(m.operatorCodes))
    elif kind == "builtin":
        code = _pick(rng, m.operatorCodes)
        code.builtinCode = int(rng.integers(0, 210))
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    elif kind in ("scale", "zero_point", "quant_dim", "quant_len") and t.quantization is not None \
            and t.quantization.scale is not None and len(t.quantization.scale):
        q = t.quantization
        q.scale, q.zeroPoint = list(q.scale), list(q.zeroPoint if q.zeroPoint is not None else [])
        if kind == "scale":
            q.scale[int(rng.integers(len(q.scale)))] = float(_pick(rng, [0.0, -1.0, np.nan, np.inf, 1e-45, 1e38]))
        elif kind == "zero_point" and q.zeroPoint:
            q.zeroPoint[int(rng.integers(len(q.zeroPoint)))] = int(_pick(rng, [128, -129, 255, 1 << 31, -1]))
        elif kind == "quant_dim":
            q.quantizedDimension = int(_pick(rng, [1, 2, 3, 4, 7, 1000]))
        else:
            q.scale = q.scale[:-1] if rng.random() < 0.5 else q.scale + [0.5]
    elif kind == "data":
        b = _pick(rng, [b for b in m.buffers if b.data is not None and len(b.data)] or m.buffers)
        data = bytes(np.asarray(b.data if b.data is not None else [], np.uint8))
        cut = int(rng.integers(0, len(data) + 1))
        b.data = np.frombuffer(data[:cut] if rng.random() < 0.6 else data + bytes(int(rng.integers(1, 64))), np.uint8)
    elif kind == "graph_io":
        which = "inputs" if rng.random() < 0.5 else "outputs"
        vals = list(getattr(sub, which))
        choice = rng.random()
        vals = [] if choice < 0.2 else vals + [int(rng.integers(n))] if choice < 0.4 else \
            [_index(rng, n)] + vals[1:]
        setattr(sub, which, vals)
    elif kind == "options" and op is not None and op.builtinOptions is not None:
        fields = [k for k, v in vars(op.builtinOptions).items() if isinstance(v, (int, np.integer))
                  and not isinstance(v, bool)]
        if fields:
            setattr(op.builtinOptions, _pick(rng, fields), int(_pick(rng, [0, -1, 2, 3, 100, (1 << 31) - 1])))
    elif kind == "subgraphs":
        m.subgraphs = [] if rng.random() < 0.3 else m.subgraphs + [m.subgraphs[0]]
    elif kind == "op_order" and len(ops) > 1:
        i, j = rng.choice(len(ops), 2, replace=False)
        ops[i], ops[j] = ops[j], ops[i]
    elif kind == "variable":
        t.isVariable = not t.isVariable
    else:
        return mutate_tflite_model(m, rng)
    return kind


def mutate_bytes(data: bytes, rng) -> tuple[bytes, str]:
    """Truncation, a few flipped bytes, or an overwritten 32-bit word."""
    b = bytearray(data)
    kind = _pick(rng, ["truncate", "flip", "word"])
    if kind == "truncate":
        return bytes(b[: int(rng.integers(0, len(b)))]), kind
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return bytes(b), kind
    at = int(rng.integers(0, len(b) // 4)) * 4
    b[at:at + 4] = int(_pick(rng, SPECIAL + [len(b), 12])).to_bytes(4, "little", signed=True) \
        if rng.random() < 0.8 else rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(b), kind


def tflite_case(seed: bytes, case: int) -> tuple[bytes, str]:
    """The mutated file of case ``case`` and what was done to it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    rng = np.random.default_rng(case)
    if rng.random() < 0.2:
        return mutate_bytes(seed, rng)
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(seed, 0))
    done = [mutate_tflite_model(m, rng) for _ in range(int(rng.integers(1, 4)))]
    builder = flatbuffers.Builder(1024)
    try:
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    except Exception:  # a value the field cannot hold (the writer refuses it): mutate the bytes instead
        return mutate_bytes(seed, rng)
    return bytes(builder.Output()), "+".join(done)


# ---- ONNX mutations ---------------------------------------------------------------------------------
def onnx_case(seed: bytes, case: int) -> tuple[bytes, str]:
    """The mutated .onnx of case ``case`` and what was done to it."""
    import onnx

    rng = np.random.default_rng(case)
    if rng.random() < 0.2:
        return mutate_bytes(seed, rng)
    m = onnx.load_from_string(seed)
    done = [_mutate_onnx(m, rng) for _ in range(int(rng.integers(1, 4)))]
    return m.SerializeToString(), "+".join(done)


def _mutate_onnx(m, rng) -> str:
    g = m.graph
    names = [i.name for i in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output]
    kind = _pick(rng, ["node_input", "node_output", "op_type", "attr", "init_dim", "init_data", "init_type",
                       "input_dim", "drop_node", "opset", "output_name", "node_order"])
    node = _pick(rng, list(g.node))
    if kind == "node_input" and len(node.input):
        node.input[int(rng.integers(len(node.input)))] = _pick(rng, names + ["", "nowhere"])
    elif kind == "node_output":
        node.output[0] = _pick(rng, names + ["", "dup"])
    elif kind == "op_type":
        node.op_type = _pick(rng, ["Conv", "Gemm", "Relu", "Add", "Reshape", "MaxPool", "Softmax", "Concat",
                                   "Transpose", "Pad", "ReduceMean", "MatMul", "Mystery", "Resize", "Clip"])
    elif kind == "attr" and len(node.attribute):
        a = _pick(rng, list(node.attribute))
        if len(a.ints):
            a.ints[int(rng.integers(len(a.ints)))] = int(_pick(rng, SPECIAL + [-5]))
        elif a.type == a.INT:
            a.i = int(_pick(rng, SPECIAL))
        elif a.type == a.FLOAT:
            a.f = float(_pick(rng, [np.nan, np.inf, -1.0, 0.0, 1e30]))
        else:
            del a.ints[:]
    elif kind in ("init_dim", "init_data", "init_type") and len(g.initializer):
        t = _pick(rng, list(g.initializer))
        if kind == "init_dim" and len(t.dims):
            t.dims[int(rng.integers(len(t.dims)))] = int(_pick(rng, SPECIAL[:-1] + [3]))
        elif kind == "init_data":
            raw = t.raw_data
            t.raw_data = raw[: int(rng.integers(0, len(raw) + 1))] if rng.random() < 0.6 else raw + b"\0" * 8
        else:
            t.data_type = int(rng.integers(0, 25))
    elif kind == "input_dim" and len(g.input):
        dims = g.input[0].type.tensor_type.shape.dim
        if len(dims):
            d = dims[int(rng.integers(len(dims)))]
            if rng.random() < 0.3:
                d.dim_param = "N"
            else:
                d.dim_value = int(_pick(rng, [0, 1, 3, 1 << 20, (1 << 31) - 1, 1 << 40]))
    elif kind == "drop_node" and len(g.node) > 1:
        del g.node[int(rng.integers(len(g.node)))]
    elif kind == "opset":
        m.opset_import[0].version = int(_pick(rng, [1, 7, 10, 11, 13, 22, 30, 1000]))
    elif kind == "output_name":
        g.output[0].name = _pick(rng, names + ["nowhere"])
    elif kind == "node_order" and len(g.node) > 1:
        nodes = list(g.node)
        i, j = rng.choice(len(nodes), 2, replace=False)
        nodes[i], nodes[j] = nodes[j], nodes[i]
        del g.node[:]
        g.node.extend(nodes)
    else:
        return _mutate_onnx(m, rng)
    return kind


# ---- running a case ---------------------------------------------------------------------------------
def reference_for(seed: Path) -> Path | None:
    """The model a mutated float .tflite is compared with (its seed's .onnx twin): validate refuses a
    lone float file, there being nothing to compare."""
    return seed.with_name(seed.name.replace(".float.tflite", ".float.onnx")) if ".float." in seed.name else None


def run_validate(path: Path, samples: Path, target: str = "stm32l4r5", reference: Path | None = None):
    """What `edgepack validate FILE --data SAMPLES [--reference MODEL]` ends with, through the library
    function the CLI calls: (0, "") on success, (exit code, message) for an EdgepackError. Anything
    else propagates."""
    from edgepack.api import validate_artifacts
    from edgepack.errors import EdgepackError

    try:
        validate_artifacts([path], samples, target=target, limit=SAMPLES, reference=reference)
    except EdgepackError as exc:
        return exc.exit_code, str(exc)
    return 0, ""


def run_load(path: Path) -> tuple[int, str]:
    """What loading a .onnx ends with (edgepack.load): (0, "") or (exit code, message)."""
    import edgepack
    from edgepack.errors import EdgepackError

    try:
        edgepack.load(path)
    except EdgepackError as exc:
        return exc.exit_code, str(exc)
    return 0, ""
