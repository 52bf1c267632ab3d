"""NNCF's quantize_with_accuracy_control on a float ONNX model, run in NNCF's own venv (bench_autoquant.py
starts it as a subprocess: nncf pins its own onnx/onnxruntime/numpy and must not touch edgepack's venv).

    /work/venv-nncf/bin/python benchmarks/nncf_quantize.py float.onnx calib.npy out.int8.onnx [max_drop]

Calibration and validation both use the calibration samples (the same ones every tool gets); the metric
is top-1 agreement with the float model (argmax) on them; max_drop (default 0.01) is absolute. Prints one
JSON line: {"seconds": ...} (quantization time, the float reference run included) or {"error": ...}.
"""
import json
import sys
import time

import numpy as np


def main(src, calib, dst, max_drop=0.01):
    import nncf
    import onnx
    import onnxruntime as ort

    model = onnx.load(src)
    x = np.load(calib).astype(np.float32)
    name = model.graph.input[0].name

    def outputs(m):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([sess.run(None, {name: s[None]})[0].reshape(1, -1) for s in x])

    t0 = time.perf_counter()
    ref = outputs(model).argmax(1)

    def validate(m, items):
        return float(np.mean(outputs(m).argmax(1) == ref))

    data = nncf.Dataset(list(x), lambda s: {name: s[None]})
    q = nncf.quantize_with_accuracy_control(model, data, data, validation_fn=validate, max_drop=max_drop,
                                            drop_type=nncf.DropType.ABSOLUTE, subset_size=len(x))
    seconds = time.perf_counter() - t0
    onnx.save(q, dst)
    print(json.dumps({"seconds": round(seconds, 2), "nncf": nncf.__version__}))


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3], *(float(a) for a in sys.argv[4:5]))
    except Exception as exc:  # one line for the benchmark table
        print(json.dumps({"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}))
