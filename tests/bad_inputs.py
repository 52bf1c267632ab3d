"""The bad-input corpus: the command lines that hand edgepack bad files (written by bad_input_files.py).

``CASES`` are command lines with placeholders: ``{ws}`` the workspace (``build_workspace``), ``{out}`` a
fresh output folder per case, ``{bad}`` a name that is not valid UTF-8. Every case must exit 2 with one
line on stderr and leave ``--out`` as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bad_input_files import BAD_NAME, CONFIGS, TARGETS, build_workspace  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # a command line with {ws}, {out}, {bad}
    out: str = "new"  # new: --out does not exist | held: it holds a file and old artifacts
    sub: bool = False  # run in a subprocess (a hang or a native crash must not take pytest with it)
    says: tuple[str, ...] = ()  # what the error line must name (the tensor, key or fix)

    def args(self, ws: Path, out: Path) -> list[str]:
        text = self.argv.format(ws=ws, out=out, bad=BAD_NAME)
        return text.split()  # no placeholder value holds a space


# ---- the cases ------------------------------------------------------------------------------

M = "{ws}/tiny.onnx"
EXPORT = "export " + M + " --calib {ws}/calib.npy --out {out}"


def _cases() -> list[Case]:
    c: list[Case] = []
    add = lambda id, argv, **kw: c.append(Case(id, argv, **kw))  # noqa: E731

    # loaders: the model file
    for name in ("nope.onnx", "nope.pt", "nope.keras", "notes.txt", "text.onnx", "empty.onnx", "cut.onnx",
                 "random.onnx", "dir.onnx", "emptydir", "null.onnx", "text.pt", "empty.pt", "text.keras", "text.h5",
                 "empty.h5", "unsupported.onnx", "opset9.onnx", "nan.onnx", "inf.onnx", "absurd.onnx", "pickled.pt", "state.pt",
                 "calib.npy"):
        extra = " --input-shape 1,1,8,8" if name.endswith((".pt", ".pt2")) else ""
        add(f"model-{name}", "export {ws}/" + name + " --calib {ws}/calib.npy --out {out}" + extra)
    for name in ("random.pt2", "text.pt2"):  # torch.export.load logs a traceback through its own handler
        add(f"model-{name}", "export {ws}/" + name + " --calib {ws}/calib.npy --out {out}", sub=True)
    # open dims and no --input-shape: the calibration samples give the shape (tests/test_shape_from_samples.py);
    # without samples nothing does
    add("model-dynamic.onnx", "export {ws}/dynamic.onnx --out {out}")
    add("model-ts-no-shape", "export {ws}/ts.pt --out {out}")
    add("model-ts-wrong-shape", "export {ws}/ts.pt --input-shape 1,3,8,8 --out {out}")
    add("model-nan-float-only", "export {ws}/nan.onnx --out {out}")
    add("model-non-utf8", "export {ws}/{bad}.onnx --calib {ws}/calib.npy --out {out}")
    add("model-devzero-direct", "export /dev/zero --out {out}")
    for name in ("fifo.onnx", "zero.onnx", "fifo.pt"):
        add(f"model-{name}", "export {ws}/" + name + " --input-shape 1,1,8,8 --out {out}", sub=True)
    for name in ("nope.onnx", "text.onnx", "dir.onnx", "text.tflite", "empty.tflite", "cut.tflite",
                 "nan.onnx", "ts.pt", "null.onnx"):
        add(f"inspect-{name}", "inspect {ws}/" + name)
    add("inspect-fifo", "inspect {ws}/fifo.onnx", sub=True)
    add("inspect-zero-tflite", "inspect {ws}/zero.tflite", sub=True)
    add("inspect-shape-overflow", "inspect {ws}/ts.pt --input-shape 1,99999999999,8,8")
    for name in ("text.onnx", "nope.onnx", "absurd.onnx"):
        add(f"lint-{name}", "lint {ws}/" + name)

    # data: --calib, --val, labels, --train, --calibration-file
    for name in ("nope.npy", "text.npy", "empty.npy", "corrupt_header.npy", "truncated.npy",
                 "claims_huge.npy", "nan.npy", "inf.npy", "huge.npy", "big.npy", "wrongshape.npy",
                 "object.npy", "strings.npy", "complex.npy", "zero_samples.npy", "scalar.npy", "text.npz",
                 "empty.npz", "corrupt.npz", "several.npz", "nan.npz", "emptydir", "textpng", "bombs",
                 "bombwarn", "bomb.png", "mixed", "nanfolder", "fifofolder", "data.csv", "null.npy",
                 "{bad}.npy"):
        add(f"calib-{name}", "export " + M + " --calib {ws}/" + name + " --out {out}")
    add("calib-devzero-direct", "export " + M + " --calib /dev/zero --out {out}")
    add("calib-fifo", "export " + M + " --calib {ws}/fifo.npy --out {out}", sub=True)
    add("calib-zero", "export " + M + " --calib {ws}/zero.npy --out {out}", sub=True)
    for name in ("nope.npy", "nan.npy", "wrongshape.npy", "text.npy", "fifo.npy", "zero.npy", "textpng"):
        add(f"val-{name}", EXPORT + " --val {ws}/" + name, sub=name in ("fifo.npy", "zero.npy"))
    for name in ("nope.npy", "labels_short.npy", "labels_float.npy", "labels_2d.npy", "labels_words.txt",
                 "labels.csv", "labels_bad_utf8.txt", "fifo.txt", "zero.txt"):
        add(f"val-labels-{name}", EXPORT + " --val {ws}/calib.npy --val-labels {ws}/" + name,
            sub=name in ("fifo.txt", "zero.txt"))
    for name in ("nope.npy", "nan.npy", "fifo.npy"):
        add(f"train-{name}", EXPORT + " --prune 0.5 --train {ws}/" + name, sub=name == "fifo.npy")
    add("train-labels-words", EXPORT + " --prune 0.5 --finetune-epochs 1 --train {ws}/calib.npy "
        "--train-labels {ws}/labels_words.txt")
    for name in ("nope.json", "text.json", "cal_format.json", "cal_mismatch.json", "cal_nan.json", "calib.npy",
                 "fifo.json"):
        add(f"calibration-file-{name}", "export " + M + " --calibration-file {ws}/" + name + " --out {out}",
            sub=name == "fifo.json")

    # flags
    for flag in ("--input-shape abc", "--input-shape 0,1", "--input-shape -1,1,8,8", "--input-shape 1,,8",
                 "--input-shape 1,99999999999,8,8", "--input-shape 1,2147483648,1,1", "--std 0", "--std inf",
                 "--std nan", "--std -1", "--std 1e-45", "--mean nan", "--mean inf", "--mean abc",
                 "--mean 0.5,0.5", "--percentile 150", "--percentile 0", "--percentile nan",
                 "--percentile -5", "--calib-limit -1", "--calib-limit 0", "--calib-limit abc",
                 "--prune 1.5", "--prune -0.1", "--prune nan", "--prune 1", "--prune inf", "--round-to 0",
                 "--round-to -8", "--finetune-epochs -1", "--separable nosuchnode", "--target nosuch",
                 "--target {ws}/nope.toml", "--calibration bogus", "--io bogus", "--exporter bogus",
                 "--onnx-activations bogus", "--no-such-flag", "--prune abc"):
        add("flag" + flag.replace(" ", "=").replace("{ws}/", ""), EXPORT + " " + flag)
    add("flag-mean-without-calib-values", "export " + M + " --calib {ws}/calib.npy --mean 1e39 --out {out}")

    # targets
    for stem in list(TARGETS) + ["bad_utf8"]:
        add(f"target-{stem}", EXPORT + " --target {ws}/target_" + stem + ".toml")
    add("target-fifo", EXPORT + " --target {ws}/fifo.toml", sub=True)
    add("target-zero", EXPORT + " --target {ws}/zero.toml", sub=True)
    add("target-dir", EXPORT + " --target {ws}/emptydir/x.toml")

    # config files
    for stem in list(CONFIGS) + ["bad_utf8"]:
        add(f"config-{stem}", EXPORT + " --config {ws}/config_" + stem + ".toml")
    add("config-missing", EXPORT + " --config {ws}/nope.toml")
    add("config-dir", EXPORT + " --config {ws}/emptydir")
    add("config-fifo", EXPORT + " --config {ws}/fifo.toml", sub=True)
    add("config-zero", EXPORT + " --config {ws}/zero.toml", sub=True)
    add("lint-calib-nan", "lint " + M + " --calib {ws}/nan.npy")

    # output folders
    add("out-is-file", "export " + M + " --calib {ws}/calib.npy --out {ws}/afile")
    add("out-under-file", "export " + M + " --calib {ws}/calib.npy --out {ws}/afile/sub")
    add("out-dev-null", "export " + M + " --calib {ws}/calib.npy --out /dev/null")
    add("out-not-writable", "export " + M + " --calib {ws}/calib.npy --out /proc/edgepack_out")
    add("out-non-utf8", "export " + M + " --calib {ws}/calib.npy --out {out}/{bad}")
    add("out-held-no-force", EXPORT, out="held")
    add("out-held-bad-calib", "export " + M + " --calib {ws}/nan.npy --out {out} --force", out="held")
    add("out-held-bad-model", "export {ws}/nan.onnx --calib {ws}/calib.npy --out {out} --force", out="held")
    add("demo-out-file", "demo --out {ws}/afile", sub=True)
    add("demo-out-under-file", "demo --out {ws}/afile/sub", sub=True)
    add("demo-out-held", "demo --out {out}", out="held-demo", sub=True)
    add("demo-out-non-utf8", "demo --out {out}/{bad}", sub=True)

    # validate
    for name in ("text.tflite", "empty.tflite", "cut.tflite", "nope.tflite", "notes.txt", "text.onnx",
                 "float.tflite", "dir.onnx"):
        add(f"validate-{name}", "validate {ws}/" + name + " --data {ws}/calib.npy")
    add("validate-fifo", "validate {ws}/fifo.tflite --data {ws}/calib.npy", sub=True)
    add("validate-zero", "validate {ws}/zero.tflite --data {ws}/calib.npy", sub=True)
    for name in ("nope.npy", "nan.npy", "text.npy", "wrongshape.npy"):
        add(f"validate-data-{name}", "validate {ws}/float.tflite --reference {ws}/tiny.onnx --data {ws}/" + name)
    add("validate-labels-short", "validate {ws}/float.tflite --reference {ws}/tiny.onnx --data {ws}/calib.npy "
        "--labels {ws}/labels_short.npy")
    add("validate-labels-words", "validate {ws}/float.tflite --reference {ws}/tiny.onnx --data {ws}/calib.npy "
        "--labels {ws}/labels_words.txt")
    add("validate-reference-missing", "validate {ws}/float.tflite --reference {ws}/nope.onnx --data "
        "{ws}/calib.npy")
    add("validate-reference-text", "validate {ws}/float.tflite --reference {ws}/text.onnx --data {ws}/calib.npy")
    add("validate-limit-zero", "validate {ws}/float.tflite --reference {ws}/tiny.onnx --data {ws}/calib.npy "
        "--limit 0")
    add("validate-limit-neg", "validate {ws}/float.tflite --reference {ws}/tiny.onnx --data {ws}/calib.npy "
        "--limit -3")
    add("validate-target-clock-nan", "validate {ws}/float.tflite --reference {ws}/tiny.onnx --data "
        "{ws}/calib.npy --target {ws}/target_clock_nan.toml")
    add("validate-non-utf8", "validate {ws}/{bad}.onnx --data {ws}/calib.npy")
    return c


# What some error lines must say: the tensor, key or file at fault, and what to do.
SAYS = {
    "model-nan.onnx": ("'w'", "NaN"), "model-inf.onnx": ("'w'", "infinite"), "model-absurd.onnx": ("'w'", "1e+30"),
    "calib-huge.npy": ("tensor '", "range"), "calib-big.npy": ("tensor '",),
    "calibration-file-cal_nan.json": ("tensor '", "not finite"), "target-clock_nan": ("clock_mhz",),
    "target-cost_inf": ("cycles_per_mac",), "config-prune_text": ("'prune'", "number"),
    "flag--std=inf": ("std",), "flag--input-shape=1,99999999999,8,8": ("elements",),
    "validate-float.tflite": ("nothing to compare", "--reference"), "calib-bombs": ("too large",),
    "calib-bomb.png": ("too large",), "model-fifo.onnx": ("FIFO",), "calib-zero": ("character device",),
    "config-fifo": ("FIFO",), "out-is-file": ("is a file",), "out-under-file": ("is a file",),
    "model-non-utf8": ("UTF-8",), "out-non-utf8": ("UTF-8",), "demo-out-held": ("already exists",),
    "demo-out-file": ("is a file",), "validate-text.tflite": ("TFL3",), "calib-text.npy": ("not a .npy file",),
    "validate-data-wrongshape.npy": ("does not fit",), "calib-corrupt_header.npy": ("cannot read",),
    "config-std_zero": ("std",), "flag--percentile=150": ("percentile",), "flag--calib-limit=-1": ("calib_limit",),
}
CASES = [Case(c.id, c.argv, c.out, c.sub, SAYS.get(c.id, ())) for c in _cases()]
assert set(SAYS) <= {c.id for c in CASES}, set(SAYS) - {c.id for c in CASES}
