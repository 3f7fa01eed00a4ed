"""Every shipped hardware profile: schema, citations, firmware knobs, physical consistency."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.profiles import HardwareProfile, find_profile
from agent.simulator.physics import firmware_voltage, mean_unit_params, steady_state
from tests.conftest import FIXTURES, REPO
from tests.sim_physics.conftest import EXPECTED_IDS

NUMERIC_TABLES = ("rated", "hardware", "clock", "power", "thermal")


def test_all_expected_profiles_ship(profiles):
    assert set(EXPECTED_IDS) <= set(profiles)
    for pid in EXPECTED_IDS:
        make = profiles[pid].make
        assert (REPO / "hardware_profiles" / f"{make}_{pid}.toml").is_file()


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_every_number_is_cited(profiles, pid):
    prof: HardwareProfile = profiles[pid]
    data = prof.model_dump()
    for table in NUMERIC_TABLES:
        for key, value in data[table].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert f"{table}.{key}" in prof.sources, f"{pid}: {table}.{key} not cited"
    for fw in prof.firmware:
        assert f"firmware.{fw}" in prof.sources, f"{pid}: firmware.{fw} not cited"
    for text in prof.sources.values():
        assert text.strip(), "empty citation"


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_cited_shared_files_exist(profiles, pid):
    """A citation naming a ../shared file must name a file that exists."""
    shared = REPO.parent / "shared"
    for text in profiles[pid].sources.values():
        for rel in re.findall(r"\.\./shared/([\w./-]+\.(?:csv|json|md))", text):
            assert (shared / rel).is_file(), f"{pid} cites missing {rel}"


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_firmware_knobs_match_protocol_notes(profiles, pid):
    prof = profiles[pid]
    if prof.make == "antminer":
        stock = prof.firmware["antminer"]
        assert stock.driver == "antminer"
        assert not stock.power_limit
        assert not stock.power_percent
        assert set(stock.power_modes) >= {"normal", "sleep"}
        assert "high" not in stock.power_modes
        assert ("low" in stock.power_modes) == (stock.low_mode_fraction is not None)
        bos = prof.firmware["braiins"]
        assert bos.driver == "braiins"
        assert bos.power_limit
        assert not bos.restarts_on_power_limit
    else:
        wm = prof.firmware["whatsminer"]
        assert wm.driver == "whatsminer"
        assert wm.power_limit
        assert wm.power_percent
        assert wm.restarts_on_power_limit
        assert 360 <= wm.restart_s <= 600
        assert set(wm.power_modes) == {"normal", "low", "high", "sleep"}
        assert prof.power.max_w >= prof.rated.power_w


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_physical_consistency(profiles, pid):
    prof = profiles[pid]
    hw, clk = prof.hardware, prof.clock
    ideal = prof.expected_chips * hw.hashes_per_clock * clk.freq_mhz_default * 1e-6
    assert ideal == pytest.approx(prof.rated.hashrate_ths, rel=0.03)
    assert float(firmware_voltage(prof, clk.freq_mhz_default)) == pytest.approx(
        clk.voltage_v_default
    )
    assert prof.power.min_w < prof.rated.power_w <= prof.power.max_w * 1.0001
    assert prof.thermal.chip_temp_max_c > prof.thermal.board_temp_max_c
    # the mean unit at the default clock and 25 °C: rated hashrate, fans below 100 %,
    # boards held at the target temperature
    op = steady_state(mean_unit_params(prof), clk.freq_mhz_default, clk.voltage_v_default, 25.0)
    assert op.hashrate_ths == pytest.approx(ideal, rel=0.005)
    assert op.fan_fraction < 1.0
    assert max(op.board_temp_c) == pytest.approx(prof.thermal.board_temp_target_c, abs=0.5)
    if pid == "s19xp":
        # nameplate 3010 W vs the ePIC preset 3350 W at 482 MHz: the physics follows the
        # presets (calibration test); nameplate is ~10 % below them.
        assert op.power_w == pytest.approx(3350 * 485 / 482, rel=0.05)
    else:
        assert op.power_w == pytest.approx(prof.rated.power_w, rel=0.02)


def _fixture_models() -> list[str]:
    """Model strings real firmware reported in the shared fixtures."""
    out = []
    out.append(
        json.loads((FIXTURES / "antminer/v2020/version.json").read_text())["VERSION"][0]["Type"]
    )
    out.append(json.loads((FIXTURES / "antminer/v2020/system_info.json").read_text())["minertype"])
    out.append(json.loads((FIXTURES / "luxminer/v1/config.json").read_text())["CONFIG"][0]["Model"])
    out.append(json.loads((FIXTURES / "epic/v1/capabilities.json").read_text())["Model"])
    details = json.loads((FIXTURES / "braiins/v25_11/miner_details.json").read_text())
    out.append(details["miner_identity"]["miner_model"])
    info = json.loads((FIXTURES / "whatsminer/v3/get_device_info.json").read_text())
    out.append(info["msg"]["miner"]["type"])
    return out


def test_fixture_model_strings_resolve():
    want = {
        "Antminer S19 Pro": "s19pro",
        "Antminer S21": "s21",
        "Antminer S19k Pro": "s19kpro",
        "AntMiner S19 XP": "s19xp",
        "Antminer S19 XP": "s19xp",
        "M60S_VK40": "m60s",
    }
    models = _fixture_models()
    assert sorted(models) == sorted(want)
    for model in models:
        prof = find_profile(model)
        assert prof is not None, model
        assert prof.id == want[model], model
    assert find_profile("S19 Pro").id == "s19pro"
    assert find_profile("S19j Pro").id == "s19jpro"
    assert find_profile("M30S").id == "m30s"
    assert find_profile("M50").id == "m50"


def test_profile_files_are_toml_only():
    assert not [p for p in Path(REPO / "hardware_profiles").iterdir() if p.suffix != ".toml"]
