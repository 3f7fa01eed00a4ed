"""Train/serve parity of the miner model's health inputs.

Simulated units (frozen clock, loopback ports) are polled through the agent's real drivers
once a minute for an hour; each snapshot goes through the daemon's streaming features
(``agent.features.extract.MinerFeatures``) and then ``health_from_features``. The same
units' simulator readings go through ``central.fleetdata.health_features``, which builds the
training rows. Both must give the same health values within ``TOLERANCE``, and the same
inputs must be missing (what a firmware does not report).
"""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.credentials import load_credentials
from agent.drivers.base import DriverConfig
from agent.drivers.factory import make_driver
from agent.features.extract import FeatureSchema, MinerFeatures
from agent.inference.miner import (
    HEALTH_FEATURES,
    HEALTH_WINDOW,
    health_from_features,
    profile_features,
)
from agent.protocols.base import RetryPolicy
from agent.simulator.clock import SimClock
from agent.simulator.farm import Farm
from agent.transports.base import Timeouts
from central.fleetdata import BASELINE_S, HEALTH_WINDOW_S, health_features

#: One unit per firmware the fleet data uses, plus Whatsminer V2.
MIX = {
    "s19pro/antminer": 1,
    "s19jpro/braiins": 1,
    "m50/whatsminer_v3": 1,
    "m30s/whatsminer_v2": 1,
}
#: Poll spacing in simulated seconds (the daemon's default order of magnitude).
POLL_S = 60.0
#: Largest accepted |serve - train| per health input, and why (measured with MIX, seed 11):
#: hashrate ratio: 1-h mean of the reported (5 s, 1.5 % noise) hashrate vs the firmware's
#: 30-min average, measured <= 0.002 apart; boards and fans are counts (exact); hardware
#: errors: the mean of per-poll rates over the window's intervals vs one 1-h difference of
#: the counter, measured <= 1.7 %; chip rise per kW: 1-h means of chip temperature and power
#: vs the reading at the end of the hour, measured <= 0.6 %.
TOLERANCE = {
    "health_hashrate_ratio": ("abs", 0.01),
    "health_boards_alive_frac": ("abs", 1e-9),
    "health_fans_ok_frac": ("abs", 1e-9),
    "health_hw_errors_per_h": ("rel", 0.05),
    "health_chip_rise_per_kw": ("rel", 0.03),
}
FAST = Timeouts(connect_s=0.5, read_s=0.5, deadline_s=1.5)
RETRY = RetryPolicy(attempts=2, backoff_s=0.01, backoff_max_s=0.02)


def _close(kind: str, limit: float, served: float, trained: float) -> bool:
    if kind == "abs":
        return abs(served - trained) <= limit
    return abs(served - trained) <= limit * max(abs(trained), 1e-9)


async def test_daemon_features_map_onto_the_training_health_inputs(tmp_path: Path) -> None:
    farm = Farm(MIX, seed=11, ports_mode=True, clock=SimClock(speed=0), state_dir=tmp_path)
    await farm.start()
    drivers = []
    try:
        inventory = tomllib.loads(farm.write_inventory(tmp_path / "inventory.toml").read_text())
        faults = iter(("fan", "board", "chips", "fan+chips"))
        for m in inventory["miners"]:
            device = farm.device(m["id"])
            unit = device.unit
            fault = next(faults)
            if "fan" in fault:
                unit.fail_fan(0)
            if "board" in fault:
                unit.lose_board(1)
            if "chips" in fault:
                unit.degrade_chips(0, 9)
            config = DriverConfig(
                host=m["host"],
                driver=m["driver"],
                ports=dict(m["ports"]),
                api=m.get("api"),
                model=m.get("model"),
                credentials=m["credentials"],
                miner_id=m["id"],
            )
            creds = load_credentials(m["credentials"], Path(inventory["secrets_dir"]), m["driver"])
            known = Path(m["known_hosts"]) if "known_hosts" in m else None
            driver = make_driver(config, creds, known, timeouts=FAST, retry=RETRY)
            drivers.append((device, driver, MinerFeatures(FeatureSchema((HEALTH_WINDOW,)), POLL_S)))
        farm.clock.advance(BASELINE_S - HEALTH_WINDOW_S)  # past start-up, as in the fleet data
        for device, _, _ in drivers:
            device.changed()
        earlier = {device.unit_id: device.unit.reading() for device, _, _ in drivers}
        for _ in range(int(HEALTH_WINDOW_S / POLL_S) + 1):
            now = datetime.fromtimestamp(farm.clock.now(), UTC)
            for device, driver, feats in drivers:
                snap = await driver.read()
                # the daemon stamps a poll with its own clock; here that is the simulated one
                assert feats.add_snapshot(dataclasses.replace(snap, ts=now), device.profile)
            farm.clock.advance(POLL_S)
        checked = 0
        for device, _, feats in drivers:
            reading = device.unit.reading()
            trained = health_features(
                reading,
                device.profile.hardware.fans,
                firmware=device.firmware,
                earlier=earlier[device.unit_id],
            )
            served = health_from_features(
                {
                    **feats.values(),
                    **profile_features(device.profile),
                    "ambient_c": reading.env_temp_c,
                }
            )
            assert set(served) == set(trained) == set(HEALTH_FEATURES)
            missing = {k for k, v in served.items() if v is None}
            assert missing == {k for k, v in trained.items() if v is None}, device.firmware
            for name, (kind, limit) in TOLERANCE.items():
                if name in missing:
                    continue
                assert _close(kind, limit, served[name], trained[name]), (
                    device.firmware,
                    name,
                    served[name],
                    trained[name],
                )
                checked += 1
        assert checked >= 4 * len(TOLERANCE) - 2  # every input compared somewhere
    finally:
        for _, driver, _ in drivers:
            await driver.close()
        await farm.stop()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, None),
        ({f"samples_{HEALTH_WINDOW}": 3.0}, None),  # too few polls: unknown, not a guess
    ],
)
def test_too_little_history_is_unknown_health(extra, expected):
    feats = {
        f"hashrate_ratio_mean_{HEALTH_WINDOW}": 0.97,
        f"fan_ratio_min_{HEALTH_WINDOW}": 1.0,
        "boards": 3.0,
        **extra,
    }
    assert health_from_features(feats) == dict.fromkeys(HEALTH_FEATURES, expected)


def test_nan_is_missing_and_the_formulas_are_the_documented_ones():
    w = HEALTH_WINDOW
    feats = {
        f"samples_{w}": 60.0,
        f"hashrate_ratio_mean_{w}": 0.95,
        f"board_loss_mean_{w}": 1.0,
        f"fan_ratio_min_{w}": 0.75,
        f"hw_error_rate_mean_{w}": float("nan"),
        f"chip_temp_max_c_mean_{w}": 75.0,
        f"power_w_mean_{w}": 2500.0,
        "boards": 3.0,
        "ambient_c": 25.0,
    }
    assert health_from_features(feats) == {
        "health_hashrate_ratio": 0.95,
        "health_boards_alive_frac": pytest.approx(2 / 3),
        "health_fans_ok_frac": 0.75,
        "health_hw_errors_per_h": None,
        "health_chip_rise_per_kw": pytest.approx(20.0),
    }
    no_power = health_from_features({**feats, f"power_w_mean_{w}": float("nan")})
    assert no_power["health_chip_rise_per_kw"] is None
