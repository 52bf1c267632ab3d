"""edgepack's int8 .tflite versus TensorFlow's own TFLiteConverter, side by side in one run.

One CNN is trained in PyTorch on scikit-learn digits; its weights are copied into a Keras twin (conv
OIHW -> HWIO, BatchNorm copied with the same running stats, the Dense rows permuted for NCHW vs NHWC
Flatten) and the two float models are checked to agree before anything is compared. Then edgepack
exports the PyTorch model and `tf.lite.TFLiteConverter` converts the Keras one (full int8: DEFAULT
optimizations, the same calibration samples as representative dataset, TFLITE_BUILTINS_INT8, int8 input
and output). For each file: op count and types, TRANSPOSE count, file and weight bytes, top-1 accuracy
on held-out digits on LiteRT reference kernels and on TFLite Micro, agreement with the float model, the
TFLM arena, and LiteRT latency (XNNPACK, 1 thread, batch 1, interleaved blocks, ratio of medians).

    .venv/bin/python benchmarks/bench_tflite_converter.py            # a few minutes on 2 cores
    .venv/bin/python benchmarks/bench_tflite_converter.py --quick    # smoke run: the 8x8 model only
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # before TensorFlow is imported anywhere

import numpy as np

import common  # noqa: F401  (puts the checkout and tests/ on sys.path)
from common import interleaved, md_table, median

CALIB_SAMPLES = 300
FLOAT_TOLERANCE = 1e-3  # max |torch logits - keras logits| for the twins to count as the same model
TOOLS = ("edgepack", "converter")
AGREE_SAMPLES = 60  # held-out images on which the two files are compared op by op


# ---------------------------------------------------------------- the models

def cnn32():
    """The demo CNN grown for 32x32 digits (~4M MACs) with a depthwise-separable block and a max pool,
    so latency is more than call overhead and the converter meets DEPTHWISE_CONV_2D and MAX_POOL_2D too."""
    import torch.nn as nn
    from zoo import cbr

    return nn.Sequential(cbr(1, 16), cbr(16, 32, s=2), cbr(32, 32, groups=32), cbr(32, 32, k=1),
                         cbr(32, 64, s=2), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4 * 4, 10))


def model_specs(quick: bool):
    """(name, builder, input size, epochs, lr)."""
    from edgepack.demo import digits_cnn

    specs = [("digits_cnn_8x8", digits_cnn, 8, 15, 3e-3)]
    if not quick:
        specs.append(("cnn32_dw", cnn32, 32, 4, 2e-3))
    return specs


def _flat_modules(model):
    import torch.nn as nn

    for m in model.children():
        if isinstance(m, nn.Sequential):
            yield from _flat_modules(m)
        else:
            yield m


def keras_twin(model, size: int):
    """The Keras (NHWC) model computing what the PyTorch Sequential ``model`` computes, same weights."""
    import keras
    import torch.nn as nn

    L = keras.layers
    inp = keras.Input((size, size, 1), batch_size=1)
    h, chw, pending = inp, (1, size, size), []
    for m in _flat_modules(model):
        if isinstance(m, nn.Conv2d):
            (k, _), (s, _), (p, _) = m.kernel_size, m.stride, m.padding
            n = chw[1]
            out = (n + 2 * p - k) // s + 1
            if s == 1 and 2 * p == k - 1:
                padding = "same"
            else:  # PyTorch pads both sides; pad only what the kernel reads, then a VALID conv
                after = max(0, (out - 1) * s + k - n - p)
                h = L.ZeroPadding2D(((p, after), (p, after)))(h)
                padding = "valid"
            w = m.weight.detach().numpy()
            if m.groups == 1:
                layer = L.Conv2D(m.out_channels, k, strides=s, padding=padding, use_bias=m.bias is not None)
                kernel = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
            elif m.groups == m.in_channels == m.out_channels:
                layer = L.DepthwiseConv2D(k, strides=s, padding=padding, use_bias=m.bias is not None)
                kernel = w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            else:
                raise ValueError(f"no Keras twin for a grouped conv with groups={m.groups}")
            h = layer(h)
            pending.append((layer, [kernel] + ([m.bias.detach().numpy()] if m.bias is not None else [])))
            chw = (m.out_channels, out, out)
        elif isinstance(m, nn.BatchNorm2d):
            layer = L.BatchNormalization(epsilon=m.eps, momentum=1 - m.momentum)
            h = layer(h)
            pending.append((layer, [m.weight.detach().numpy(), m.bias.detach().numpy(),
                                    m.running_mean.numpy(), m.running_var.numpy()]))
        elif isinstance(m, nn.ReLU):
            h = L.ReLU()(h)
        elif isinstance(m, nn.MaxPool2d):
            h = L.MaxPooling2D(m.kernel_size, strides=m.stride)(h)
            chw = (chw[0], chw[1] // m.stride, chw[2] // m.stride)
        elif isinstance(m, nn.Flatten):
            h = L.Flatten()(h)
        elif isinstance(m, nn.Linear):
            layer = L.Dense(m.out_features)
            h = layer(h)
            c, hh, ww = chw
            # PyTorch flattens (C, H, W), Keras (H, W, C): permute the rows of the dense kernel.
            w = m.weight.detach().numpy().reshape(m.out_features, c, hh, ww).transpose(2, 3, 1, 0)
            pending.append((layer, [w.reshape(hh * ww * c, m.out_features), m.bias.detach().numpy()]))
        else:
            raise ValueError(f"no Keras twin for {type(m).__name__}")
    twin = keras.Model(inp, h)
    for layer, weights in pending:
        layer.set_weights(weights)
    return twin


# ---------------------------------------------------------------- the two int8 files

@contextlib.contextmanager
def silenced():
    """Swallow what TensorFlow writes to fd 1 and 2 (Python prints and C++ logging alike)."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)


def convert_with_tflite_converter(twin, x_cal_nhwc: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(twin)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s[None].astype(np.float32)] for s in x_cal_nhwc)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with silenced():
        return conv.convert()


def export_with_edgepack(model, x_cal: np.ndarray, size: int, work: Path) -> bytes:
    import dataclasses

    import edgepack

    # The file alone: skip edgepack's own validation run (this benchmark measures the file itself).
    extra = {"validate": False} if "validate" in {f.name for f in dataclasses.fields(edgepack.ExportConfig)} else {}
    report = edgepack.export(model, calib=x_cal, out=work, input_shape=(1, 1, size, size), force=True, **extra)
    return Path(report.artifacts["int8_tflite"]["path"]).read_bytes()


# ---------------------------------------------------------------- measuring a file

def file_facts(data: bytes) -> dict:
    from edgepack.targets.tflite_file import read_tflite

    tm = read_tflite(data)
    weight_bytes = sum(t.data_bytes for t in tm.tensors)
    return {"bytes": tm.size, "weight_bytes": weight_bytes, "other_bytes": tm.size - weight_bytes,
            "ops": len(tm.ops), "op_counts": tm.op_counts(), "transposes": tm.op_counts().get("TRANSPOSE", 0),
            "tensors": len(tm.tensors), "op_sequence": [o.op for o in tm.ops],
            "op_versions": {o.op: o.version for o in tm.ops}, "signatures": sorted(tm.signatures),
            "metadata": _metadata_names(data)}


def _metadata_names(data: bytes) -> list[str]:
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(data, 0)
    return [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]


def _io_params(data: bytes):
    from edgepack.targets.tflite_file import read_tflite

    tm = read_tflite(data)
    return tm.tensors[tm.inputs[0]], tm.tensors[tm.outputs[0]]


def run_int8(data: bytes, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    """Dequantized logits of every sample on LiteRT reference kernels and on TFLM (batch 1), plus the
    raw int8 outputs, so the two runtimes can be checked for bit-exactness."""
    from edgepack.targets.io_mapping import dequantize_output, quantize_input
    from edgepack.targets.runtimes import TFLM, LiteRT

    i, o = _io_params(data)
    runners = {"litert_ref": LiteRT(data, reference=True), "tflm": TFLM(data)}
    out = {}
    for name, rt in runners.items():
        raw = np.stack([rt.run(quantize_input(s[None], np.int8, i.scale[0], i.zero_point[0]))[0].reshape(-1)
                        for s in x_nhwc])
        out[name + "_raw"] = raw
        out[name] = dequantize_output(raw, o.scale[0], o.zero_point[0])
    return out


def accuracy_facts(outs: dict, float_logits: np.ndarray, y: np.ndarray) -> dict:
    ref, tflm = outs["litert_ref"], outs["tflm"]
    float_top1 = float_logits.argmax(1)
    err = np.abs(ref - float_logits)
    lsb = np.abs(outs["litert_ref_raw"].astype(np.int32) - outs["tflm_raw"].astype(np.int32))
    return {"acc_litert_ref": float((ref.argmax(1) == y).mean()),
            "acc_tflm": float((tflm.argmax(1) == y).mean()),
            "top1_agreement_with_float": float((ref.argmax(1) == float_top1).mean()),
            "logit_max_abs_err": float(err.max()), "logit_mean_abs_err": float(err.mean()),
            "tflm_vs_litert_ref_samples_differing": int(np.any(lsb > 0, axis=1).sum()),
            "tflm_vs_litert_ref_max_lsb": int(lsb.max())}


def intermediate_agreement(a: bytes, b: bytes, x_nhwc: np.ndarray) -> list[dict] | None:
    """Op by op (same op sequence needed), the fraction of int8 output values the two files share on
    LiteRT reference kernels: shows where two quantizations of one model start to differ."""
    from edgepack.targets.io_mapping import quantize_input
    from edgepack.targets.runtimes import LiteRT
    from edgepack.targets.tflite_file import read_tflite

    models = [read_tflite(a), read_tflite(b)]
    if [o.op for o in models[0].ops] != [o.op for o in models[1].ops]:
        return None
    same = np.zeros(len(models[0].ops))
    worst = np.zeros(len(models[0].ops), dtype=np.int64)
    runtimes = [LiteRT(data, reference=True, preserve_all=True) for data in (a, b)]
    for s in x_nhwc:
        values = []
        for tm, rt in zip(models, runtimes):
            i = tm.tensors[tm.inputs[0]]
            rt.run(quantize_input(s[None], np.int8, i.scale[0], i.zero_point[0]))
            t = rt.tensors()
            values.append([t[tm.tensors[o.outputs[0]].name].astype(np.int32) for o in tm.ops])
        for k, (va, vb) in enumerate(zip(*values)):
            same[k] += np.mean(va == vb)
            worst[k] = max(worst[k], int(np.abs(va - vb).max()))
    return [{"op": o.op, "identical_fraction": float(same[k] / len(x_nhwc)), "max_lsb_diff": int(worst[k])}
            for k, o in enumerate(models[0].ops)]


def quant_param_diff(a: bytes, b: bytes) -> dict:
    """How far the two files' scales are apart, op by op (the graphs must have the same op sequence):
    the largest relative difference of output scales, of weight scales where both have the same
    granularity, zero points, and per MAC op the number of weight scales in each file."""
    from edgepack.targets.tflite_file import read_tflite

    ta, tb = read_tflite(a), read_tflite(b)
    if [o.op for o in ta.ops] != [o.op for o in tb.ops]:
        return {"comparable": False}
    out_rel, w_rel, zp_diff, granularity = [], [], 0, []
    for oa, ob in zip(ta.ops, tb.ops):
        xa, xb = ta.tensors[oa.outputs[0]], tb.tensors[ob.outputs[0]]
        if xa.scale and xb.scale:
            out_rel.append(abs(xa.scale[0] - xb.scale[0]) / xb.scale[0])
            zp_diff = max(zp_diff, abs(xa.zero_point[0] - xb.zero_point[0]))
        if oa.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            wa, wb = np.asarray(ta.tensors[oa.inputs[1]].scale), np.asarray(tb.tensors[ob.inputs[1]].scale)
            granularity.append({"op": oa.op, "edgepack_weight_scales": int(wa.size),
                                "converter_weight_scales": int(wb.size)})
            if wa.shape == wb.shape and wa.size:
                w_rel.append(float(np.max(np.abs(wa - wb) / wb)))
    return {"comparable": True, "max_rel_output_scale_diff": float(max(out_rel, default=0.0)),
            "max_rel_weight_scale_diff": float(max(w_rel, default=0.0)), "max_zero_point_diff": int(zp_diff),
            "weight_scale_counts": granularity}


def litert_latency(files: dict[str, bytes], x_nhwc: np.ndarray, rounds: int) -> dict:
    """Median seconds per batch-1 invoke on LiteRT's default resolver (XNNPACK), 1 thread; the files'
    blocks interleaved round by round. Blocks are sized to ~20 ms so the clock resolution is moot."""
    from edgepack.targets.io_mapping import quantize_input
    from edgepack.targets.runtimes import LiteRT

    interps = {}
    for k, data in files.items():
        with silenced():  # XNNPACK announces itself on stderr
            rt = LiteRT(data, reference=False, threads=1)
        i, _ = _io_params(data)
        rt.interp.set_tensor(rt.inputs[0]["index"], quantize_input(x_nhwc[:1], np.int8, i.scale[0], i.zero_point[0]))
        interps[k] = rt.interp
    for it in interps.values():  # warm up
        for _ in range(50):
            it.invoke()
    first = next(iter(interps.values()))
    t0 = time.perf_counter()
    for _ in range(50):
        first.invoke()
    block = max(10, int(0.02 / ((time.perf_counter() - t0) / 50)))

    def runner(k):
        invoke = interps[k].invoke
        return lambda: [invoke() for _ in range(block)]
    times = interleaved({k: runner(k) for k in interps}, rounds)
    per_call = {k: [t / block for t in v] for k, v in times.items()}
    paired = [e / c for e, c in zip(per_call["edgepack"], per_call["converter"])]
    return {"median_s": {k: median(v) for k, v in per_call.items()}, "block": block, "rounds": rounds,
            "ratio_edgepack_over_converter": median(per_call["edgepack"]) / median(per_call["converter"]),
            "paired_ratio_median": median(paired), "paired_ratio_range": [min(paired), max(paired)]}


# ---------------------------------------------------------------- one model

def bench_model(name, build, size, epochs, lr, work: Path, lat_rounds: int) -> dict:
    import torch

    from edgepack.targets.memory import measure_arena as tflm_min_arena

    x_tr, y_tr, x_te, y_te = common.digits(size)
    t0 = time.perf_counter()
    torch.manual_seed(0)  # the initial weights too, so every run trains the same model
    model = common.train(build(), x_tr, y_tr, epochs=epochs, lr=lr)
    train_s = time.perf_counter() - t0
    x_cal = np.ascontiguousarray(x_tr[:CALIB_SAMPLES])
    x_te_nhwc = np.ascontiguousarray(x_te.transpose(0, 2, 3, 1))

    with silenced():
        twin = keras_twin(model, size)
        keras_logits = twin.predict(x_te_nhwc, batch_size=64, verbose=0)
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x_te)).numpy()
    float_diff = float(np.abs(torch_logits - keras_logits).max())
    if float_diff > FLOAT_TOLERANCE:
        raise SystemExit(f"{name}: the Keras twin differs from the PyTorch model by {float_diff:.2e} "
                         f"(allowed {FLOAT_TOLERANCE}); the comparison would be meaningless")

    files = {"edgepack": export_with_edgepack(model, x_cal, size, work / name),
             "converter": convert_with_tflite_converter(twin, x_cal.transpose(0, 2, 3, 1))}

    res = {"input_shape_nchw": [1, 1, size, size], "train_epochs": epochs, "train_s": round(train_s, 1),
           "float_acc_torch": float((torch_logits.argmax(1) == y_te).mean()),
           "float_acc_keras": float((keras_logits.argmax(1) == y_te).mean()),
           "float_max_abs_diff_torch_keras": float_diff, "tools": {}}
    raw = {}
    for tool, data in files.items():
        outs = run_int8(data, x_te_nhwc)
        raw[tool] = outs["litert_ref_raw"]
        res["tools"][tool] = {**file_facts(data), **accuracy_facts(outs, torch_logits, y_te),
                              "tflm_arena_bytes": tflm_min_arena(data)}
    res["int8_outputs_identical_fraction"] = float(np.mean(np.all(raw["edgepack"] == raw["converter"], axis=1)))
    res["int8_top1_agreement_between_files"] = float(np.mean(raw["edgepack"].argmax(1) == raw["converter"].argmax(1)))
    res["quant_params"] = quant_param_diff(files["edgepack"], files["converter"])
    res["per_op_agreement"] = intermediate_agreement(files["edgepack"], files["converter"], x_te_nhwc[:AGREE_SAMPLES])
    res["latency"] = litert_latency(files, x_te_nhwc, lat_rounds)
    return res


# ---------------------------------------------------------------- output

def tables(results: dict) -> str:
    rows, lat_rows, q_rows, op_rows = [], [], [], []
    for name, r in results["models"].items():
        for tool in TOOLS:
            t = r["tools"][tool]
            ops = ", ".join(f"{k} {v}" for k, v in t["op_counts"].items())
            rows.append([name, tool, t["ops"], ops, t["transposes"], t["bytes"], t["weight_bytes"],
                         t["other_bytes"], f"{t['acc_litert_ref']:.4f}", f"{t['acc_tflm']:.4f}",
                         f"{t['top1_agreement_with_float']:.4f}", f"{t['logit_max_abs_err']:.3f}",
                         f"{t['tflm_vs_litert_ref_samples_differing']} ({t['tflm_vs_litert_ref_max_lsb']})",
                         t["tflm_arena_bytes"], ", ".join(t["metadata"]) or "-"])
        lat = r["latency"]
        lat_rows.append([name, f"{lat['median_s']['edgepack'] * 1e6:.1f}", f"{lat['median_s']['converter'] * 1e6:.1f}",
                         f"{lat['ratio_edgepack_over_converter']:.3f}",
                         "{:.3f} ({:.3f}-{:.3f})".format(lat["paired_ratio_median"], *lat["paired_ratio_range"]),
                         f"{lat['block']} x {lat['rounds']}"])
        q = r["quant_params"]
        if q["comparable"]:
            grains = "; ".join(f"{g['op']} {g['edgepack_weight_scales']} vs {g['converter_weight_scales']}"
                               for g in q["weight_scale_counts"])
        q_rows.append([name, f"{r['float_acc_torch']:.4f}", f"{r['float_max_abs_diff_torch_keras']:.1e}",
                       f"{r['int8_outputs_identical_fraction']:.4f}", f"{r['int8_top1_agreement_between_files']:.4f}"]
                      + ([f"{q['max_rel_output_scale_diff']:.1e}", f"{q['max_rel_weight_scale_diff']:.1e}",
                          q["max_zero_point_diff"], grains] if q["comparable"] else ["-"] * 4))
        if r["per_op_agreement"]:
            op_rows += [[name, k, a["op"], f"{a['identical_fraction']:.4f}", a["max_lsb_diff"]]
                        for k, a in enumerate(r["per_op_agreement"])]
    head = ["model", "file", "ops", "op types", "TRANSPOSE", "bytes", "weight bytes", "other bytes",
            "acc LiteRT ref", "acc TFLM", "top-1 = float", "max logit err",
            "TFLM != ref: samples (max LSB)", "TFLM arena", "metadata"]
    lat_head = ["model", "edgepack us", "converter us", "edgepack/converter", "paired ratio (range)", "block x rounds"]
    q_head = ["model", "float acc", "torch vs keras max diff", "int8 outputs identical", "int8 top-1 same",
              "max rel out-scale diff", "max rel weight-scale diff", "max zp diff",
              "weight scales per MAC op (edgepack vs converter)"]
    op_head = ["model", "#", "op", "identical int8 values", "max LSB diff"]
    mc = results["machine"]
    return f"""# int8 .tflite: edgepack's emitter vs TensorFlow's TFLiteConverter

Measured {mc['date']} on {mc['cpu']} ({mc['cores']} cores), tensorflow {results['versions']['tensorflow']},
keras {results['versions']['keras']}, ai-edge-litert {results['versions']['ai_edge_litert']}, torch {mc['torch']}.
Regenerate with `.venv/bin/python benchmarks/bench_tflite_converter.py`. Raw numbers: `tflite_converter.json`.

Each CNN is trained once in PyTorch on scikit-learn digits; a Keras twin gets the same weights (conv
OIHW -> HWIO, BatchNorm copied with its running stats, dense rows permuted for the NHWC Flatten; a
PyTorch `padding=1, stride=2` conv becomes `ZeroPadding2D` of just the rows it reads + a VALID conv).
The twins must agree in float (column "torch vs keras max diff") before anything is compared.
edgepack exports the PyTorch model (`edgepack.export(..., calib=...)`, minmax); TFLiteConverter converts
the Keras model (Optimize.DEFAULT, TFLITE_BUILTINS_INT8, int8 input/output); both calibrate on the same
{CALIB_SAMPLES} training images. Accuracy is top-1 on the {results['settings']['test_samples']} held-out
digits at batch 1; "top-1 = float" is how often the int8 file (LiteRT reference kernels) picks the float
model's class; "max logit err" is the largest |dequantized int8 logit - float logit|.

## The files

{md_table(head, rows)}

## LiteRT latency (default resolver = XNNPACK, 1 thread, batch 1)

Median microseconds per invoke over interleaved blocks (order rotated each round); "edgepack/converter"
is the ratio of the medians (below 1: edgepack's file is faster), the paired ratio is the median of the
per-round ratios.

{md_table(lat_head, lat_rows)}

## How close the two quantizations are

{md_table(q_head, q_rows)}

Op by op, on {AGREE_SAMPLES} held-out images (LiteRT reference kernels), the share of int8 output values
the two files have in common:

{md_table(op_head, op_rows)}

## Reading the numbers

- Both files calibrate the same way (min/max of the same samples, per-channel symmetric conv weights),
  so the scales agree to float32 rounding and every op up to the classifier gives (nearly) the same int8
  values. The visible difference is FULLY_CONNECTED: TFLiteConverter quantizes its weights per output
  channel, edgepack per tensor (one scale), so about 1 logit in 10 differs by 1 LSB.
- "TFLM != ref" counts held-out images whose int8 output differs between TFLite Micro and LiteRT's
  reference kernels. It happens for both files and only in FULLY_CONNECTED: with these runtime builds
  LiteRT's reference FC requantizes with one rounding (TFLITE_SINGLE_ROUNDING), TFLM with two (high-mul
  then rounding shift), so a value that falls on a rounding edge comes out 1 LSB apart.
- File bytes: the converter adds `min_runtime_version` and `CONVERSION_METADATA` and longer tensor
  names; edgepack writes a separate `paddings` constant per PAD where the converter shares one.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: the 8x8 model, few latency rounds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    with silenced():
        import ai_edge_litert
        import keras
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    from importlib.metadata import version

    lat_rounds = 10 if args.quick else 100
    results = {"machine": common.machine(),
               "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                            "ai_edge_litert": getattr(ai_edge_litert, "__version__", None) or version("ai-edge-litert")},
               "settings": {"calib_samples": CALIB_SAMPLES, "test_samples": len(common.digits(8)[3]),
                            "latency_rounds": lat_rounds, "quick": args.quick}, "models": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, build, size, epochs, lr in model_specs(args.quick):
            print(f"{name}: training, exporting, converting, measuring ...", flush=True)
            results["models"][name] = bench_model(name, build, size, epochs, lr, Path(tmp), lat_rounds)
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
