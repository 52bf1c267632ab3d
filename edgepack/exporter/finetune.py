"""Knowledge distillation: recover a pruned / factorised / quantized student from the original graph.

The loss per graph output is, for 2-D classifier outputs (N, classes), the KL divergence between the
temperature-softened outputs of student and teacher, scaled by T^2 (Hinton et al.), mixed with
cross-entropy on hard labels when given: alpha * KD + (1 - alpha) * CE. Outputs produced by a Softmax
are probabilities: their log is used as logits. Other outputs (images, embeddings) fall back to the
mean squared error against the teacher. A held-out split (``val_fraction``) drives early stopping
and the best weights are restored. ``fake_quant=True`` trains through the student's QuantParams
(weights with TFLite rounding, activations with fake-quant STE), so what is recovered is the int8 model.
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

import numpy as np

from edgepack.errors import ConfigError, DataError
from edgepack.ir import Graph

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, epochs just done, total epochs)


def _check(student: Graph, teacher: Graph, train: np.ndarray, labels, epochs, temperature, alpha, batch_size,
           val_fraction, fake_quant) -> np.ndarray:
    if len(student.inputs) != 1 or len(teacher.inputs) != 1:
        raise ConfigError("distillation handles single-input models "
                          f"(student has {len(student.inputs)} inputs, teacher {len(teacher.inputs)})")
    if len(student.outputs) != len(teacher.outputs):
        raise ConfigError(f"student has {len(student.outputs)} outputs, teacher {len(teacher.outputs)}: "
                          "they must match to distil")
    for s_out, t_out in zip(student.outputs, teacher.outputs):
        if tuple(student.tensors[s_out].shape[1:]) != tuple(teacher.tensors[t_out].shape[1:]):
            raise ConfigError(f"student output '{s_out}' {student.tensors[s_out].shape} and teacher output "
                              f"'{t_out}' {teacher.tensors[t_out].shape} differ")
    x = np.asarray(train, np.float32)
    want = tuple(student.tensors[student.inputs[0]].shape[1:])
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or len(x) < 2:
        raise DataError(f"training data has shape {x.shape}; the model takes (N, {', '.join(map(str, want))}) "
                        "with N >= 2")
    if not np.isfinite(x).all():
        raise DataError("training data contains NaN or Inf")
    if labels is not None and len(labels) != len(x):
        raise DataError(f"{len(labels)} labels for {len(x)} training samples")
    for key, value, ok, allowed in (("finetune_epochs", epochs, int(epochs) >= 0, ">= 0"),
                                    ("temperature", temperature, float(temperature) > 0, "> 0"),
                                    ("alpha", alpha, 0.0 <= float(alpha) <= 1.0, "0..1"),
                                    ("batch_size", batch_size, int(batch_size) >= 1, ">= 1"),
                                    ("val_fraction", val_fraction, 0.0 <= float(val_fraction) < 1.0, "0 <= f < 1")):
        if not ok:
            raise ConfigError(f"{key}={value} is out of range (allowed: {allowed})", key=key)
    if fake_quant and not any(t.quant is not None for t in student.tensors.values()):
        raise ConfigError("fake_quant distillation needs a calibrated student (no tensor has QuantParams)",
                          key="fake_quant")
    return x


def _as_logits(graph: Graph, name: str, y):
    """Log-probabilities for a Softmax output (a constant shift away from its logits), else y itself."""
    import torch

    producer = graph.producer(name)
    if producer is not None and producer.op == "Softmax":
        return torch.log(y.clamp_min(1e-12))
    return y


def _loss(student: Graph, out_s: dict, out_t: dict, y, temperature: float, alpha: float):
    """Total loss and the number of correct top-1 predictions against the labels (if any)."""
    import torch.nn.functional as F

    total, correct = 0.0, 0
    for i, name in enumerate(student.outputs):
        s, t = out_s[name], out_t[i]
        if s.dim() == 2 and s.shape[1] > 1:
            zs, zt = _as_logits(student, name, s), _as_logits(student, name, t)
            kd = F.kl_div(F.log_softmax(zs / temperature, 1), F.log_softmax(zt / temperature, 1),
                          reduction="batchmean", log_target=True) * temperature ** 2
            if y is not None and i == 0:
                total = total + alpha * kd + (1.0 - alpha) * F.cross_entropy(zs, y)
                correct += int((zs.argmax(1) == y).sum())
            else:
                total = total + kd
        else:
            total = total + F.mse_loss(s, t)
    return total, correct


def distill(student: Graph, teacher: Graph, train: np.ndarray, labels: np.ndarray | None = None,
            epochs: int = 10, temperature: float = 4.0, alpha: float = 0.5, lr: float = 1e-3,
            batch_size: int = 64, fake_quant: bool = False, val_fraction: float = 0.1, patience: int = 3,
            progress: Progress | None = None, seed: int = 0,
            after_step: Callable | None = None) -> tuple[Graph, dict]:
    """Train ``student`` to mimic ``teacher`` on ``train``; return (a trained copy of student, history).

    history: train_loss and val_loss per epoch (and val_accuracy with labels), best_epoch (0 = the
    weights before training), epochs_run, stopped_early. ``after_step(module)`` runs after every optimizer
    step (e.g. to keep clustered weights shared: exporter/passes/cluster.py ``share_weights``)."""
    import torch

    from edgepack.ir.torch_exec import run, to_module, write_back

    x = _check(student, teacher, train, labels, epochs, temperature, alpha, batch_size, val_fraction, fake_quant)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_val = int(round(len(x) * float(val_fraction))) if val_fraction else 0
    n_val = min(n_val, len(x) - 1)
    val_idx, train_idx = order[:n_val], order[n_val:]

    # The teacher is fixed: its outputs are computed once, in batches.
    chunks = [run(teacher, [x[i:i + 256]]) for i in range(0, len(x), 256)]
    t_outs = [torch.from_numpy(np.concatenate([c[name] for c in chunks]).astype(np.float32))
              for name in teacher.outputs]
    xt = torch.from_numpy(x)
    yt = None if labels is None else torch.from_numpy(np.asarray(labels, np.int64))

    module = to_module(student, fake_quant=fake_quant)
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=float(lr))
    gen = torch.Generator().manual_seed(int(seed))

    def evaluate() -> tuple[float, float | None]:
        if not n_val:
            return float("nan"), None
        idx = torch.from_numpy(val_idx)
        with torch.no_grad():
            out = module.run_dict([xt[idx]])
            loss, correct = _loss(student, out, [t[idx] for t in t_outs], None if yt is None else yt[idx],
                                  float(temperature), float(alpha))
        return float(loss), (correct / n_val if yt is not None else None)

    history = {"train_loss": [], "val_loss": [], "val_accuracy": [] if yt is not None else None,
               "best_epoch": 0, "epochs_run": 0, "stopped_early": False}
    best_loss, _ = evaluate()
    best_state = copy.deepcopy(module.state_dict())
    bad = 0
    train_t = torch.from_numpy(train_idx)
    for epoch in range(1, int(epochs) + 1):
        perm = train_t[torch.randperm(len(train_t), generator=gen)]
        total, seen = 0.0, 0
        for start in range(0, len(perm), int(batch_size)):
            idx = perm[start:start + int(batch_size)]
            out = module.run_dict([xt[idx]])
            loss, _ = _loss(student, out, [t[idx] for t in t_outs], None if yt is None else yt[idx],
                            float(temperature), float(alpha))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(module)
            total, seen = total + loss.item() * len(idx), seen + len(idx)
        val_loss, val_acc = evaluate()
        history["train_loss"].append(total / max(seen, 1))
        history["val_loss"].append(val_loss)
        if yt is not None:
            history["val_accuracy"].append(val_acc)
        history["epochs_run"] = epoch
        log.info("distillation epoch %d: train loss %.4f, val loss %.4f", epoch, total / max(seen, 1), val_loss)
        if progress is not None:
            progress("distilling", 1, int(epochs))
        if not n_val or val_loss < best_loss:
            best_loss, bad, history["best_epoch"] = val_loss, 0, epoch
            best_state = copy.deepcopy(module.state_dict())
        else:
            bad += 1
            if bad >= int(patience):
                history["stopped_early"] = True
                break
    module.load_state_dict(best_state)
    result = student.copy()
    write_back(module, result)  # QuantParams are left as they were: re-calibrate after plain distillation
    return result, history
