"""Target profiles are data: built-ins load, names and aliases resolve, bad files say what is allowed."""
from pathlib import Path

import pytest

from edgepack.errors import ConfigError
from edgepack.targets import profile as profile_mod
from edgepack.targets import COST_KINDS, list_profiles, load_profile, profile_names

REQUIRED = {"stm32l4r5", "ra6m4", "stm32h7a3", "ra8d1", "esp32-s3", "phone-arm64", "host"}
KB, MB = 1024, 1024 * 1024

MINIMAL = """
kind = "mcu"
runtime = "tflm"
core = "cortex-m0plus"
clock_mhz = 48
ram_bytes = 32768
flash_bytes = 262144
aliases = ["my-m0"]
supported_ops = ["CONV_2D", "FULLY_CONNECTED"]
[cost]
status = "rough"
""" + "".join(f"[cost.{k}]\ncycles_per_mac = 20\ncycles_per_output = 50\noverhead_cycles = 2000\n"
              for k in COST_KINDS)


def test_builtin_profiles_load_with_every_cost_kind():
    profiles = {p.name: p for p in list_profiles()}
    assert REQUIRED <= set(profiles)
    for p in profiles.values():
        assert set(p.cost) == set(COST_KINDS)
        assert p.clock_mhz > 0 and p.ram_bytes > 0 and p.flash_bytes > 0 and p.threads >= 1
        assert all(c.cycles_per_mac >= 0 and c.cycles_per_output >= 0 for c in p.cost.values())


@pytest.mark.parametrize("name, core, mhz, ram, flash", [
    ("stm32l4r5", "cortex-m4", 120, 640 * KB, 2 * MB),
    ("ra6m4", "cortex-m33", 200, 256 * KB, 1 * MB),
    ("stm32h7a3", "cortex-m7", 280, 1408 * KB, 2 * MB),
    ("ra8d1", "cortex-m85", 480, 1 * MB, 2 * MB),
    ("esp32-s3", "xtensa-lx7", 240, 512 * KB, 8 * MB),
])
def test_mcu_profiles_have_the_board_budgets(name, core, mhz, ram, flash):
    p = load_profile(name)
    assert (p.kind, p.runtime, p.core, p.clock_mhz, p.ram_bytes, p.flash_bytes) == (
        "mcu", "tflm", core, mhz, ram, flash)
    assert p.dtypes == ("int8", "int16") and p.threads == 1  # 16x8 kernels: SUPPORTED_OPS.md
    assert p.supports("conv_2d") and p.supports("DEPTHWISE_CONV_2D") and p.supports("FULLY_CONNECTED")
    assert not p.supports("DIV")  # no int8 TFLM kernel: the resolver does not list it


def test_phone_and_host_run_litert_with_every_builtin():
    phone, host = load_profile("phone-arm64"), load_profile("host")
    assert (phone.kind, phone.runtime, phone.threads) == ("phone", "litert", 4)
    assert (host.kind, host.runtime) == ("host", "litert")
    assert phone.supports("DIV") and host.supports("GATHER")
    assert {phone.cost_model, host.cost_model} == {"rough"}


def test_cost_model_says_which_profiles_were_fitted():
    status = {p.name: p.cost_model for p in list_profiles()}
    assert [n for n in ("stm32l4r5", "ra6m4", "ra8d1") if status[n] == "fitted"] == ["stm32l4r5", "ra6m4", "ra8d1"]
    assert status["stm32h7a3"] == status["esp32-s3"] == "derived"


@pytest.mark.parametrize("alias, name", [("cortex-m4", "stm32l4r5"), ("cortex-m33", "ra6m4"),
                                         ("cortex-m7", "stm32h7a3"), ("cortex-m85", "ra8d1"),
                                         ("Cortex-M4", "stm32l4r5"), ("STM32L4R5", "stm32l4r5")])
def test_aliases_and_names_resolve_case_insensitively(alias, name):
    assert load_profile(alias).name == name


def test_unknown_target_lists_names_and_aliases():
    with pytest.raises(ConfigError) as info:
        load_profile("cortex-m99")
    assert "cortex-m99" in str(info.value)
    assert {"stm32l4r5", "cortex-m4", "phone-arm64", "ra8d1"} <= set(info.value.allowed)
    assert set(info.value.allowed) == set(profile_names())


def test_user_profile_loads_from_a_path(tmp_path):
    path = tmp_path / "my-board.toml"
    path.write_text(MINIMAL)
    for ref in (path, str(path)):
        p = load_profile(ref)
        assert (p.name, p.core, p.clock_mhz, p.ram_bytes) == ("my-board", "cortex-m0plus", 48, 32768)
        assert p.supports("CONV_2D") and not p.supports("ADD")
        assert p.cost["depthwise"].cycles(100, 10) == 20 * 100 + 50 * 10 + 2000


def test_adding_a_file_adds_a_target(tmp_path, monkeypatch):
    for src in profile_mod.PROFILE_DIR.glob("*.toml"):
        (tmp_path / src.name).write_text(src.read_text())
    (tmp_path / "my-board.toml").write_text(MINIMAL)
    monkeypatch.setattr(profile_mod, "PROFILE_DIR", tmp_path)
    profile_mod._builtin.cache_clear()
    try:
        assert "my-board" in {p.name for p in list_profiles()}
        assert load_profile("my-m0").name == "my-board"  # its alias too
        assert load_profile("cortex-m4").name == "stm32l4r5"
    finally:
        profile_mod._builtin.cache_clear()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def test_unknown_top_level_key_lists_the_valid_keys(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_profile(_write(tmp_path, "clock_hz = 5\n" + MINIMAL))
    assert "clock_hz" in str(info.value)
    assert {"clock_mhz", "ram_bytes", "supported_ops", "cost"} <= set(info.value.allowed)


def test_unknown_cost_key_lists_the_valid_keys(tmp_path):
    text = MINIMAL.replace("[cost.conv]\n", "[cost.conv]\ncycles_per_flop = 1\n")
    with pytest.raises(ConfigError) as info:
        load_profile(_write(tmp_path, text))
    assert "cycles_per_flop" in str(info.value) and "cost.conv" in str(info.value)
    assert set(info.value.allowed) == {"cycles_per_mac", "cycles_per_output", "overhead_cycles"}


def test_unknown_op_kind_in_cost_lists_the_kinds(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_profile(_write(tmp_path, MINIMAL + "[cost.attention]\ncycles_per_mac = 1\n"))
    assert "attention" in str(info.value) and "depthwise" in info.value.allowed


@pytest.mark.parametrize("old, new, key", [
    ('kind = "mcu"', 'kind = "fpga"', "kind"),
    ('runtime = "tflm"', 'runtime = "tvm"', "runtime"),
    ("clock_mhz = 48", "clock_mhz = -48", "clock_mhz"),
    ("ram_bytes = 32768", 'ram_bytes = "32K"', "ram_bytes"),
    ("[cost.pooling]\n", "[cost.poolingX]\n", "poolingX"),
])
def test_bad_values_are_config_errors(tmp_path, old, new, key):
    with pytest.raises(ConfigError) as info:
        load_profile(_write(tmp_path, MINIMAL.replace(old, new)))
    assert key in str(info.value)


def test_missing_required_key_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="required key 'clock_mhz'"):
        load_profile(_write(tmp_path, MINIMAL.replace("clock_mhz = 48\n", "")))
    with pytest.raises(ConfigError, match="not found"):
        load_profile(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not a valid TOML"):
        load_profile(_write(tmp_path, "kind = = 1"))


def test_alias_clash_between_files_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "a.toml").write_text(MINIMAL)
    (tmp_path / "b.toml").write_text(MINIMAL)  # same alias "my-m0"
    monkeypatch.setattr(profile_mod, "PROFILE_DIR", tmp_path)
    profile_mod._builtin.cache_clear()
    try:
        with pytest.raises(ConfigError, match="alias 'my-m0'"):
            list_profiles()
    finally:
        profile_mod._builtin.cache_clear()


def test_fitted_coefficients_are_physically_sensible():
    m4, m33, m85, m7 = (load_profile(n) for n in ("stm32l4r5", "ra6m4", "ra8d1", "stm32h7a3"))
    for p in (m4, m33, m85):
        c = p.cost
        assert c["conv"].cycles_per_mac > 0 and c["fully_connected"].cycles_per_mac > 0
        assert c["depthwise"].cycles_per_mac >= c["conv"].cycles_per_mac  # dw reuses less
        assert c["conv"].cycles_per_output > 0  # requantization is never free
    # Helium (M85) does several times more MACs per cycle than the DSP-extension cores.
    assert m85.cost["conv"].cycles_per_mac < m33.cost["conv"].cycles_per_mac / 4
    # The M7 profile is the fitted M4 divided by the documented 1.8 per-clock speed-up.
    for kind in COST_KINDS:
        assert m7.cost[kind].cycles_per_mac == pytest.approx(m4.cost[kind].cycles_per_mac / 1.8, rel=1e-3)


def test_to_dict_round_trips_the_numbers():
    d = load_profile("ra6m4").to_dict()
    assert d["name"] == "ra6m4" and d["clock_mhz"] == 200 and "cortex-m33" in d["aliases"]
    assert set(d["cost"]) == set(COST_KINDS) and d["cost"]["conv"]["cycles_per_mac"] > 0
    assert len({load_profile("ra6m4"), load_profile("cortex-m33"), load_profile("host")}) == 2  # hashable
