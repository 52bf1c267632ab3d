"""Deep Compression levers (issue 17): weight clustering, the Huffman coder, the size ladder, TFLM LUT
compression and the energy estimate."""
import numpy as np
import pytest
import torch

import edgepack
from edgepack.calibration.quantize import on_int8_grid
from edgepack.config import ExportConfig
from edgepack.demo import digits_cnn, digits_split, train_classifier
from edgepack.errors import ConfigError
from edgepack.exporter.passes.cluster import grid_codebook, kmeans_1d, snap_to_grid
from edgepack.targets.compressed_sizes import int8_constants
from edgepack.targets.energy import EnergyCosts, estimate_energy
from edgepack.targets.huffman import code_lengths, coded_size, decode, encode
from edgepack.targets.profile import load_profile, parse_profile
from edgepack.targets.tflite_file import read_tflite


@pytest.mark.parametrize("data", [b"", b"\x07" * 100, bytes(range(256)) * 3,
                                  np.random.default_rng(0).geometric(0.3, 5000).clip(0, 255).astype(np.uint8)
                                  .tobytes()])
def test_huffman_round_trip_and_size(data):
    payload, nbits, lengths = encode(data)
    assert decode(payload, nbits, lengths) == data
    assert len(payload) == (nbits + 7) // 8
    if len(set(data)) > 1:
        assert sum(2.0 ** -n for n in lengths.values()) == pytest.approx(1.0)  # a complete prefix code
    if data and len(set(data)) < 64:  # skewed data codes smaller than 8 bits a symbol
        assert coded_size(data) < len(data)


def test_huffman_lengths_follow_frequencies():
    lengths = code_lengths(b"a" * 50 + b"b" * 25 + b"c" * 13 + b"d" * 12)
    assert lengths[ord("a")] == 1 and lengths[ord("b")] == 2 and lengths[ord("c")] == lengths[ord("d")] == 3


def test_grid_codebook_keeps_k_distinct_integers_when_centroids_collide():
    q, scale = grid_codebook(np.array([-1.0, 0.0, 1e-6, 2e-6, 3e-6, 0.5, 1.0]))
    assert len(set(q.tolist())) == 7 and np.abs(q).max() == 127 and q[0] == -127
    assert np.all(np.diff(q) > 0) and scale == pytest.approx(1.0 / 127)


def test_kmeans_and_snap_give_exactly_k_values_on_an_int8_grid():
    w = np.random.default_rng(1).standard_t(3, size=(32, 16, 3, 3)).astype(np.float32)
    centroids, idx = kmeans_1d(w, 16)
    assert np.all(np.bincount(idx, minlength=16) > 0) and np.all(np.diff(centroids) > 0)
    snapped = snap_to_grid(w, idx, 16)
    assert np.unique(snapped).size == 16 and on_int8_grid(snapped)
    assert not on_int8_grid(w)  # ordinary float weights keep per-channel scales
    assert np.array_equal(kmeans_1d(w, 16)[1], idx)  # deterministic


@pytest.fixture(scope="module")
def digits():
    torch.set_num_threads(1)
    x_train, y_train, x_test, y_test = digits_split()
    torch.manual_seed(0)
    return train_classifier(digits_cnn(), x_train, y_train, epochs=15), x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def clustered(digits, tmp_path_factory):
    net, x_train, y_train, x_test, y_test = digits
    out = tmp_path_factory.mktemp("cluster")
    report = edgepack.export(net, calib=x_train[:300], out=out, input_shape=(1, 1, 8, 8), cluster=8,
                             finetune_epochs=3, train=x_train, train_labels=y_train, val=x_test,
                             val_labels=y_test)
    return report, out


def test_clustered_int8_file_has_exactly_k_values_per_layer(clustered):
    report, out = clustered
    data = (out / "model.int8.tflite").read_bytes()
    info = read_tflite(data)
    weights = {t.name: np.frombuffer(b, np.int8) for t in info.tensors for n, b in int8_constants(data).items()
               if t.name == n and len(t.shape) in (2, 4)}
    assert len(weights) == 4  # three convs and the FC layer
    assert {name: np.unique(w).size for name, w in weights.items()} == dict.fromkeys(weights, 8)
    assert all(layer["values"] == 8 for layer in report.shrink["cluster"]["layers"].values())
    # measured: 98.3% on TFLM for the float model's 98.7% (K=8, 3 epochs of centroid distillation)
    tflm = report.validation["int8_tflite@tflm"]
    assert tflm["accuracy"] >= report.ladder["rungs"][0]["runs"]["litert-ref"]["accuracy"] - 0.02


def test_ladder_sizes_and_lossless_codings(clustered):
    report, _ = clustered
    rungs = {r["rung"]: r for r in report.ladder["rungs"]}
    assert list(rungs) == ["float", "clustered", "int8", "tflm_lut", "huffman", "zlib", "lzma"]
    assert rungs["float"]["bytes"] == rungs["clustered"]["bytes"] > rungs["int8"]["bytes"] > rungs["huffman"]["bytes"]
    assert rungs["huffman"]["bits_per_weight"] <= 3.0 + 0.01  # K=8: at most log2(8) bits a weight
    assert rungs["huffman"]["lossless"] == "decoded and compared"
    assert rungs["lzma"]["bytes"] < rungs["int8"]["bytes"]
    assert rungs["clustered"]["index_packed_bytes"] < rungs["int8"]["bytes"]  # 3-bit indices beat 8 bits


def test_tflm_lut_rung_is_exact_and_smaller_in_flash(clustered):
    rungs = {r["rung"]: r for r in clustered[0].ladder["rungs"]}
    lut = rungs["tflm_lut"]
    assert lut["bytes"] < rungs["int8"]["bytes"]
    assert lut["runs"]["tflm"] == rungs["int8"]["runs"]["tflm"]
    assert lut["arena_bytes"] > lut["int8_arena_bytes"]  # the decoded weights live in the arena
    assert {t["mode"] for t in lut["tensors"]} == {"per_channel(axis=0)", "per_tensor"}  # convs, FC


def test_energy_section_and_sources(clustered):
    energy = clustered[0].energy
    parts = energy["weights_from_flash_uj"] + energy["activations_in_sram_uj"] + energy["macs_uj"]
    assert energy["total_uj"] == pytest.approx(parts)
    assert energy["weights_from_flash_uj"] == pytest.approx(energy["weight_bytes"] * 14.0e-6)
    assert "Horowitz" in energy["per_access"]["source"] and energy["latency_ms"] > 0
    by_target = energy["by_target_uj"]
    assert by_target["stm32l4r5"] == pytest.approx(energy["total_uj"])
    assert by_target["phone-arm64"] > 5 * by_target["stm32l4r5"]  # weights from DRAM, not flash


def test_energy_ranks_memory_over_arithmetic():
    phone, mcu = load_profile("phone-arm64").energy, load_profile("stm32l4r5").energy
    assert phone.pj_per_flash_byte / phone.pj_per_mac > 500  # a DRAM byte costs hundreds of MACs
    assert mcu.pj_per_flash_byte > mcu.pj_per_sram_byte > mcu.pj_per_mac


@pytest.mark.parametrize("energy, key", [({"pj_per_mac": -1, "pj_per_flash_byte": 1, "pj_per_sram_byte": 1,
                                            "source": "x"}, "pj_per_mac"),
                                          ({"pj_per_mac": 1, "pj_per_flash_byte": float("nan"),
                                            "pj_per_sram_byte": 1, "source": "x"}, "pj_per_flash_byte"),
                                          ({"pj_per_mac": 1, "pj_per_flash_byte": 1, "pj_per_sram_byte": 1},
                                           "source"),
                                          ({"pj_per_mac": 1, "pj_per_flash_byte": 1, "pj_per_sram_byte": 1,
                                            "source": "x", "pj_per_dram": 3}, "pj_per_dram")])
def test_profile_energy_values_are_checked(energy, key):
    data = dict(load_profile("stm32l4r5").to_dict())
    raw = {k: data[k] for k in ("kind", "runtime", "core", "clock_mhz", "ram_bytes", "flash_bytes",
                                "supported_ops")}
    raw["cost"] = {"status": data["cost_model"], **data["cost"]}
    raw["energy"] = energy
    with pytest.raises(ConfigError) as exc:
        parse_profile(raw, "mine")
    assert exc.value.key == key


@pytest.mark.parametrize("k", [1, 129, -3])
def test_cluster_setting_is_checked(k):
    with pytest.raises(ConfigError, match="cluster"):
        ExportConfig(cluster=k)


def test_energy_estimate_counts_traffic(clustered):
    _, out = clustered
    info = read_tflite((out / "model.int8.tflite").read_bytes())
    costs = EnergyCosts(1.0, 10.0, 100.0, "test")
    e = estimate_energy(info, 1000, costs)
    assert e["macs_uj"] == pytest.approx(1000 * 1e-6)
    assert e["weights_from_flash_uj"] == pytest.approx(e["weight_bytes"] * 10e-6)
    assert e["activations_in_sram_uj"] == pytest.approx(e["activation_bytes"] * 100e-6)


def test_per_layer_cluster_k_overrides_the_global_k():
    from edgepack.exporter.passes import run_passes
    from edgepack.pipeline import build_pipeline, stage

    torch.manual_seed(0)
    graph = edgepack.load(digits_cnn(), input_shape=(1, 1, 8, 8))
    weighted = [n for n in graph.nodes if n.op in ("Conv", "Gemm")]
    first, second, last = weighted[0], weighted[1], weighted[-1]
    cfg = ExportConfig(cluster=8, layers={first.name: {"cluster": 4}, "op:Gemm": {"cluster": 0}})
    out = run_passes(graph, stage(build_pipeline(cfg), "shrink"))
    distinct = {n.name: np.unique(out.tensors[n.inputs[1]].data).size for n in weighted}
    assert distinct[first.name] == 4 and distinct[second.name] == 8  # node > global
    assert distinct[last.name] == np.unique(graph.tensors[last.inputs[1]].data).size > 8  # op:Gemm = 0: left
    with pytest.raises(ConfigError, match="cluster"):
        ExportConfig(layers={first.name: {"cluster": 1}})
    only = ExportConfig(layers={first.name: {"cluster": 4}})  # no global K: only that layer
    out = run_passes(graph, stage(build_pipeline(only), "shrink"))
    assert np.unique(out.tensors[first.inputs[1]].data).size == 4
    assert np.unique(out.tensors[second.inputs[1]].data).size > 8
