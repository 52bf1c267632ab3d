"""ONNX LSTM and GRU, unrolled over their (static) time steps into IR ops every runtime runs in int8:
Gemm (FULLY_CONNECTED), Sigmoid / Tanh (LOGISTIC / TANH), Mul, Add, Sub, Slice, Reshape and Concat.

The input projection W x_t + b of all steps is one Gemm on the sequence; each step then adds R h_{t-1},
cuts the gates with Slice, and combines them elementwise. Every recurrent state (h_t, c_t) becomes an
ordinary tensor, so calibration gives each one its own range; the state of step 0 is the initial_h /
initial_c input (zeros when absent or constant zero). Directions forward, reverse and bidirectional;
layout 0 (T, N, I) and 1 (N, T, I). Refused with one line: sequence_lens other than the full length,
peepholes, clip, input_forget, activations other than the defaults.
"""
from __future__ import annotations

import numpy as np

from .onnx_builder import Builder, unsupported_variant

TFLM_CONCAT_INPUTS = 10  # kMaxInputNum of TFLite Micro's CONCATENATION kernel
_LSTM_ACTS = ["Sigmoid", "Tanh", "Tanh"]
_GRU_ACTS = ["Sigmoid", "Tanh"]


def _input(node, i: int) -> str:
    return node.input[i] if i < len(node.input) else ""


def _used(b: Builder, node, i: int) -> bool:
    return i < len(node.output) and node.output[i] != "" and node.output[i] in b.used


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _check_form(b: Builder, node, attrs, op: str, default_acts: list[str]) -> tuple[int, int, list[str]]:
    """(hidden, layout, directions) after refusing the forms the unrolling does not take."""
    direction = attrs.get("direction", "forward")
    if isinstance(direction, bytes):
        direction = direction.decode()
    dirs = {"forward": ["forward"], "reverse": ["reverse"], "bidirectional": ["forward", "reverse"]}.get(direction)
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    problem = None
    if dirs is None:
        problem = f"direction '{direction}' (allowed: forward, reverse, bidirectional)"
    elif acts and acts != default_acts * len(dirs):
        problem = f"activations {acts} (allowed: {default_acts} per direction)"
    elif "clip" in attrs:
        problem = "clip (cell clipping) is set"
    elif int(attrs.get("input_forget", 0)):
        problem = "input_forget=1 (coupled input and forget gates)"
    if problem:
        raise unsupported_variant(op, b.current, problem)
    if _input(node, 4):
        lens = b.const(node.input[4])
        layout = int(attrs.get("layout", 0))
        steps = b.shape(node.input[0])[layout]
        if lens is None or np.any(np.asarray(lens) != steps):
            raise unsupported_variant(op, b.current, "sequence_lens must be a constant equal to the "
                                      f"sequence length {steps} for every batch row")
    return int(attrs["hidden_size"]), int(attrs.get("layout", 0)), dirs


class _Unroller:
    """Emits the nodes of one recurrent layer; names derive from the output tensor and the step."""

    def __init__(self, b: Builder, node, layout: int, hidden: int):
        self.b, self.node, self.layout, self.hidden = b, node, layout, hidden
        x = node.input[0]
        shape = b.shape(x)
        self.steps, self.batch = (shape[0], shape[1]) if layout == 0 else (shape[1], shape[0])
        self.x, self.features = x, shape[2]
        self.base = node.output[0] or node.name or "rnn"
        self.values: dict[str, np.ndarray] = {}  # constant initial states by name

    def shape(self, name: str) -> tuple[int, ...]:
        """Shapes of the tensors made here live in the graph, the model's in the builder."""
        t = self.b.graph.tensors.get(name)
        return tuple(t.shape) if t is not None else self.b.shape(name)

    def tensor(self, key: str, shape) -> str:
        return self.b.new_tensor(f"{self.base}/{key}", shape)

    def emit(self, op: str, inputs, key: str, shape, attrs=None) -> str:
        out = self.tensor(key, shape)
        self.b.emit(op, list(inputs), [out], attrs, suffix=key)
        return out

    def project_input(self, w: np.ndarray, bias: np.ndarray, key: str) -> str:
        """W x + b of every step at once: one Gemm on (T*N, I), back to the sequence shape."""
        rows, width = self.steps * self.batch, w.shape[0]
        seq = list(self.b.shape(self.x))
        flat = self.emit("Reshape", [self.x], f"{key}/x_rows", (rows, self.features), {"shape": [rows, self.features]})
        ins = [flat, self.b.new_const(f"{self.base}/{key}/W", _f32(w)), self.b.new_const(f"{self.base}/{key}/B", _f32(bias))]
        proj = self.emit("Gemm", ins, f"{key}/x_proj", (rows, width), {"activation": None})
        return self.emit("Reshape", [proj], f"{key}/x_proj_seq", seq[:2] + [width], {"shape": seq[:2] + [width]})

    def step_rows(self, proj: str, t: int, key: str) -> str:
        """Step t's rows (N, width) of a projected sequence."""
        seq = list(self.shape(proj))
        starts, sizes = [0, 0, 0], list(seq)
        axis = 0 if self.layout == 0 else 1
        starts[axis], sizes[axis] = t, 1
        cut = self.emit("Slice", [proj], f"{key}/t{t}/x_gates", sizes, {"starts": starts, "sizes": sizes, "axes": [axis]})
        return self.emit("Reshape", [cut], f"{key}/t{t}/x_gates_2d", (self.batch, seq[2]),
                         {"shape": [self.batch, seq[2]]})

    def cut(self, x: str, k: int, key: str) -> str:
        """Gate k (columns k*H .. (k+1)*H) of a (N, n*H) tensor."""
        width = self.shape(x)[1]
        h = self.hidden
        if width == h:
            return x
        return self.emit("Slice", [x], key, (self.batch, h),
                         {"starts": [0, k * h], "sizes": [self.batch, h], "axes": [1]})

    def recur(self, h: str | None, r: np.ndarray, key: str, bias: np.ndarray | None = None) -> str | None:
        """R h (+ bias) as a Gemm; None when h is the zero state and there is no bias."""
        if h is None:
            return None
        if h in self.values:  # a constant initial state: R h0 (+ bias) is a constant too
            value = self.values[h] @ r.T + (0 if bias is None else bias)
            return self.b.new_const(f"{self.base}/{key}/const", _f32(value))
        ins = [h, self.b.new_const(f"{self.base}/{key}/R", _f32(r))]
        if bias is not None:
            ins.append(self.b.new_const(f"{self.base}/{key}/Rb", _f32(bias)))
        return self.emit("Gemm", ins, key, (self.batch, r.shape[0]), {"activation": None})

    def state(self, index: int, d: int, key: str) -> str | None:
        """The initial state (N, H) of direction d from input ``index``; None for the zero state."""
        name = _input(self.node, index)
        if not name:
            return None
        value = self.b.const(name)
        if value is not None:
            if not np.any(value):
                return None
            state = _f32(np.asarray(value)[d] if self.layout == 0 else np.asarray(value)[:, d])
            name = self.b.new_const(f"{self.base}/{key}/init", state)
            self.values[name] = state
            return name
        axis = 0 if self.layout == 0 else 1  # the direction axis of (D, N, H) / (N, D, H)
        if self.b.shape(name)[axis] == 1:
            return self.emit("Reshape", [name], f"{key}/init", (self.batch, self.hidden),
                             {"shape": [self.batch, self.hidden]})
        sizes, starts = list(self.b.shape(name)), [0, 0, 0]
        sizes[axis], starts[axis] = 1, d
        cut = self.emit("Slice", [name], f"{key}/init_dir", sizes, {"starts": starts, "sizes": sizes, "axes": [axis]})
        return self.emit("Reshape", [cut], f"{key}/init", (self.batch, self.hidden),
                         {"shape": [self.batch, self.hidden]})

    def outputs(self, per_dir_h: list[list[str]], finals: dict[int, list[str]]) -> None:
        """Y (all steps; layout 0: (T, D, N, H), layout 1: (N, T, D, H)) and the final states Y_h / Y_c."""
        b, n, h, dirs = self.b, self.batch, self.hidden, len(per_dir_h)
        if _used(b, self.node, 0):
            unit = (1, 1, n, h) if self.layout == 0 else (n, 1, 1, h)
            steps = []
            for t in range(self.steps):
                parts = [self.emit("Reshape", [hs[t]], f"d{d}/t{t}/h_out", unit, {"shape": list(unit)})
                         for d, hs in enumerate(per_dir_h)]
                steps.append(parts[0] if dirs == 1 else
                             self.emit("Concat", parts, f"t{t}/h_dirs", self._y_step(dirs), {"axis": 1 if self.layout == 0 else 2}))
            self.concat(steps, self.node.output[0], 0 if self.layout == 0 else 1, "Y")
        for index, states in finals.items():
            if not _used(b, self.node, index):
                continue
            shape = (dirs, n, h) if self.layout == 0 else (n, dirs, h)
            unit = (1, n, h) if self.layout == 0 else (n, 1, h)
            if dirs == 1:
                b.emit("Reshape", [states[0]], [self.node.output[index]], {"shape": list(shape)}, suffix=f"final{index}")
            else:
                parts = [self.emit("Reshape", [s], f"d{d}/final{index}", unit, {"shape": list(unit)})
                         for d, s in enumerate(states)]
                b.emit("Concat", parts, [self.node.output[index]], {"axis": 0 if self.layout == 0 else 1},
                       suffix=f"final{index}")

    def concat(self, parts: list[str], out: str, axis: int, key: str) -> None:
        """Concat into ``out``, at most TFLM_CONCAT_INPUTS inputs per node (TFLite Micro's limit): longer
        sequences are joined in chunks, then the chunks."""
        if len(parts) > TFLM_CONCAT_INPUTS:
            chunks = []
            for k in range(0, len(parts), TFLM_CONCAT_INPUTS):
                group = parts[k:k + TFLM_CONCAT_INPUTS]
                shape = list(self.shape(group[0]))
                shape[axis] = sum(self.shape(p)[axis] for p in group)
                chunks.append(self.emit("Concat", group, f"{key}/chunk{k // TFLM_CONCAT_INPUTS}", shape, {"axis": axis}))
            return self.concat(chunks, out, axis, key)
        self.b.emit("Concat", parts, [out], {"axis": axis}, suffix=key)

    def _y_step(self, dirs: int):
        return (1, dirs, self.batch, self.hidden) if self.layout == 0 else (self.batch, 1, dirs, self.hidden)

    def order(self, direction: str) -> list[int]:
        return list(range(self.steps)) if direction == "forward" else list(range(self.steps))[::-1]


def _weights(b: Builder, node, gates: int, hidden: int, dirs: int):
    w = b.need_const(node, 1, "W")
    r = b.need_const(node, 2, "R")
    bias = b.need_const(node, 3, "B") if _input(node, 3) else np.zeros((dirs, 2 * gates * hidden), np.float32)
    return w, r, bias


def lstm(b: Builder, node, attrs):
    hidden, layout, dirs = _check_form(b, node, attrs, "LSTM", _LSTM_ACTS)
    if _input(node, 7) and np.any(b.need_const(node, 7, "P (peepholes)")):
        raise unsupported_variant("LSTM", b.current, "peephole weights P are non-zero")
    u = _Unroller(b, node, layout, hidden)
    w, r, bias = _weights(b, node, 4, hidden, len(dirs))
    all_h, final_h, final_c = [], [], []
    for d, direction in enumerate(dirs):
        key = f"d{d}"
        proj = u.project_input(w[d], bias[d, :4 * hidden] + bias[d, 4 * hidden:], key)
        h, c = u.state(5, d, f"{key}/h"), u.state(6, d, f"{key}/c")
        hs = [None] * u.steps
        for t in u.order(direction):
            s = f"{key}/t{t}"
            gates = u.step_rows(proj, t, key)
            rec = u.recur(h, r[d], f"{s}/h_proj")
            if rec is not None:
                gates = u.emit("Add", [gates, rec], f"{s}/gates", (u.batch, 4 * hidden), {"activation": None})
            i, o, f, g = (u.cut(gates, k, f"{s}/gate_{n}") for k, n in enumerate("iofc"))
            shape = (u.batch, hidden)
            i, o, f = (u.emit("Sigmoid", [x], f"{s}/{n}", shape) for x, n in ((i, "i"), (o, "o"), (f, "f")))
            g = u.emit("Tanh", [g], f"{s}/g", shape)
            ig = u.emit("Mul", [i, g], f"{s}/i_g", shape, {"activation": None})
            if c is None:
                c = ig
            else:
                fc = u.emit("Mul", [f, c], f"{s}/f_c", shape, {"activation": None})
                c = u.emit("Add", [fc, ig], f"{s}/c", shape, {"activation": None})
            tc = u.emit("Tanh", [c], f"{s}/tanh_c", shape)
            h = hs[t] = u.emit("Mul", [o, tc], f"{s}/h", shape, {"activation": None})
        all_h.append(hs)
        final_h.append(h)
        final_c.append(c)
    u.outputs(all_h, {1: final_h, 2: final_c})


def gru(b: Builder, node, attrs):
    """Gates z, r, h (ONNX order). linear_before_reset=1 (PyTorch, Keras reset_after): the reset gate
    multiplies R_h h + Rb_h; 0 (ONNX default): it multiplies h before R_h."""
    hidden, layout, dirs = _check_form(b, node, attrs, "GRU", _GRU_ACTS)
    before = int(attrs.get("linear_before_reset", 0))
    u = _Unroller(b, node, layout, hidden)
    w, r, bias = _weights(b, node, 3, hidden, len(dirs))
    all_h, final_h, hh = [], [], 2 * hidden
    shape = (u.batch, hidden)
    for d, direction in enumerate(dirs):
        key = f"d{d}"
        wb, rb = bias[d, :3 * hidden], bias[d, 3 * hidden:]
        x_bias = np.concatenate([wb[:hh] + rb[:hh], wb[hh:] + (0 if before else rb[hh:])])
        proj = u.project_input(w[d], x_bias, key)
        h = u.state(5, d, f"{key}/h")
        hs = [None] * u.steps
        for t in u.order(direction):
            s = f"{key}/t{t}"
            xg = u.step_rows(proj, t, key)
            x_zr, x_n = _split_zr_n(u, xg, s)
            rec = u.recur(h, r[d, :hh], f"{s}/h_proj_zr")
            zr = x_zr if rec is None else u.emit("Add", [x_zr, rec], f"{s}/zr", (u.batch, hh), {"activation": None})
            zr = u.emit("Sigmoid", [zr], f"{s}/zr_act", (u.batch, hh))
            z, rg = u.cut(zr, 0, f"{s}/z"), u.cut(zr, 1, f"{s}/r")
            if h is None:  # the reset gate multiplies a zero state (plus Rb_h when linear before reset)
                n_in = x_n if not (before and np.any(rb[hh:])) else _add_const_times(u, x_n, rg, rb[hh:], s)
            elif before:
                rh = u.recur(h, r[d, hh:], f"{s}/h_proj_n", rb[hh:])
                n_in = u.emit("Add", [x_n, u.emit("Mul", [rg, rh], f"{s}/r_h", shape, {"activation": None})],
                              f"{s}/n_in", shape, {"activation": None})
            else:
                rh = u.emit("Mul", [rg, h], f"{s}/r_h", shape, {"activation": None})
                n_in = u.emit("Add", [x_n, u.recur(rh, r[d, hh:], f"{s}/h_proj_n")], f"{s}/n_in", shape,
                              {"activation": None})
            n = u.emit("Tanh", [n_in], f"{s}/n", shape)
            if h is None:  # h = (1 - z) * n = n - z * n
                zn = u.emit("Mul", [z, n], f"{s}/z_n", shape, {"activation": None})
                h = hs[t] = u.emit("Sub", [n, zn], f"{s}/h", shape, {"activation": None})
            else:  # h = (n - z * n) + z * h_prev: every product is bounded by |n|, |h| <= 1; the shorter
                # n + z * (h_prev - n) puts a small difference times a near-0 z in int8, whose calibrated
                # range the int8 state overruns (trained GRU: 10 dB output instead of 19)
                zn = u.emit("Mul", [z, n], f"{s}/z_n", shape, {"activation": None})
                keep = u.emit("Sub", [n, zn], f"{s}/n_minus_zn", shape, {"activation": None})
                zh = u.emit("Mul", [z, h], f"{s}/z_h", shape, {"activation": None})
                h = hs[t] = u.emit("Add", [keep, zh], f"{s}/h", shape, {"activation": None})
        all_h.append(hs)
        final_h.append(h)
    u.outputs(all_h, {1: final_h})


def _split_zr_n(u: _Unroller, xg: str, s: str) -> tuple[str, str]:
    h = u.hidden
    zr = u.emit("Slice", [xg], f"{s}/x_zr", (u.batch, 2 * h), {"starts": [0, 0], "sizes": [u.batch, 2 * h], "axes": [1]})
    n = u.emit("Slice", [xg], f"{s}/x_n", (u.batch, h), {"starts": [0, 2 * h], "sizes": [u.batch, h], "axes": [1]})
    return zr, n


def _add_const_times(u: _Unroller, x_n: str, rg: str, rb_h: np.ndarray, s: str) -> str:
    """x_n + r * Rb_h at the zero state (linear_before_reset with a recurrent bias)."""
    shape = (u.batch, u.hidden)
    scaled = u.emit("Mul", [rg, u.b.new_const(f"{u.base}/{s}/Rb_h", _f32(rb_h))], f"{s}/r_bias", shape,
                    {"activation": None})
    return u.emit("Add", [x_n, scaled], f"{s}/n_in", shape, {"activation": None})


RECURRENT_RULES = {"LSTM": lstm, "GRU": gru}
