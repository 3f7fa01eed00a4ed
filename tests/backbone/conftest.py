"""Fixtures for the backbone tests: a hardware profile and fake drivers."""

from __future__ import annotations

import pytest

from agent.profiles import HardwareProfile, find_profile


def _s19jpro() -> HardwareProfile:
    shipped = find_profile("S19j Pro", "antminer")
    if shipped is not None:
        return shipped
    # Rated figures from ../shared/data/asic_hashrate_bins_watts_asics_tools.csv
    # ("bitmain antminer s19j pro,104.0,3068.0"); 3 boards x 126 chips, 4 fans as in pyasic's
    # device model S19jPro. Clock, power and thermal bounds are placeholders these tests
    # never read (features use only rated figures, boards, chips and fans).
    return HardwareProfile.model_validate(
        {
            "id": "test_s19j_pro",
            "make": "antminer",
            "name": "S19j Pro",
            "rated": {"hashrate_ths": 104.0, "power_w": 3068.0},
            "hardware": {"boards": 3, "chips_per_board": 126, "fans": 4},
            "clock": {
                "freq_mhz_min": 1.0,
                "freq_mhz_max": 3.0,
                "freq_mhz_default": 2.0,
                "voltage_v_min": 1.0,
                "voltage_v_max": 3.0,
                "voltage_v_default": 2.0,
            },
            "power": {"min_w": 1.0, "max_w": 4000.0},
            "thermal": {
                "board_temp_target_c": 1.0,
                "board_temp_hot_c": 2.0,
                "board_temp_max_c": 3.0,
                "chip_temp_max_c": 4.0,
            },
            "firmware": {},
            "sources": {
                "rated.hashrate_ths": "shared/data/asic_hashrate_bins_watts_asics_tools.csv",
                "rated.power_w": "shared/data/asic_hashrate_bins_watts_asics_tools.csv",
                "hardware.chips_per_board": "pyasic device model S19jPro",
            },
        }
    )


@pytest.fixture(scope="session")
def profile_s19jpro() -> HardwareProfile:
    """The S19j Pro profile (shipped one if present)."""
    return _s19jpro()


def make_snapshot(miner_id: str, ts: float, *, hashrate: float = 100.0, boards: int = 3):
    """A plausible stock-Antminer snapshot (no power reading) at epoch ``ts``."""
    from datetime import UTC, datetime

    from agent.snapshot import BoardReading, MinerSnapshot, PoolReading

    return MinerSnapshot(
        miner_id=miner_id,
        host="127.0.0.1",
        ts=datetime.fromtimestamp(ts, UTC),
        make="antminer",
        model="S19j Pro",
        firmware="test",
        hashrate_ths=hashrate,
        fans_rpm=(5000, 5100, 5050, 4990),
        uptime_s=int(ts) % 100_000,
        hw_errors=int(ts) % 1000,
        accepted=int(ts) % 5000,
        rejected=3,
        boards=tuple(
            BoardReading(
                slot=s,
                hashrate_ths=hashrate / boards,
                board_temp_c=60.0 + s,
                chip_temp_c=75.0 + s,
                chips=126,
                expected_chips=126,
                freq_mhz=500.0,
            )
            for s in range(boards)
        ),
        pools=(PoolReading(url="stratum+tcp://127.0.0.1:3333", user="farm.w1", status="Alive"),),
    )


def make_cycle(started: float, miner_ids, *, down=(), profile=None):
    """A Cycle with a snapshot per miner and a gap for each miner in ``down``."""
    from agent.features.signals import flatten
    from agent.store import Cycle, Gap, MinerState

    snaps, gaps, states = [], [], []
    for i, mid in enumerate(miner_ids):
        ts = started + 0.01 * i
        if mid in down:
            gaps.append(Gap(mid, ts, "MinerTimeoutError", f"127.0.0.1: no answer in 5 s ({mid})"))
            states.append(
                MinerState(
                    mid,
                    "127.0.0.1",
                    state="down",
                    last_error_ts=ts,
                    last_error_class="MinerTimeoutError",
                    last_error="no answer",
                    failures=1,
                )
            )
        else:
            snap = make_snapshot(mid, ts)
            snaps.append((snap, flatten(snap, profile)))
            states.append(
                MinerState(
                    mid,
                    "127.0.0.1",
                    driver="antminer",
                    model="S19j Pro",
                    state="up",
                    last_success=ts,
                )
            )
    return Cycle(started=started, duration_s=0.5, snapshots=snaps, gaps=gaps, miners=states)


class FakeDriver:
    """A driver whose read() follows a script: snapshots, typed errors or a hang.

    ``script`` is a callable taking the call number and returning a snapshot, raising an
    exception, or returning the string ``"hang"`` (never answer).
    """

    def __init__(self, miner_id: str, script, *, delay_s: float = 0.0, model: str = "S19j Pro"):
        from agent.drivers.base import DriverConfig

        self.config = DriverConfig(
            host="127.0.0.1", driver="antminer", miner_id=miner_id, model=model
        )
        self.script = script
        self.delay_s = delay_s
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.started_at: list[float] = []
        self.closed = False

    async def read(self):
        import asyncio
        import time

        self.calls += 1
        self.started_at.append(time.monotonic())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            out = self.script(self.calls)
            if out == "hang":
                await asyncio.Event().wait()
            return out
        finally:
            self.active -= 1

    async def close(self) -> None:
        self.closed = True


def healthy(miner_id: str):
    """A script that always answers with a fresh snapshot."""
    import time

    return lambda _n: make_snapshot(miner_id, time.time())
