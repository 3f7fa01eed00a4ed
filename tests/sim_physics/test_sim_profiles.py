"""Every shipped hardware profile: schema, citations, firmware knobs, physical consistency."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.profiles import HardwareProfile, find_profile
from agent.simulator.clock import SimClock
from agent.simulator.physics import firmware_voltage, mean_unit_params, steady_state
from agent.simulator.unit import SimUnit
from tests.conftest import FIXTURES, REPO, SHARED
from tests.sim_physics.conftest import EXPECTED_IDS
from tests.sim_physics.test_sim_calibration import AMBIENT, TABLES, TOLERANCE

NUMERIC_TABLES = ("rated", "hardware", "clock", "power", "thermal")
#: What a citation must name: a shared document, data file or fixture, pyasic, a derivation
#: from other cited numbers, or the honest "engineering assumption".
CITATION_MARKERS = re.compile(
    r"landscape\.md|protocols\.md|\.\./shared/|pyasic|^derived|engineering assumption"
)


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
    for fw, knobs in data["firmware"].items():
        assert f"firmware.{fw}" in prof.sources, f"{pid}: firmware.{fw} not cited"
        for key, value in knobs.items():  # restart_s and the mode fractions
            if isinstance(value, int | float) and not isinstance(value, bool):
                cite = f"firmware.{fw}.{key}"
                assert cite in prof.sources, f"{pid}: {cite} = {value} not cited"
    for key, text in prof.sources.items():
        assert text.strip(), "empty citation"
        assert CITATION_MARKERS.search(text), f"{pid}: {key} names no source or assumption"


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_cited_shared_files_exist(profiles, pid):
    """A citation naming a ../shared file must name a file that exists."""
    for text in profiles[pid].sources.values():
        for rel in re.findall(r"\.\./shared/([\w./-]+\.(?:csv|json|md))", text):
            assert (SHARED / rel).is_file(), f"{pid} cites missing {rel} under {SHARED}"


def test_cited_files_are_looked_up_where_hashpilot_shared_points(tmp_path):
    """HASHPILOT_SHARED moves the shared tree: an empty one must fail the citation check."""
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/sim_physics/test_sim_profiles.py::test_cited_shared_files_exist",
        ],
        cwd=REPO,
        env=dict(os.environ, HASHPILOT_SHARED=str(tmp_path), OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 1, child.stdout + child.stderr
    assert f"under {tmp_path}" in child.stdout


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


# --------------------------------------------------------------------------- power bounds

#: The safe power bound may sit at most this far over the unit's stock power (the profiles'
#: engineering assumption: the S19j Pro overclock point, +10 %), plus the 5 W of rounding
#: to 10 W that the profiles use.
MAX_HEADROOM, ROUNDING_W = 0.10, 5.0
ANTMINERS = tuple(p for p in EXPECTED_IDS if not p.startswith("m"))


def _stock_power_w(prof: HardwareProfile) -> float:
    """Power at the stock clock: nameplate, or the physics' (S19 XP: the ePIC presets)."""
    clk = prof.clock
    op = steady_state(mean_unit_params(prof), clk.freq_mhz_default, clk.voltage_v_default, 25.0)
    return max(prof.rated.power_w, op.power_w)


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_max_w_is_a_safe_bound_not_the_top_overclock_preset(profiles, pid):
    prof = profiles[pid]
    assert prof.power.max_w <= _stock_power_w(prof) * (1 + MAX_HEADROOM) + ROUNDING_W
    assert prof.power.max_w >= prof.rated.power_w  # stock operation stays inside the bound


@pytest.mark.parametrize("pid", EXPECTED_IDS)
def test_power_bound_citations_match_their_arithmetic(profiles, pid):
    prof = profiles[pid]
    rated, bounds = prof.rated.power_w, prof.power
    low = prof.sources["power.min_w"]
    if "30 % of rated power" in low:
        assert "rounded up" in low or "nearest 10 W" in low, f"{pid}: min_w rounding unstated"
        if "rounded up" in low:
            assert bounds.min_w >= 0.3 * rated, f"{pid}: min_w {bounds.min_w} not rounded up"
        else:
            assert abs(bounds.min_w - 0.3 * rated) <= ROUNDING_W, f"{pid}: min_w {bounds.min_w}"
    high = prof.sources["power.max_w"]
    if high.startswith("engineering assumption: rated power +10 %"):
        assert abs(bounds.max_w - 1.1 * rated) <= ROUNDING_W, f"{pid}: max_w {bounds.max_w}"


@pytest.mark.parametrize("pid", ["s19kpro", "s19xp"])
def test_presets_above_the_safe_bound_still_simulate(profiles, make_unit, clock, pid):
    """The real tables' top overclocks exceed max_w yet stay inside the physics' envelope."""
    prof = profiles[pid]
    f, v, _th, w = max(TABLES[pid](), key=lambda point: point[3])
    assert w > prof.power.max_w  # the preset the agent may not request on its own
    assert f <= prof.clock.freq_mhz_max
    assert v <= prof.clock.voltage_v_max
    op = steady_state(mean_unit_params(prof), f, v, AMBIENT)
    assert op.power_w == pytest.approx(w, rel=TOLERANCE)
    unit = make_unit(pid, "braiins")
    unit.set_clock(f, v)  # Braiins manual clock: the firmware can run it
    assert unit.settings["freq_mhz"] == f


# --------------------------------------------------------------------------- restart times


@pytest.mark.parametrize("pid", ANTMINERS)
def test_stock_mode_switch_time_is_the_cited_one_and_the_simulator_reads_it(profiles, pid):
    prof = profiles[pid]
    stock = prof.firmware["antminer"]
    # landscape.md §2: "Antminer power-mode switch takes 10–20 s"; the profile holds 20 s
    assert stock.restart_s == 20.0
    assert "10–20 s" in prof.sources["firmware.antminer.restart_s"]
    clock = SimClock(speed=0)
    outages = [SimUnit(f"u{s}", prof, "antminer", s, clock).mode_switch_s for s in range(40)]
    assert min(outages) >= 10.0
    assert max(outages) <= 20.0
    assert max(outages) - min(outages) > 5.0  # drawn per unit, not one constant
    # a profile that says 40 s makes every unit's outage twice as long: nothing is hard-coded
    slow_knobs = stock.model_copy(update={"restart_s": 40.0})
    slow = prof.model_copy(update={"firmware": {**prof.firmware, "antminer": slow_knobs}})
    for seed in range(5):
        base = SimUnit("a", prof, "antminer", seed, clock).mode_switch_s
        assert SimUnit("b", slow, "antminer", seed, clock).mode_switch_s == pytest.approx(2 * base)
        bos = SimUnit("c", slow, "braiins", seed, clock)  # same hardware, bosminer restarts
        assert bos.mode_switch_s == pytest.approx(2 * base)
