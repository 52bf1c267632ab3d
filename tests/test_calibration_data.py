"""Calibration sample readers: every source kind from real files, and every user error."""
import numpy as np
import pytest
import torch
from PIL import Image

from edgepack.calibration import SampleSet, load_labels, load_samples
from edgepack.errors import ConfigError, DataError

SHAPE = (1, 1, 8, 8)


def _data(n=20, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def test_npy_array_with_and_without_channel_dim(tmp_path):
    x = _data()
    np.save(tmp_path / "x.npy", x)
    ss = load_samples(tmp_path / "x.npy", SHAPE)
    assert len(ss) == 20 and ss.labels is None and ss.input_shape == SHAPE
    first = next(iter(ss))
    assert first.shape == SHAPE and first.dtype == np.float32
    np.testing.assert_array_equal(ss.as_array(), x)
    np.save(tmp_path / "flat.npy", x[:, 0])  # (N, 8, 8) for a model wanting (1, 1, 8, 8)
    np.testing.assert_array_equal(load_samples(tmp_path / "flat.npy", SHAPE).as_array(), x)
    assert len(load_samples(tmp_path / "x.npy", SHAPE, limit=5)) == 5
    assert load_samples(tmp_path / "x.npy").input_shape == SHAPE  # shape inferred from (N, ...)


def test_npz_picks_input_array_and_labels(tmp_path):
    x, y = _data(), np.arange(20) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ss = load_samples(tmp_path / "d.npz", SHAPE)
    np.testing.assert_array_equal(ss.labels, y)
    np.savez(tmp_path / "named.npz", image=x, other=x[:, :, :4], labels=y)
    ss = load_samples(tmp_path / "named.npz", SHAPE, input_name="image")
    np.testing.assert_array_equal(ss.as_array(), x)
    np.testing.assert_array_equal(ss.labels, y)
    np.savez(tmp_path / "unnamed.npz", x[:7])  # np.savez names a positional array arr_0
    assert len(load_samples(tmp_path / "unnamed.npz", SHAPE)) == 7


def test_npz_array_picked_by_name_after_a_colon(tmp_path):
    x, y = _data(), np.arange(20) % 3
    np.savez(tmp_path / "d.npz", x=x[::-1], images=x, labels=y)
    ss = load_samples(f"{tmp_path / 'd.npz'}:images", SHAPE)
    np.testing.assert_array_equal(ss.as_array(), x)
    np.testing.assert_array_equal(ss.labels, y)
    np.testing.assert_array_equal(load_samples(tmp_path / "d.npz", SHAPE).as_array(), x[::-1])  # no key: x
    with pytest.raises(DataError) as err:
        load_samples(f"{tmp_path / 'd.npz'}:imgs", SHAPE)
    assert str(err.value).endswith("has no array 'imgs' (it has: images, labels, x)")


@pytest.mark.parametrize("arrays", [{"whatever": 20}, {"a": 20, "b": 20}, {"y": 20}],
                         ids=["one_unknown", "two_unknown", "labels_only"])
def test_npz_without_a_known_array_name_is_refused_with_its_names(tmp_path, arrays):
    """An array is never used just because it is the only one: a wrong key would calibrate on labels."""
    np.savez(tmp_path / "d.npz", **{k: _data(n) for k, n in arrays.items()})
    with pytest.raises(DataError) as err:
        load_samples(tmp_path / "d.npz", SHAPE, input_name="img")
    text = str(err.value)
    assert f"holds no array named 'img' or 'x' or 'inputs' or 'input' or 'arr_0' (it has: {', '.join(sorted(arrays))})" in text
    assert text.endswith(f"pick one with {tmp_path / 'd.npz'}:NAME") and "\n" not in text


def test_folder_of_npy_is_sorted_and_lazy(tmp_path):
    x = _data(5)
    for i in range(5):  # names sort differently as text vs number: sorted by name as promised
        np.save(tmp_path / f"s{i:02d}.npy", x[i][None] if i % 2 else x[i, 0])
    ss = load_samples(tmp_path, SHAPE)
    assert len(ss) == 5
    np.testing.assert_array_equal(np.concatenate(list(ss)), x)
    batches = list(ss.batches(2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]


def _write_images(root, classes, per_class, size=(12, 10), mode="RGB"):
    rng = np.random.default_rng(1)
    for c in classes:
        d = root / c if c else root
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).convert(mode).save(d / f"img{i}.png")


def test_image_class_folders_give_labels_and_resize(tmp_path):
    _write_images(tmp_path, ["cat", "ant", "bee"], 2)
    ss = load_samples(tmp_path, (1, 3, 8, 8))
    assert len(ss) == 6 and ss.class_names == ["ant", "bee", "cat"]
    np.testing.assert_array_equal(ss.labels, [0, 0, 1, 1, 2, 2])
    x = ss.as_array()
    assert x.shape == (6, 3, 8, 8) and x.min() >= 0 and x.max() <= 1
    # the first sample is ant/img0.png, bilinear-resized, CHW
    ref = np.asarray(Image.open(tmp_path / "ant" / "img0.png").convert("RGB").resize((8, 8), Image.BILINEAR))
    np.testing.assert_allclose(x[0], ref.transpose(2, 0, 1) / 255.0, atol=1e-6)


def test_images_grayscale_and_normalised(tmp_path):
    _write_images(tmp_path, [None], 3, size=(8, 8))
    plain = load_samples(tmp_path, SHAPE).as_array()
    assert plain.shape == (3, 1, 8, 8)
    ref = np.asarray(Image.open(tmp_path / "img0.png").convert("L"), np.float32) / 255.0
    np.testing.assert_allclose(plain[0, 0], ref, atol=1e-6)
    norm = load_samples(tmp_path, SHAPE, mean=0.5, std=0.25).as_array()
    np.testing.assert_allclose(norm, (plain - 0.5) / 0.25, atol=1e-5)
    rgb = load_samples(tmp_path, (1, 3, 8, 8), mean=[0.1, 0.2, 0.3], std=[1, 2, 4]).as_array()
    raw = load_samples(tmp_path, (1, 3, 8, 8)).as_array()
    np.testing.assert_allclose(rgb[:, 2], (raw[:, 2] - 0.3) / 4, atol=1e-6)
    with pytest.raises(ConfigError, match="mean has 2 values but the model input"):
        load_samples(tmp_path, (1, 3, 8, 8), mean=[0.1, 0.2])


def test_unreadable_image_names_the_file(tmp_path):
    _write_images(tmp_path, [None], 2, size=(8, 8))
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        load_samples(tmp_path, SHAPE)


def test_torch_dataloader_batches_are_split_into_samples():
    x = torch.from_numpy(_data(10))
    y = torch.arange(10) % 4
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    ss = load_samples(loader, SHAPE)
    assert len(ss) == 10
    np.testing.assert_array_equal(ss.as_array(), x.numpy())
    np.testing.assert_array_equal(ss.labels, y.numpy())
    # without a model shape the DataLoader's batches are recognised as batches too
    assert load_samples(loader).input_shape == SHAPE
    only_x = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=3)
    assert len(load_samples(only_x, SHAPE)) == 10


def test_iterables_of_arrays_tuples_and_dicts():
    x = _data(6)
    assert len(load_samples(list(x), SHAPE)) == 6  # (1, 8, 8) each, no batch dim
    assert len(load_samples([s[0] for s in x], SHAPE)) == 6  # (8, 8) for (1, 8, 8)
    ss = load_samples(((s, i) for i, s in enumerate(x)), SHAPE)
    np.testing.assert_array_equal(ss.labels, np.arange(6))
    ss = load_samples([{"input": s[None]} for s in x], SHAPE, input_name="input")
    np.testing.assert_array_equal(ss.as_array(), x)


def test_split_and_labels_file(tmp_path):
    np.save(tmp_path / "x.npy", _data(10))
    (tmp_path / "y.txt").write_text("\n".join(str(i % 2) for i in range(10)) + "\n")
    ss = load_samples(tmp_path / "x.npy", SHAPE, labels=tmp_path / "y.txt")
    np.testing.assert_array_equal(ss.labels, np.arange(10) % 2)
    a, b = ss.split(0.7, seed=3)
    assert (len(a), len(b)) == (7, 3)
    both = np.concatenate([a.as_array(), b.as_array()])
    assert sorted(map(float, both[:, 0, 0, 0])) == sorted(map(float, ss.as_array()[:, 0, 0, 0]))
    assert a.labels is not None and len(a.labels) == 7
    np.save(tmp_path / "y.npy", np.arange(10))
    np.testing.assert_array_equal(load_labels(tmp_path / "y.npy"), np.arange(10))


def test_error_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"sample data not found: .*nope\.npy"):
        load_samples(tmp_path / "nope.npy", SHAPE)


def test_error_empty_data_says_where(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no samples found in .*empty"):
        load_samples(tmp_path / "empty", SHAPE)
    with pytest.raises(DataError, match=r"no samples in list \(0 samples given\)"):
        load_samples([], SHAPE)
    np.save(tmp_path / "zero.npy", np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match="zero.npy"):
        load_samples(tmp_path / "zero.npy", SHAPE)


def test_error_shape_mismatch_names_both_shapes(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"sample shape \(4, 3, 8, 8\) .* does not fit the model input "
                                        r"\(1, 1, 8, 8\)"):
        load_samples(tmp_path / "x.npy", SHAPE)


def test_error_nan_inf_counted(tmp_path):
    x = _data(200)
    x[3, 0, 1, 1] = np.nan
    x[50, 0, 2, 2] = np.inf
    x[199, 0, 0, 0] = -np.inf
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match="3 of 200 samples contain NaN or Inf"):
        load_samples(tmp_path / "x.npy", SHAPE)
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(4):
        np.save(folder / f"{i}.npy", x[3] if i == 2 else x[0])
    with pytest.raises(DataError, match="1 of 4 samples contain NaN or Inf"):
        load_samples(folder, SHAPE)


def test_error_label_count(tmp_path):
    np.save(tmp_path / "x.npy", _data(10))
    np.save(tmp_path / "y.npy", np.arange(9))
    with pytest.raises(DataError, match="9 labels for 10 samples"):
        load_samples(tmp_path / "x.npy", SHAPE, labels=tmp_path / "y.npy")
    np.savez(tmp_path / "d.npz", x=_data(10), y=np.arange(7))
    with pytest.raises(DataError, match="7 labels for 10 samples"):
        load_samples(tmp_path / "d.npz", SHAPE)


def test_sampleset_is_plain_data():
    ss = SampleSet.from_array(_data(3))
    assert ss[0].shape == SHAPE and len(list(ss.batches(5))) == 1
