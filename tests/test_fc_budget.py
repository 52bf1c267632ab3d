"""Per-channel FULLY_CONNECTED weights on a tight target: where their TFLM multiplier/shift buffers would
overflow the arena budget, edgepack gives them up layer by layer (the least gain first) and says so."""
from __future__ import annotations

import re

import pytest

import edgepack
from edgepack.targets.memory import estimate_memory, measure_arena
from edgepack.targets.profile import PROFILE_DIR
from edgepack.targets.tflite_file import read_tflite


@pytest.fixture(scope="module")
def autoencoder(dense_autoencoder):
    return dense_autoencoder


def board(tmp_path, ram_bytes: int):
    """A custom profile: the STM32L4R5's, with ``ram_bytes`` of RAM."""
    text = (PROFILE_DIR / "stm32l4r5.toml").read_text()
    path = tmp_path / "tight-board.toml"
    path.write_text(re.sub(r"(?m)^ram_bytes = .*$", f"ram_bytes = {ram_bytes}", text))
    return path


def per_channel_fc_layers(path) -> set[str]:
    info = read_tflite(path)
    return {info.tensors[o.outputs[0]].name for o in info.ops
            if o.op == "FULLY_CONNECTED" and len(info.tensors[o.inputs[1]].scale) > 1}


def test_tight_arena_gives_up_the_least_gain_per_channel_fc_layers(autoencoder, tmp_path):
    model, x_train, _ = autoencoder
    roomy = edgepack.export(model, calib=x_train[:128], out=tmp_path / "roomy", input_shape=(1, 64),
                            validate=False, target=board(tmp_path, 1 << 20))
    fc = roomy.calibration["fc_weights"]
    chosen = sorted((r for r in fc["layers"] if r["per_channel"]), key=lambda r: r["per_channel_db"] - r["per_tensor_db"])
    assert len(chosen) >= 2 and "decided_against_for_arena" not in fc
    arena = estimate_memory(tmp_path / "roomy" / "model.int8.tflite").arena_bytes
    budget = arena - 1  # one byte short: the layer of least gain is enough to give up
    tight = edgepack.export(model, calib=x_train[:128], out=tmp_path / "tight", input_shape=(1, 64),
                            validate=False, target=board(tmp_path, budget))
    against = tight.calibration["fc_weights"]["decided_against_for_arena"]
    assert [d["node"] for d in against["layers"]] == [chosen[0]["node"]]
    assert against["bytes_saved"] == 8 * chosen[0]["channels"] and against["over_budget_bytes"] == 1
    assert against["layers"][0]["layer_snr_given_up_db"] == pytest.approx(
        chosen[0]["per_channel_db"] - chosen[0]["per_tensor_db"], abs=0.02)
    assert any("least gain first" in n and chosen[0]["node"] in n for n in tight.notes)
    path = tmp_path / "tight" / "model.int8.tflite"
    assert len(per_channel_fc_layers(path)) == len(chosen) - 1
    assert measure_arena(path.read_bytes()) <= estimate_memory(path).arena_bytes <= budget


def test_a_budget_per_tensor_cannot_meet_either_keeps_the_accuracy_choice(autoencoder, tmp_path):
    model, x_train, _ = autoencoder
    report = edgepack.export(model, calib=x_train[:128], out=tmp_path, input_shape=(1, 64), validate=False,
                             target=board(tmp_path, 1024))
    assert "decided_against_for_arena" not in report.calibration["fc_weights"]
    assert per_channel_fc_layers(tmp_path / "model.int8.tflite")
