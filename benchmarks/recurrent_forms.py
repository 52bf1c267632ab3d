"""Which recurrent form runs where in int8, and how close it stays to float (issue 15, item 2).

- unrolled: edgepack's lowering of a PyTorch nn.LSTM / nn.GRU (digits rows as 8 steps of 8 features,
  hidden 16, then a Linear; 8 epochs; minmax calibration on 200 training digits; 100 test digits), run on
  LiteRT's reference kernels, TFLite Micro and onnxruntime (QDQ): top-1 agreement with float, logit SQNR.
- fused: TFLiteConverter's UNIDIRECTIONAL_SEQUENCE_LSTM (full int8, int16 cell) from a tf_keras LSTM
  trained the same way, run on LiteRT and TFLite Micro. Needs tf_keras (Keras 2), which the project's venv
  does not hold: install it beside, e.g. ``pip install --target /work/venv-tfkeras --no-deps tf_keras~=2.21.0``
  and put that folder on PYTHONPATH; without it the fused row says it was skipped.

    nice .venv/bin/python benchmarks/recurrent_forms.py --seeds 0,1,2,3,4

Writes results/recurrent_forms.json and .md.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from common import REPO, md_table, quiet, write_results

sys.path.insert(0, str(REPO / "tests"))


def unrolled(cell: str, seed: int, x_train, y_train, x_test) -> dict:
    import torch

    from edgepack.demo import train_classifier
    from edgepack.frontends.torch import load_torch
    from edgepack.targets.metrics import sqnr_db
    from int8_runs import calibrated, run_int8
    from test_recurrent_int8 import RowsClassifier

    torch.manual_seed(seed)
    model = train_classifier(RowsClassifier(cell), x_train, y_train, epochs=8, seed=seed)
    with torch.no_grad():
        ref = model(torch.from_numpy(x_test)).numpy()
    got = run_int8(calibrated(load_torch(model, input_shape=(1, 8, 8)), x_train[:200]), x_test)
    return {rt: {"agreement": float((y.argmax(1) == ref.argmax(1)).mean()), "sqnr_db": float(sqnr_db(ref, y))}
            for rt, y in got.items()}


def fused(seed: int, x_train, y_train, x_test) -> dict:
    try:
        import tf_keras as keras
    except ImportError:
        return {"skipped": "tf_keras is not installed (see the module docstring)"}
    import tensorflow as tf

    from edgepack.targets.metrics import sqnr_db
    from edgepack.targets.runtimes import TFLM, LiteRT

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8, 8), batch_size=1), keras.layers.LSTM(16), keras.layers.Dense(10)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=25, batch_size=64, verbose=0)
    ref = np.concatenate([np.asarray(model(x[None])) for x in x_test])
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    float_data = conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in x_train[:200])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    data = conv.convert()
    from ai_edge_litert.interpreter import Interpreter
    details = Interpreter(model_content=data)
    (si, zi), (so, zo) = details.get_input_details()[0]["quantization"], details.get_output_details()[0]["quantization"]
    result = {"float_tflite_vs_keras_sqnr_db": float(sqnr_db(ref, np.concatenate(
        [LiteRT(float_data).run(x[None])[0] for x in x_test])))}
    for name, rt in (("litert", LiteRT(data, reference=True)), ("tflm", TFLM(data))):
        try:
            y = np.concatenate([(rt.run(np.clip(np.round(x[None] / si) + zi, -128, 127).astype(np.int8))[0]
                                 .astype(np.float32) - zo) * so for x in x_test])
            result[name] = {"agreement": float((y.argmax(1) == ref.argmax(1)).mean()),
                            "sqnr_db": float(sqnr_db(ref, y))}
        except Exception as exc:  # noqa: BLE001 -- a runtime that cannot run it is the finding
            result[name] = {"error": str(exc).splitlines()[0][:200]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    from edgepack.demo import digits_split

    x_train, y_train, x_test, _ = digits_split()
    x_train, x_test = x_train[:, 0], x_test[:100, 0]
    seeds = [int(s) for s in args.seeds.split(",")]
    data, rows = {}, []
    with quiet():
        for cell in ("LSTM", "GRU"):
            data[f"unrolled {cell}"] = {s: unrolled(cell, s, x_train, y_train, x_test) for s in seeds}
        data["fused LSTM (TFLiteConverter)"] = {seeds[0]: fused(seeds[0], x_train, y_train, x_test)}
    for form, per_seed in data.items():
        for seed, res in per_seed.items():
            cells = [f"{r['agreement']:.0%}, {r['sqnr_db']:.1f} dB" if "agreement" in r else r.get("error", "-")
                     for r in (res.get(k, {}) for k in ("litert", "tflm", "onnxruntime"))]
            rows.append([form, seed, *cells, res.get("skipped") or
                         (f"float .tflite vs Keras {res['float_tflite_vs_keras_sqnr_db']:.1f} dB"
                          if "float_tflite_vs_keras_sqnr_db" in res else "")])
    md = ("# Recurrent forms in int8: top-1 agreement with float, logit SQNR\n\n"
          + md_table(["form", "seed", "LiteRT (reference)", "TFLite Micro", "onnxruntime (QDQ)", "note"], rows))
    write_results("recurrent_forms", data, md)
    print(md)


if __name__ == "__main__":
    main()
