"""Calibration samples from files: .npy/.npz files and folders of .npy or image files (PNG/JPEG/BMP,
with class sub-folders as labels). Folders are read lazily, file by file."""
from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from edgepack.errors import DataError, one_line
from edgepack.input_files import MAX_DATA_BYTES, check_file

from .samples import (IMAGE_FORMATS, IMAGE_SUFFIXES, INPUT_KEYS, LABEL_KEYS, SAMPLE_SUFFIXES, SampleSet, _fit_sample,
                   _from_items, _normaliser, _read_npy, _refuse_non_finite, _to_float)

_PIL_FORMATS = sorted(set(IMAGE_FORMATS.values()))  # decoders only: never EPS (Ghostscript) and the like


def load_path(path: Path, sample_shape, input_name, mean, std, limit) -> SampleSet:
    path, npz_key = _split_npz_key(path)
    if not path.exists():
        raise DataError(f"sample data not found: {path}")
    check_file(path, "sample data", MAX_DATA_BYTES, allow_dir=True, error=DataError)
    if path.is_dir():
        return _load_folder(path, sample_shape, mean, std, limit)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _from_items([_read_npy(path)], sample_shape, True, mean, std, limit, str(path))
    if suffix == ".npz":
        x, y = _pick_npz(path, npz_key, input_name)
        return _from_items([(x, y)], sample_shape, True, mean, std, limit, str(path))
    if suffix in IMAGE_SUFFIXES:
        return _from_files([path], None, None, sample_shape, mean, std, str(path))
    raise DataError(f"cannot read samples from {path} (allowed: .npy, .npz, {', '.join(IMAGE_SUFFIXES)}, "
                    "or a folder of those)")


def _split_npz_key(path: Path) -> tuple[Path, str | None]:
    """``data.npz:images`` -> (data.npz, "images"): pick one array of an .npz by name."""
    text = str(path)
    head, sep, key = text.rpartition(":")
    if sep and key and head.lower().endswith(".npz") and not path.exists():
        return Path(head), key
    return path, None


def _pick_npz(path: Path, key: str | None, input_name: str | None):
    """(samples, labels or None) of an .npz: the array ``key``, else the one named like the model input
    or a known input name; never an array that merely happens to be there."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # else numpy falls back to pickle and says so
            raise DataError(f"{path} is not an .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, MemoryError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {one_line(e)}") from None
    names = ", ".join(sorted(arrays)) or "none"
    if key is None:
        wanted = ([input_name] if input_name else []) + list(INPUT_KEYS)
        key = next((k for k in wanted if k in arrays), None)
        if key is None:
            raise DataError(f"{path} holds no array named {' or '.join(map(repr, wanted))} (it has: {names}); "
                            f"pick one with {path}:NAME")
    elif key not in arrays:
        raise DataError(f"{path} has no array '{key}' (it has: {names})")
    label_key = next((k for k in LABEL_KEYS if k in arrays and k != key), None)
    return arrays[key], (None if label_key is None else arrays[label_key])


def _is_sample_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SAMPLE_SUFFIXES


def _load_folder(folder: Path, sample_shape, mean, std, limit) -> SampleSet:
    files = sorted(p for p in folder.iterdir() if _is_sample_file(p))
    labels = class_names = None
    if not files:
        class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        for index, d in enumerate(class_dirs):
            found = sorted(p for p in d.iterdir() if _is_sample_file(p))
            files += found
            labels = (labels or []) + [index] * len(found)
        class_names = [d.name for d in class_dirs] if files else None
    if not files:
        raise DataError(f"no samples found in {folder} (expected .npy or {', '.join(IMAGE_SUFFIXES)} files, "
                        "directly or in class sub-folders)")
    if limit is not None:
        files = files[:limit]
        labels = labels[:limit] if labels else labels
    labels = None if labels is None else np.asarray(labels, np.int64)
    return _from_files(files, labels, class_names, sample_shape, mean, std, str(folder))


def _from_files(files, labels, class_names, sample_shape, mean, std, where) -> SampleSet:
    """Lazy SampleSet over files; one streaming pass checks shapes and NaN/Inf now, holding nothing."""
    first = files[0]
    if first.suffix.lower() in IMAGE_SUFFIXES:
        layout = _image_layout(sample_shape, first)
        shape = sample_shape if sample_shape is not None else (layout[0], layout[1], layout[2])
        raw = lambda p: _read_image(p, layout)  # noqa: E731
    else:
        shape = sample_shape
        if shape is None:  # a sample file may hold the batch dim 1 in front
            shape = _read_npy(first).shape
            shape = tuple(shape[1:]) if len(shape) >= 2 and shape[0] == 1 else tuple(shape)
        raw = _read_npy
    norm = _normaliser(mean, std, shape)

    def fetch_path(p: Path) -> np.ndarray:
        x = _to_float(raw(p), str(p))
        return norm(_fit_sample(x, shape, str(p)))

    bad = 0
    for p in files:
        bad += not np.isfinite(fetch_path(p)).all()
    _refuse_non_finite(bad, len(files), where)
    return SampleSet(shape, lambda i: fetch_path(files[i]), len(files), labels, source=where,
                     class_names=class_names)


def _image_layout(sample_shape, first: Path) -> tuple[int, int, int, bool]:
    """(channels, height, width, channels_last) for the model input, or from the first image."""
    if sample_shape is None:
        try:
            with _open_image(first) as im:
                return (1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3), im.height, im.width, False
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {first}: {one_line(e)}") from None
    s = tuple(sample_shape)
    if len(s) == 2:
        return 1, s[0], s[1], False
    if len(s) == 3 and s[0] in (1, 3):
        return s[0], s[1], s[2], False
    if len(s) == 3 and s[2] in (1, 3):
        return s[2], s[0], s[1], True
    raise DataError(f"images need a model input shaped (1, C, H, W) with C 1 or 3, got {(1,) + s}")


def _read_image(path: Path, layout) -> np.ndarray:
    """Image -> float32 in [0, 1], resized bilinearly, CHW (HWC for a channels-last model)."""
    from PIL import Image
    channels, h, w, channels_last = layout
    try:
        with _open_image(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            arr = np.asarray(im, np.float32) / 255.0
    except (OSError, ValueError) as e:  # UnidentifiedImageError is an OSError
        raise DataError(f"cannot read image {path}: {one_line(e)}") from None
    if arr.ndim == 2:
        arr = arr[None]
    elif not channels_last:
        arr = arr.transpose(2, 0, 1)
    return arr


def _open_image(path: Path):
    """PIL.Image.open, refusing a decompression bomb (more pixels than PIL's limit) as a DataError
    instead of a warning followed by gigabytes of memory."""
    from PIL import Image

    check_file(path, "image", MAX_DATA_BYTES, error=DataError)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path, formats=_PIL_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(f"image {path} is too large to read safely: {one_line(e)}") from None
