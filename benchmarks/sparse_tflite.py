"""Does a runtime gain from TFLite's sparsity metadata? (issue 17, unstructured pruning)

A Keras MLP (3 x Dense 512) and a CNN (3x3 convs, 64 channels), weights 80% zeros by magnitude, are
converted to full-int8 .tflite twice by tf.lite.TFLiteConverter: dense (DEFAULT) and with
EXPERIMENTAL_SPARSITY (block-sparse / CSR `sparsity` metadata on the weight tensors it finds sparse).
Per file: bytes, how many tensors carry sparsity metadata, whether LiteRT (XNNPACK, its builtin optimized
kernels without XNNPACK, reference kernels) and TFLite Micro load and run it (and give the dense file's
outputs), and LiteRT latency of each resolver that runs it (1 thread, interleaved rounds, ratio to the
dense file on XNNPACK).

    .venv/bin/python benchmarks/sparse_tflite.py
"""
from __future__ import annotations

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import numpy as np

import common  # noqa: F401  (puts the checkout on sys.path)
from common import interleaved, md_table, median, write_results

SPARSITY = 0.8


def _models():
    import tensorflow as tf

    mlp = tf.keras.Sequential([tf.keras.Input((256,)), tf.keras.layers.Dense(512, "relu"),
                               tf.keras.layers.Dense(512, "relu"), tf.keras.layers.Dense(512, "relu"),
                               tf.keras.layers.Dense(10)])
    cnn = tf.keras.Sequential([tf.keras.Input((32, 32, 16)), tf.keras.layers.Conv2D(64, 3, padding="same",
                               activation="relu"), tf.keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                               tf.keras.layers.Conv2D(64, 1, activation="relu"), tf.keras.layers.GlobalAveragePooling2D(),
                               tf.keras.layers.Dense(10)])
    return {"mlp": (mlp, (256,)), "cnn": (cnn, (32, 32, 16))}


def _sparsify(model, rng):
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            w = ws[0]
            w = rng.standard_normal(w.shape).astype(np.float32) * 0.05
            w[np.abs(w) < np.quantile(np.abs(w), SPARSITY)] = 0.0
            layer.set_weights([w, *ws[1:]])


def _convert(model, shape, sparse: bool, rng) -> bytes:
    import tensorflow as tf

    calib = rng.standard_normal((50, *shape)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT] + ([tf.lite.Optimize.EXPERIMENTAL_SPARSITY] if sparse else [])
    conv.representative_dataset = lambda: ([c[None]] for c in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def _sparse_tensors(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    sub = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    return [sub.Tensors(i).Name().decode() for i in range(sub.TensorsLength()) if sub.Tensors(i).Sparsity()]


def _ops(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.Subgraphs(0)
    codes = [max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    return [names.get(codes[sub.Operators(i).OpcodeIndex()], "?") for i in range(sub.OperatorsLength())]


def _interpreter(data: bytes, resolver: str):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=data, num_threads=1,
                         experimental_op_resolver_type=getattr(OpResolverType, resolver))
    interp.allocate_tensors()
    return interp


def _invoke(interp, x):
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


RESOLVERS = {"litert_xnnpack": "AUTO", "litert_builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
             "litert_ref": "BUILTIN_REF"}


def _try(make, x, litert=False):
    try:
        return (_invoke(make(), x) if litert else make().run(x)[0]), "runs"
    except Exception as exc:  # the finding is which runtime refuses the file, and with what message
        return None, f"fails: {str(exc).splitlines()[0][:120]}"


def main():
    from edgepack.targets.runtimes import TFLM

    rng = np.random.default_rng(0)
    rows, facts = [], {}
    for name, (model, shape) in _models().items():
        _sparsify(model, rng)
        files = {kind: _convert(model, shape, kind == "sparse", rng) for kind in ("dense", "sparse")}
        x = rng.integers(-128, 128, (1, *shape)).astype(np.int8)
        ref = _invoke(_interpreter(files["dense"], "BUILTIN_REF"), x)
        runnable = {}
        for kind, data in files.items():
            out = {"bytes": len(data), "sparse_tensors": len(_sparse_tensors(data)), "ops": sorted(set(_ops(data)))}
            for rt, resolver in RESOLVERS.items():
                y, status = _try(lambda d=data, r=resolver: _interpreter(d, r), x, litert=True)
                out[rt] = status if y is None else f"{status}, max |diff| vs dense {int(np.abs(y.astype(int) - ref).max())}"
                if y is not None and rt != "litert_ref":
                    runnable[f"{kind}@{rt}"] = _interpreter(data, resolver)
            y, status = _try(lambda d=data: TFLM(d), x)
            if y is None and "DENSIFY" in out["ops"]:  # edgepack's reader then refuses the sparse tensor
                status = "fails: TFLM has no DENSIFY kernel (the op the converter adds to densify sparse weights)"
            out["tflm"] = status if y is None else f"{status}, max |diff| vs dense {int(np.abs(y.astype(int) - ref).max())}"
            facts[f"{name}/{kind}"] = out
        per_call = interleaved({k: (lambda i=i, x=x: _invoke(i, x)) for k, i in runnable.items()}, rounds=300, warmup=20)
        times = {k: median(v) * 1e3 for k, v in per_call.items()}
        facts[f"{name}/litert_ms"] = times
        base = times["dense@litert_xnnpack"]
        for kind in files:
            f = facts[f"{name}/{kind}"]
            rows.append([name, kind, f["bytes"], f["sparse_tensors"], " ".join(f["ops"]),
                         *(f[rt] for rt in (*RESOLVERS, "tflm")),
                         *(f"{times[k]:.3f} ({times[k] / base:.2f}x)" if k in times else "-"
                           for k in (f"{kind}@litert_xnnpack", f"{kind}@litert_builtin"))])
    table = md_table(["model", "file", "bytes", "sparse tensors", "ops", "LiteRT XNNPACK", "LiteRT builtin",
                      "LiteRT reference", "TFLM", "ms XNNPACK (vs dense XNNPACK)", "ms builtin (vs dense XNNPACK)"],
                     rows)
    write_results("sparse_tflite", facts, "# TFLite sparsity metadata on LiteRT and TFLM\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
