"""Write SUPPORTED_OPS.md (repo root) from the IR op table: one row per IR op with what it does, its
inputs, its int8 quantization rule, the ONNX ops read as it, the TFLite builtins it becomes, and whether
TFLite Micro runs those (the supported_ops of the MCU profile stm32l4r5) or LiteRT only.

    .venv/bin/python tools/gen_supported_ops.py          # rewrite SUPPORTED_OPS.md
    .venv/bin/python tools/gen_supported_ops.py --check  # exit 1 if it is out of date

The op table (edgepack/ir/ops.py), the quantization rules (calibration/quantize.py), the TFLite writers
(exporter/tflite_ops.py) and the profile are read; what those tables cannot say (which ONNX ops a
rule reads, which builtins a writer writes) is declared below, and tests/test_supported_ops.py fails
when a row is missing on either side.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "SUPPORTED_OPS.md"
MCU_PROFILE = "stm32l4r5"

# IR op -> the ONNX ops the frontend reads as it (tests check every frontend rule is listed); an op with
# plain_onnx in the op table is read from the ONNX op of its name and needs no row.
FROM_ONNX = {
    "Conv": ["Conv (1-D, 2-D)"], "ConvTranspose": ["ConvTranspose (2-D)"],
    "Gemm": ["Gemm", "MatMul (constant weights)",
             "LSTM (unrolled per time step, with Sigmoid, Tanh, Mul, Add, Slice, Reshape, Concat; see below)",
             "GRU (unrolled likewise, with Sub too)"], "MatMul": ["MatMul (two activations)"],
    "Concat": ["Concat", "Tile (constant repeats: copies concatenated)"],
    "MaxPool": ["MaxPool (1-D, 2-D)"], "AveragePool": ["AveragePool (1-D, 2-D)"],
    "GlobalAveragePool": ["GlobalAveragePool", "ReduceMean (over H, W)"], "ReduceMean": ["ReduceMean"],
    "Clip": ["Clip"], "LeakyRelu": ["LeakyRelu"],
    "HardSigmoid": ["HardSigmoid", "Add, Clip, Mul/Div (the pattern relu6(x + 3) / 6, Keras via tf2onnx)"],
    "HardSwish": ["HardSwish", "Mul (x times the HardSigmoid pattern above, or PaddlePaddle's x * relu6(x + 3) / 6)",
                  "HardSigmoid(1/6, 1/2) times x"],
    "Gelu": ["Gelu (opset 20)", "Erf (in the pattern x * 0.5 * (1 + erf(x / sqrt 2)))",
             "Tanh (in the pattern 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))))"],
    "Rsqrt": ["Sqrt + Reciprocal", "Div(1, Sqrt) (the LayerNormalization lowering, as edgepack writes it)",
              "Div(a, Sqrt(b)) (as a * Rsqrt(b))"],
    "Softmax": ["Softmax"],
    "Reshape": ["Reshape", "Flatten", "Squeeze", "Unsqueeze"], "Transpose": ["Transpose"], "Pad": ["Pad"],
    "Resize": ["Resize", "Reshape + Tile + Reshape (a nearest upsampling by repeats)"],
    "Identity": ["Identity", "Cast (to float32)", "Expand (to a constant shape: Identity, or Mul by ones)"],
    "Dropout": ["Dropout"],
    "BatchNormalization": ["BatchNormalization"],
    "Slice": ["Slice (step 1, constant starts/ends)", "Split", "Gather (constant indices)"],
    "Pow": ["Pow (constant exponent)"], "Max": ["Max"], "Min": ["Min"],
    "Log": ["Log", "Softplus (as Relu(x) + Log(1 + Exp(-Abs(x))))"],
    "LayerNormalization": ["LayerNormalization (opset 17)", "ReduceMean, Sub, Pow/Mul, ReduceMean, Add, Sqrt + Div "
                           "or 1/sqrt + Mul, [Mul, Add] (a decomposed LayerNorm: paddle2onnx, tf2onnx)",
                           "InstanceNormalization (as LayerNormalization over the spatial axes + per-channel Mul, Add)"],
}
NOT_FROM_ONNX: dict[str, str] = {}  # IR op -> why no ONNX op maps to it (none at present)

# IR op -> how it becomes its TFLite builtins (the builtins are the op table's tflite + tflite_aux);
# an op the passes remove says what it becomes instead.
TFLITE_HOW = {
    "Conv": "depthwise when group = channels; PAD when SAME/VALID cannot express the pads",
    "ConvTranspose": "OHWI weights; SLICE when SAME/VALID cannot express the crop",
    "MatMul": "a transposed operand via adj_x / adj_y",
    "Div": "MUL by 1/c for a constant divisor; DIV of two activations is float only",
    "Relu": "or fused into the producer",
    "Clip": "RELU6 / RELU for (0, 6) / (0, inf), else MINIMUM and MAXIMUM",
    "HardSigmoid": "MUL, ADD with fused RELU6, MUL",
    "Transpose": "none when it only changes the stored layout", "Pad": "mode edge unsupported",
    "Identity": "removed by the cleanup pass", "Dropout": "removed by the cleanup pass",
    "BatchNormalization": "folded into the Conv / Gemm before it (else MUL + ADD)",
    "LayerNormalization": "lowered by passes.decompose_layernorm",
    "Neg": "NEG in float, SUB(0, x) in int8",
    "Pow": "int8: DEQUANTIZE, float POW, QUANTIZE",
    "Max": "int8: operands requantized to the output's params first",
    "Min": "int8: operands requantized to the output's params first",
}
FLOAT_ONLY = {"Div": "int8 only with a constant divisor"}
QUANT_NOTE = {"BatchNormalization": "folded into the weights before calibration",
              "LayerNormalization": "lowered first: each intermediate gets its own calibrated scale"}


# Recurrent layers: what was measured, shown below the table (tests/test_recurrent*.py hold the numbers).
RECURRENT = [
    "## Recurrent layers (LSTM, GRU)", "",
    "ONNX LSTM and GRU (forward, reverse, bidirectional; layout 0 and 1; initial states; GRU's "
    "linear_before_reset 0 and 1; PyTorch nn.LSTM / nn.GRU, batch_first or not) are **unrolled** over their "
    "static time steps into the ops above: one Gemm projects the input of every step, then per step a Gemm "
    "of the hidden state, Add, Slice of the gates, Sigmoid / Tanh, Mul, Add (GRU: Sub). Every state h_t, c_t "
    "is an ordinary tensor with its own calibrated range; Sigmoid and Tanh outputs keep the spec's fixed "
    "scales. The output sequence is joined with Concats of at most 10 inputs (TFLite Micro's limit). "
    "Refused with one line: peepholes, clip, input_forget, other activations, sequence_lens shorter than "
    "the input. Keras LSTM / GRU / SimpleRNN (also in Bidirectional) are converted from an unrolled copy: "
    "rolled, Keras 3 runs them in a while loop that tf2onnx writes as an ONNX Loop.", "",
    "Which form runs where, and how close int8 stays to float:", "",
    "- **Unrolled (what edgepack writes)**: int8 runs on LiteRT, TFLite Micro and onnxruntime (QDQ). TFLM "
    "stays within 5 LSB of LiteRT's reference kernels on the logits after 8 steps (its FULLY_CONNECTED rounds "
    "twice, and the recurrence carries it on). Digits rows as 8 steps of 8 features, hidden 16, seeds 0-4: "
    "LSTM top-1 agreement with float 96-99%, logit SQNR 16.9-21.3 dB; GRU 91-98%, 15.0-18.4 dB (LiteRT and "
    "TFLM; onnxruntime 1-2 dB lower). On a Keras LSTM, onnxruntime's QDQ fusions (its default level) gave "
    "7.1 dB where its basic level gave 27.3 dB (LiteRT, TFLM: 27.4 dB).",
    "- **UNIDIRECTIONAL_SEQUENCE_LSTM (TFLiteConverter, int8 with an int16 cell)**: a Keras 3 LSTM does not "
    "convert (`tf.TensorListReserve requires element_shape to be static`); a tf_keras 2.21 LSTM converts to it "
    "(int8 weights and activations, int16 cell state) whose float twin equals Keras (136.8 dB); the int8 file "
    "loads and runs on LiteRT and TFLM alike, but its output is unrelated to float (top-1 agreement 12%, "
    "-0.3 dB, seed 0); the converter leaves its four gate intermediates float without scales, the likely cause. So "
    "edgepack does not emit the fused op; `benchmarks/recurrent_forms.py` re-measures both forms.",
]


def from_onnx(op: str) -> list[str]:
    """The ONNX ops read as ``op``."""
    from edgepack.ir import OPS
    return FROM_ONNX.get(op) or ([op] if OPS[op].plain_onnx else [])


def _quant_rule(spec, weight_axis: dict) -> str:
    if spec.name in QUANT_NOTE:
        return QUANT_NOTE[spec.name]
    if spec.quant == "fixed":
        rule = f"fixed: scale {spec.fixed[0]:g}, zero-point {spec.fixed[1]}"
    elif spec.quant == "same_as_input":
        rule = "shares its input's scale and zero-point"
    else:
        rule = "own scale from calibration"
    if spec.name in weight_axis:
        rule += (f"; weights int8 symmetric per output channel (IR axis {weight_axis[spec.name]})"
                 if spec.name != "Gemm" else "; weights int8 symmetric per tensor (per channel optional)")
        rule += ", bias int32 at input x weight scale"
    return rule


def _inputs(spec) -> str:
    n = str(spec.min_inputs) if spec.min_inputs == spec.max_inputs else f"{spec.min_inputs}-{spec.max_inputs}"
    return n + (f" (weights at {', '.join(map(str, spec.weights))})" if spec.weights else "")


def _tflm(builtins: list[str], supported: set[str]) -> str:
    if not builtins:
        return "n/a (removed)"
    missing = [b for b in builtins if b not in supported]
    if not missing:
        return "yes"
    if len(missing) == len(builtins):
        return "no: LiteRT only"
    return f"yes, except {', '.join(missing)}"


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from edgepack.calibration.quantize import WEIGHT_AXIS
    from edgepack.ir import OPS
    from edgepack.targets.profile import load_profile

    supported = set(load_profile(MCU_PROFILE).supported_ops)
    lines = ["# Supported ops", "",
             "Generated by `tools/gen_supported_ops.py` from the IR op table (`edgepack/ir/ops.py`); do not "
             "edit by hand.", "",
             "Every model is read into these IR ops; the int8 .onnx (QDQ) and the .tflite are written from the "
             "same ops with the same quantization. \"TFLM\" says whether TFLite Micro runs the builtins, per "
             f"the op resolver of the `{MCU_PROFILE}` target profile; the others run on LiteRT (phones, hosts).",
             "An op outside this table is reported as `unsupported op '<op>' at node '<name>'`.", "",
             "| IR op | what it does | inputs | int8 quantization | read from ONNX | TFLite builtins | "
             "int8 / float | TFLM |", "|---|---|---|---|---|---|---|---|"]
    for name, spec in OPS.items():
        builtins, how = list(spec.tflite + spec.tflite_aux), TFLITE_HOW.get(name, "")
        onnx_ops = ", ".join(from_onnx(name)) or f"({NOT_FROM_ONNX[name]})"
        tflite = (", ".join(builtins) + (f" ({how})" if how else "")) if builtins else how
        types = f"int8, float ({FLOAT_ONLY[name]})" if name in FLOAT_ONLY else "int8, float"
        lines.append(f"| {name} | {spec.doc} | {_inputs(spec)} | {_quant_rule(spec, WEIGHT_AXIS)} | {onnx_ops} | "
                     f"{tflite} | {types} | {_tflm(builtins, supported)} |")
    return "\n".join(lines + _int16_section() + [""] + RECURRENT) + "\n"


def _int16_section() -> list[str]:
    """The measured 16x8 kernels (exporter/tflite_versions.INT16X8) and the IR ops a layer may run in int16."""
    from edgepack.exporter.tflite_builder import BuiltinOp
    from edgepack.exporter.tflite_versions import INT16X8
    from edgepack.ir import OPS
    from edgepack.precision import int16_refusal

    names = {v: k for k, v in vars(BuiltinOp).items() if not k.startswith("_") and isinstance(v, int)}
    lines = ["", "## int16 activations (16x8)", "",
             "`precision = \"int16\"` on a layer (`--layer NAME:precision=int16`, or `[layers.NAME]` in a config) "
             "writes it with int16 symmetric activations (zero point 0), int8 per-channel weights and an int64 "
             "conv/FC bias, with a QUANTIZE int8 -> int16 before it and int16 -> int8 where an int8 layer reads "
             "it; the .onnx holds the same as int16 QuantizeLinear/DequantizeLinear (onnxruntime's com.microsoft "
             "domain). `precision = \"float\"` keeps a layer in float between a DEQUANTIZE and a QUANTIZE, on "
             "phone and host targets only.", "",
             "Measured by `benchmarks/measure_16x8.py` (one-op files of TensorFlow's converter with the 16x8 ops set, "
             "run on LiteRT and TFLite Micro); builtins missing here have no 16x8 kernel in either runtime "
             "(HARD_SWISH and PRELU: the converter refuses them; PADV2: LiteRT refuses its int16 form).", "",
             "| TFLite builtin | 16x8 version | LiteRT | TFLM |", "|---|---|---|---|"]
    for code, (version, runtimes) in sorted(INT16X8.items(), key=lambda kv: names[kv[0]]):
        lines.append(f"| {names[code]} | {version} | {'yes' if 'litert' in runtimes else 'no'} | "
                     f"{'yes' if 'tflm' in runtimes else 'no'} |")
    lines += ["", "IR ops a layer may set to int16, per runtime (a layer refused names the reason):", "",
              "| IR op | LiteRT | TFLM |", "|---|---|---|"]
    for op in OPS:
        verdicts = [int16_refusal(op, rt) for rt in ("litert", "tflm")]
        if all(v is not None and v.startswith("edgepack writes") for v in verdicts):
            continue
        lines.append(f"| {op} | " + " | ".join("yes" if v is None else "no: " + v.split(" (see")[0]
                                                 for v in verdicts) + " |")
    return lines


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.name} is out of date: run .venv/bin/python tools/gen_supported_ops.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
