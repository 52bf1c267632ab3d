"""edgepack's int8 .tflite versus TensorFlow's own TFLiteConverter on Keras models, side by side in one run.

Three Keras models: two twins of PyTorch CNNs trained on scikit-learn digits (weights copied, conv
OIHW -> HWIO, BatchNorm with the same running stats, Dense rows permuted for the NHWC Flatten; the float
twins must agree before anything is compared) and a MobileNet-style CNN built and trained in Keras only
(stride-2 SAME convs, depthwise-separable blocks, residual Adds, global average pooling). For each,
edgepack exports the Keras model (its Keras frontend, minmax calibration) and `tf.lite.TFLiteConverter`
converts it (full int8: DEFAULT optimizations, the same calibration samples as representative dataset,
TFLITE_BUILTINS_INT8, int8 input and output); for the twins edgepack also exports the PyTorch model, whose
file must have the same op sequence. Per file: op count and types, TRANSPOSE count, file and weight
bytes, top-1 accuracy on held-out digits on LiteRT reference kernels and on TFLite Micro, agreement with
the float Keras model, the TFLM arena, and LiteRT latency (XNNPACK, 1 thread, batch 1, every file of a
model interleaved in one loop, ratio to the converter's file).

    .venv/bin/python benchmarks/bench_tflite_converter.py            # a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_tflite_converter.py --quick    # smoke run: the 8x8 model only
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # before TensorFlow is imported anywhere

import numpy as np

import common  # noqa: F401  (puts the checkout and tests/ on sys.path)
from common import md_table
from keras_models import keras_twin, mobilenet_keras, train_keras
from tflite_compare import (accuracy_facts, file_facts, intermediate_agreement, litert_latency, quant_param_diff,
                            run_int8, silenced)

CALIB_SAMPLES = 300
FLOAT_TOLERANCE = 1e-3  # max |torch logits - keras logits| for the twins to count as the same model
AGREE_SAMPLES = 60  # held-out images on which the two files are compared op by op
BASELINE = "converter"
TOOL_NOTES = {"edgepack": "edgepack from the Keras model", "edgepack_torch": "edgepack from the PyTorch twin",
              "converter": "tf.lite.TFLiteConverter"}


# ---------------------------------------------------------------- the models

def cnn32():
    """The demo CNN grown for 32x32 digits (~4M MACs) with a depthwise-separable block and a max pool,
    so latency is more than call overhead and the converter meets DEPTHWISE_CONV_2D and MAX_POOL_2D too."""
    import torch.nn as nn
    from zoo import cbr

    return nn.Sequential(cbr(1, 16), cbr(16, 32, s=2), cbr(32, 32, groups=32), cbr(32, 32, k=1),
                         cbr(32, 64, s=2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, 10))


def model_specs(quick: bool):
    """(name, "torch twin" or "keras", builder, input size, epochs, lr)."""
    from edgepack.demo import digits_cnn

    specs = [("digits_cnn_8x8", "torch twin", digits_cnn, 8, 15, 3e-3)]
    if not quick:
        specs += [("cnn32_dw", "torch twin", cnn32, 32, 4, 2e-3),
                  ("mobilenet_keras32", "keras", mobilenet_keras, 32, 10, 3e-3)]
    return specs


def trained_models(kind, build, size, epochs, lr, x_tr, y_tr, x_te_nhwc):
    """(keras model, torch model or None, float Keras logits on the test set, torch-vs-keras max diff)."""
    if kind == "keras":
        with silenced():
            model = train_keras(build(size), x_tr.transpose(0, 2, 3, 1), y_tr, epochs, lr)
            logits = model.predict(x_te_nhwc, batch_size=64, verbose=0)
        return model, None, logits, None
    import torch

    torch.manual_seed(0)  # the initial weights too, so every run trains the same model
    torch_model = common.train(build(), x_tr, y_tr, epochs=epochs, lr=lr)
    with silenced():
        twin = keras_twin(torch_model, size)
        logits = twin.predict(x_te_nhwc, batch_size=64, verbose=0)
    with torch.no_grad():
        torch_logits = torch_model(torch.from_numpy(x_te_nhwc.transpose(0, 3, 1, 2).copy())).numpy()
    return twin, torch_model, logits, float(np.abs(torch_logits - logits).max())


# ---------------------------------------------------------------- the int8 files

def convert_with_tflite_converter(model, x_cal_nhwc: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None].astype(np.float32)] for s in x_cal_nhwc)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with silenced():
        return conv.convert()


def export_with_edgepack(model, x_cal: np.ndarray, work: Path, **kwargs) -> bytes:
    """The int8 .tflite alone: edgepack's own validation run is off (this benchmark measures the file)."""
    import edgepack

    report = edgepack.export(model, calib=x_cal, out=work, force=True, validate=False, **kwargs)
    return Path(report.artifacts["int8_tflite"]["path"]).read_bytes()


# ---------------------------------------------------------------- one model

def bench_model(name, kind, build, size, epochs, lr, work: Path, lat_rounds: int) -> dict:
    from edgepack.targets.memory import measure_arena as tflm_min_arena

    x_tr, y_tr, x_te, y_te = common.digits(size)
    x_te_nhwc = np.ascontiguousarray(x_te.transpose(0, 2, 3, 1))
    x_cal = np.ascontiguousarray(x_tr[:CALIB_SAMPLES])
    x_cal_nhwc = np.ascontiguousarray(x_cal.transpose(0, 2, 3, 1))
    t0 = time.perf_counter()
    keras_model, torch_model, float_logits, twin_diff = trained_models(kind, build, size, epochs, lr, x_tr, y_tr,
                                                                        x_te_nhwc)
    train_s = time.perf_counter() - t0
    if twin_diff is not None and twin_diff > FLOAT_TOLERANCE:
        raise SystemExit(f"{name}: the Keras twin differs from the PyTorch model by {twin_diff:.2e} "
                         f"(allowed {FLOAT_TOLERANCE}); the comparison would be meaningless")

    files = {"edgepack": export_with_edgepack(keras_model, x_cal_nhwc, work / name / "keras")}
    if torch_model is not None:
        files["edgepack_torch"] = export_with_edgepack(torch_model, x_cal, work / name / "torch",
                                                       input_shape=(1, 1, size, size))
    files[BASELINE] = convert_with_tflite_converter(keras_model, x_cal_nhwc)

    res = {"kind": kind, "input_shape_nhwc": [1, size, size, 1], "train_epochs": epochs, "train_s": round(train_s, 1),
           "float_acc_keras": float((float_logits.argmax(1) == y_te).mean()),
           "float_max_abs_diff_torch_keras": twin_diff, "tools": {}}
    raw = {}
    for tool, data in files.items():
        outs = run_int8(data, x_te_nhwc)
        raw[tool] = outs["litert_ref_raw"]
        res["tools"][tool] = {**file_facts(data), **accuracy_facts(outs, float_logits, y_te),
                              "tflm_arena_bytes": tflm_min_arena(data)}
    sequences = {tool: facts["op_sequence"] for tool, facts in res["tools"].items()}
    res["same_op_sequence"] = {tool: seq == sequences[BASELINE] for tool, seq in sequences.items() if tool != BASELINE}
    if "edgepack_torch" in sequences:
        res["same_op_sequence_keras_vs_torch"] = sequences["edgepack"] == sequences["edgepack_torch"]
    res["int8_outputs_identical_fraction"] = float(np.mean(np.all(raw["edgepack"] == raw[BASELINE], axis=1)))
    res["int8_top1_agreement_between_files"] = float(np.mean(raw["edgepack"].argmax(1) == raw[BASELINE].argmax(1)))
    res["quant_params"] = quant_param_diff(files["edgepack"], files[BASELINE])
    res["per_op_agreement"] = intermediate_agreement(files["edgepack"], files[BASELINE], x_te_nhwc[:AGREE_SAMPLES])
    res["latency"] = litert_latency(files, x_te_nhwc, lat_rounds, BASELINE)
    return res


# ---------------------------------------------------------------- output

def _file_rows(name: str, r: dict) -> list[list]:
    rows = []
    for tool, t in r["tools"].items():
        ops = ", ".join(f"{k} {v}" for k, v in t["op_counts"].items())
        rows.append([name, tool, t["ops"], ops, t["transposes"], t["bytes"], t["weight_bytes"], t["other_bytes"],
                     f"{t['acc_litert_ref']:.4f}", f"{t['acc_tflm']:.4f}", f"{t['top1_agreement_with_float']:.4f}",
                     f"{t['logit_max_abs_err']:.3f}",
                     f"{t['tflm_vs_litert_ref_samples_differing']} ({t['tflm_vs_litert_ref_max_lsb']})",
                     t["tflm_arena_bytes"], ", ".join(t["metadata"]) or "-"])
    return rows


def _latency_rows(name: str, r: dict) -> list[list]:
    lat = r["latency"]
    rows = []
    for tool, ratio in lat["vs_baseline"].items():
        rows.append([name, tool, f"{lat['median_s'][tool] * 1e6:.1f}", f"{lat['median_s'][BASELINE] * 1e6:.1f}",
                     f"{ratio['ratio_of_medians']:.3f}",
                     "{:.3f} ({:.3f}-{:.3f})".format(ratio["paired_ratio_median"], *ratio["paired_ratio_range"]),
                     f"{lat['block']} x {lat['rounds']}"])
    return rows


def _quant_row(name: str, r: dict) -> list:
    q = r["quant_params"]
    same = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in r["same_op_sequence"].items())
    if "same_op_sequence_keras_vs_torch" in r:
        same += f"; keras = torch: {'yes' if r['same_op_sequence_keras_vs_torch'] else 'no'}"
    twin = r["float_max_abs_diff_torch_keras"]
    row = [name, r["kind"], f"{r['float_acc_keras']:.4f}", "-" if twin is None else f"{twin:.1e}", same,
           f"{r['int8_outputs_identical_fraction']:.4f}", f"{r['int8_top1_agreement_between_files']:.4f}"]
    if not q["comparable"]:
        return row + ["-"] * 4
    grains = "; ".join(f"{g['op']} {g['edgepack_weight_scales']} vs {g['converter_weight_scales']}"
                       for g in q["weight_scale_counts"])
    return row + [f"{q['max_rel_output_scale_diff']:.1e}", f"{q['max_rel_weight_scale_diff']:.1e}",
                  q["max_zero_point_diff"], grains]


def tables(results: dict) -> str:
    rows, lat_rows, q_rows, op_rows = [], [], [], []
    for name, r in results["models"].items():
        rows += _file_rows(name, r)
        lat_rows += _latency_rows(name, r)
        q_rows.append(_quant_row(name, r))
        op_rows += [[name, k, a["op"], f"{a['identical_fraction']:.4f}", a["max_lsb_diff"]]
                    for k, a in enumerate(r["per_op_agreement"] or [])]
    head = ["model", "file", "ops", "op types", "TRANSPOSE", "bytes", "weight bytes", "other bytes",
            "acc LiteRT ref", "acc TFLM", "top-1 = float", "max logit err",
            "TFLM != ref: samples (max LSB)", "TFLM arena", "metadata"]
    lat_head = ["model", "file", "file us", "converter us", "file/converter", "paired ratio (range)",
                "block x rounds"]
    q_head = ["model", "built in", "float acc (Keras)", "torch vs keras max diff", "same op sequence as converter",
              "int8 outputs identical", "int8 top-1 same", "max rel out-scale diff", "max rel weight-scale diff",
              "max zp diff", "weight scales per MAC op (edgepack vs converter)"]
    op_head = ["model", "#", "op", "identical int8 values", "max LSB diff"]
    mc = results["machine"]
    files = "; ".join(f"`{k}`: {v}" for k, v in TOOL_NOTES.items())
    return f"""# int8 .tflite from Keras models: edgepack vs TensorFlow's TFLiteConverter

Measured {mc['date']} on {mc['cpu']} ({mc['cores']} cores), tensorflow {results['versions']['tensorflow']},
keras {results['versions']['keras']}, ai-edge-litert {results['versions']['ai_edge_litert']}, torch {mc['torch']}.
Regenerate with `.venv/bin/python benchmarks/bench_tflite_converter.py`. Raw numbers: `tflite_converter.json`.

Files: {files}. `digits_cnn_8x8` and `cnn32_dw` are trained in PyTorch and copied into Keras twins (conv
OIHW -> HWIO, BatchNorm with its running stats, Dense rows permuted for the NHWC Flatten; a PyTorch
`padding=1, stride=2` conv becomes `ZeroPadding2D` of just the rows it reads + a VALID conv); the twins
must agree in float (column "torch vs keras max diff"). `mobilenet_keras32` is built and trained in
Keras (stride-2 SAME convs, depthwise-separable blocks with ReLU6, residual Adds, global average pooling).
edgepack calibrates with minmax; TFLiteConverter runs Optimize.DEFAULT, TFLITE_BUILTINS_INT8, int8
input/output; both on the same {CALIB_SAMPLES} training images. Accuracy is top-1 on the
{results['settings']['test_samples']} held-out digits at batch 1; "top-1 = float" is how often the int8
file (LiteRT reference kernels) picks the float Keras model's class; "max logit err" is the largest
|dequantized int8 logit - float logit|.

## The files

{md_table(head, rows)}

## LiteRT latency (default resolver = XNNPACK, 1 thread, batch 1)

Median microseconds per invoke; every file of a model interleaved block by block in one loop (order
rotated each round); "file/converter" is the ratio of the medians (below 1: faster than the converter's
file), the paired ratio is the median of the per-round ratios.

{md_table(lat_head, lat_rows)}

## How close the two quantizations are (edgepack from Keras vs converter)

{md_table(q_head, q_rows)}

Op by op, on {AGREE_SAMPLES} held-out images (LiteRT reference kernels), the share of int8 output values
the two files have in common:

{md_table(op_head, op_rows)}

## Reading the numbers

- Both tools calibrate the same way (min/max of the same samples, per-channel symmetric conv weights),
  so the scales agree to float32 rounding and every op up to the classifier gives (nearly) the same int8
  values. The visible difference is FULLY_CONNECTED: TFLiteConverter quantizes its weights per output
  channel, edgepack per tensor (one scale; per-channel FC weights cost TFLM persistent arena), so about one
  logit in ten differs by 1 LSB (column "identical int8 values" of FULLY_CONNECTED).
- "TFLM != ref" counts held-out images whose int8 output differs between TFLite Micro and LiteRT's
  reference kernels. It happens for both tools and only in FULLY_CONNECTED: with these runtime builds
  LiteRT's reference FC requantizes with one rounding (TFLITE_SINGLE_ROUNDING), TFLM with two (high-mul
  then rounding shift), so a value that falls on a rounding edge comes out 1 LSB apart.
- File bytes: the converter adds `min_runtime_version` and `CONVERSION_METADATA` and longer tensor
  names; edgepack writes a separate `paddings` constant per PAD where the converter shares one. From a
  Keras model edgepack's tensor names are tf2onnx's (longer than PyTorch's), hence the few hundred
  bytes between `edgepack` and `edgepack_torch`.
- The twins give one op sequence from all three files. The Keras-only MobileNet differs in one place:
  edgepack writes global average pooling as AVERAGE_POOL_2D + RESHAPE, the converter as MEAN. TFLM
  runs both (CMSIS-NN has an optimized average pool, not a MEAN), but XNNPACK does not take int8
  AVERAGE_POOL_2D, so on LiteRT that one op runs on the builtin kernel: the few percent of latency the
  edgepack file gives away on that model. Its pooled values are then rounded differently, which is why
  the final int8 outputs of the two files are never all identical there (top-1 still agrees on >99%).
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: the 8x8 model, few latency rounds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with silenced():
        import ai_edge_litert
        import keras
        import tensorflow as tf
    from importlib.metadata import version

    lat_rounds = 10 if args.quick else 100
    results = {"machine": common.machine(),
               "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                            "ai_edge_litert": getattr(ai_edge_litert, "__version__", None) or version("ai-edge-litert")},
               "settings": {"calib_samples": CALIB_SAMPLES, "test_samples": len(common.digits(8)[3]),
                            "latency_rounds": lat_rounds, "quick": args.quick}, "models": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, *spec in model_specs(args.quick):
            print(f"{name}: training, exporting, converting, measuring ...", flush=True)
            results["models"][name] = bench_model(name, *spec, Path(tmp), lat_rounds)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    md = tables(results)
    if not args.quick:
        paths = common.write_results("tflite_converter", results, md)
        print("wrote", *paths)
    print(md.split("## The files", 1)[1])
    print(f"total {results['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
