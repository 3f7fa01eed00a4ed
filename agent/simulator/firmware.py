"""Simulated firmware behaviour: restart timings, power tuner, overheat protection, fault codes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.profiles import FirmwareKnobs, HardwareProfile
from agent.simulator.clock import Ramp
from agent.simulator.physics import (
    OperatingPoint,
    UnitParams,
    board_thermals,
    firmware_voltage,
    steady_state,
)

#: Firmware names the simulator accepts → the profile's firmware-knob family.
FIRMWARE_FAMILY = {
    "antminer": "antminer",
    "whatsminer_v2": "whatsminer",
    "whatsminer_v3": "whatsminer",
    "braiins": "braiins",
}

#: Stock Antminer power-mode switch takes 10–20 s (landscape.md §2, MOS docs). The profile's
#: ``firmware.antminer.restart_s`` holds the upper end; each unit draws its own outage
#: uniformly between this fraction of it and all of it (10 s of 20 s).
MODE_SWITCH_MIN_FRACTION = 0.5
#: A reboot takes 2–3 min (landscape.md §2: pool change triggers a 2–3 min reboot); per unit.
REBOOT_S = (120.0, 180.0)
#: Antminer hashrate ramp after the mining process starts. Engineering assumption.
ANTMINER_RAMP_S = 60.0
#: Whatsminer: part of ``restart_s`` during which btminer is down (0 W, RPC refused) before
#: the upfreq ramp. Engineering assumption (landscape.md §2: "drops to 0 W and restarts").
WHATSMINER_DOWN_S = 60.0
#: Transition for changes that need no restart (Braiins retune, power percent, Whatsminer
#: mode switch). Engineering assumption; Braiins "quick ramping" is configured in seconds
#: (landscape.md §4).
RETUNE_RAMP_S = 60.0
#: Over-temperature protection steps the clock down in LuxOS-sized 25 MHz steps
#: (landscape.md §4/§8c).
THROTTLE_STEP_MHZ = 25.0
#: Protection lowers the clock by at most this fraction before shutting down: S21 OTP
#: 490 → 440 MHz (landscape.md §2, ◐); with it the S21 shuts down near 48 °C ambient,
#: matching the reported "shutdown above 47 °C".
THROTTLE_MAX_FRACTION = 0.1
#: Frequency grid of the simulated firmware power tuner. Engineering assumption.
TUNER_STEP_MHZ = 5.0
#: Antminer "R:1 low hashrate" when below this share of expected after the ramp.
#: Engineering assumption (the code's threshold is not published).
LOW_HASHRATE_FRACTION = 0.8
#: MicroBT "high performance" mode needs ambient ≤ 28 °C (landscape.md §2); above it the
#: firmware raises code 610, "Environment temperature is too high for high performance mode"
#: (pyasic whatsminer error table), and runs the normal mode's clock and power ceiling
#: instead (engineering assumption: the mode is refused, not throttled, so a hot unit in
#: high mode never does worse than in normal mode).
HIGH_MODE_AMBIENT_MAX_C = 28.0
#: Firmware families that always regulate to a power limit, with the stock limit in force
#: until an operator sets one: Whatsminer reports a ``Power Limit`` on every unit and its
#: readings sit under it (fixtures whatsminer/v1 Power 3417 W, limit 3500 W; whatsminer/v2
#: 3200 W, limit 3300 W; whatsminer/v3 power-realtime 3156 W, power-limit 3600 W), and
#: adjust_power_limit "cannot exceed the unit's normal power" (protocols.md §3.3).
STOCK_LIMIT_FAMILIES = frozenset({"whatsminer"})
#: Regulation deadband: once the mining process has settled, the firmware re-runs its tuner
#: when ambient has moved its own steady power estimate more than this fraction above the
#: target (or a higher clock fits again). Engineering assumption: about one 5 MHz tuner step
#: (~0.8 % of power); the captures above sit 2–3 % under their limits. With the 0.5 % reading
#: noise, steady reported power stays under limit × 1.01 × (1 + 4σ) ≈ +3 % (the largest seen
#: over 40 units × a day per Whatsminer model is +1.7 %).
REGULATION_DEADBAND = 0.01

#: f_cap → (freq grid, safe voltages, firmware-estimated W), see FirmwareLogic.tuner_table.
TunerTable = Callable[[float], tuple[np.ndarray, np.ndarray, np.ndarray]]


class UnsupportedControl(ValueError):
    """Raised when a firmware does not offer the requested control on this model."""


def pick_highest_fitting(reported_w: np.ndarray, target_w: float) -> int:
    """Index of the highest grid clock whose estimated power fits, else the lowest clock."""
    fits = np.nonzero(reported_w <= target_w)[0]
    return int(fits.max()) if fits.size else 0


def mode_switch_max_s(profile: HardwareProfile) -> float:
    """Longest stock mode-switch outage for this model: the profile's Antminer ``restart_s``.

    Braiins units run on the same hardware and reuse it for stopping and starting bosminer;
    Whatsminer restarts use WHATSMINER_DOWN_S instead, so the value is unused there (0).
    """
    stock = profile.firmware.get("antminer")
    return stock.restart_s if stock is not None else 0.0


@dataclass(frozen=True, eq=False)
class FirmwareLogic:
    """What one firmware family decides on one unit: clocks, tuner picks, protection, codes.

    Stateless: every call gets the unit's current state (ambient, faults, settings) as
    arguments, so the owning :class:`agent.simulator.unit.SimUnit` stays the one place that
    holds state and takes the lock.
    """

    profile: HardwareProfile
    family: str
    knobs: FirmwareKnobs
    params: UnitParams

    def mode_freq(self, mode: str) -> float:
        """Clock the firmware runs in a power mode before any power limit."""
        c = self.profile.clock
        frac = 1.0
        if mode == "low":
            frac = self.knobs.low_mode_fraction or 1.0
        elif mode == "high":
            frac = self.knobs.high_mode_fraction or 1.0
        return float(np.clip(c.freq_mhz_default * frac, c.freq_mhz_min, c.freq_mhz_max))

    def tuner_grid(self, f_cap: float) -> np.ndarray:
        """Clocks the power tuner chooses from: TUNER_STEP_MHZ steps up to and with ``f_cap``."""
        c = self.profile.clock
        grid = np.arange(c.freq_mhz_min, f_cap + 1e-9, TUNER_STEP_MHZ)
        if grid.size == 0 or grid[-1] < f_cap - 1e-9:
            grid = np.append(grid, f_cap)  # the cap itself (a mode clock off the 5 MHz grid)
        return grid

    def tuner_table(
        self, f_cap: float, ambient_c: float, board_active: np.ndarray, fans_ok: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the power tuner's view: (freq grid, safe voltages, firmware-estimated W).

        The simulated tuner (Whatsminer power limit, Braiins power target) uses the
        firmware's own, biased power estimate, so a limit holds in reported watts, not at
        the wall (Foreman: 5–20 % apart, landscape.md §2).
        """
        grid = self.tuner_grid(f_cap)
        volts = firmware_voltage(self.profile, grid)
        th = board_thermals(self.params, grid, volts, ambient_c, board_active, fans_ok)
        return grid, volts, th.power_w * (1.0 + self.params.power_bias)

    def retune_due(
        self, settings: dict, ambient_c: float, board_active: np.ndarray, fans_ok: np.ndarray
    ) -> bool:
        """Whether power regulation must re-run the tuner for the running ``settings``.

        True when the running clock is above the tuner's cap (high mode refused as ambient
        rose), when the firmware's own steady estimate at the running clock is more than
        REGULATION_DEADBAND over the target (and a lower clock exists), or when the next
        higher tuner clock fits the target again. Only two points are estimated: the
        estimate rises with the clock, so this equals comparing with a full re-tune.
        """
        target = self.power_target(settings, ambient_c)
        if target is None:
            return False
        cur, volt = float(settings["freq_mhz"]), float(settings["voltage_v"])
        limited = self.operator_limit(settings) is not None
        mode = self.active_mode(settings.get("power_mode", "normal"), ambient_c)
        grid = self.tuner_grid(self.tuner_cap(mode, limited))
        if cur > grid[-1] + 1e-9:
            return True
        above = grid[grid > cur + 1e-9][:1]
        freqs = np.concatenate(([cur], above))
        volts = np.concatenate(([volt], firmware_voltage(self.profile, above)))
        th = board_thermals(self.params, freqs, volts, ambient_c, board_active, fans_ok)
        est = th.power_w * (1.0 + self.params.power_bias)
        over = est[0] > target * (1.0 + REGULATION_DEADBAND) and cur > grid[0] + 1e-9
        return bool(over or (above.size > 0 and est[1] <= target))

    def active_mode(self, mode: str, ambient_c: float) -> str:
        """Mode the firmware runs for the configured ``mode``: high needs a cool room.

        Above HIGH_MODE_AMBIENT_MAX_C a unit set to high runs the normal mode (and raises
        code 610, see :meth:`error_codes`).
        """
        return "normal" if mode == "high" and ambient_c > HIGH_MODE_AMBIENT_MAX_C else mode

    def tuner_cap(self, mode: str, limited: bool) -> float:
        """Highest clock the tuner may pick: the mode's clock, or f_max for a Braiins target."""
        if self.family == "braiins" and limited:
            return self.profile.clock.freq_mhz_max  # a Braiins power target may overclock
        return self.mode_freq(mode)

    @property
    def stock_limit_w(self) -> float | None:
        """Power limit in force when no operator has set one (None: the firmware has none).

        The profile's maximum power limit, i.e. the unit's normal power (protocols.md §3.3).
        """
        return self.profile.power.max_w if self.family in STOCK_LIMIT_FAMILIES else None

    def stock_limit_for(self, mode: str) -> float | None:
        """Stock power ceiling the firmware regulates to in ``mode`` (None: it has none).

        High mode raises the clock cap and this ceiling by the same ``high_mode_fraction``
        (engineering assumption, cited in the profiles). The high grid has a clock within one
        5 MHz step above every normal pick, whose estimate is far less than 10 % higher, so
        the tuner never picks a lower clock than in normal mode and high mode never yields
        less hashrate unless protection throttles. ``Power Limit`` still shows the
        configured limit (the profile's max_w), as the agent's knob bounds expect.
        """
        base = self.stock_limit_w
        if base is None or mode != "high":
            return base
        return base * (self.knobs.high_mode_fraction or 1.0)

    def operator_limit(self, settings: dict) -> float | None:
        """Power limit an operator set through the API (None when none is in force)."""
        return settings.get("power_limit_w") if settings.get("limit_active", True) else None

    def power_target(self, settings: dict, ambient_c: float) -> float | None:
        """Firmware-estimated W the tuner regulates to, or None when the tuner is idle.

        The operator's limit, else the stock ceiling of the running mode, times the power
        percent; a Braiins unit with no target scales a percent from rated power. None while
        not hashing or on a direct (manual) clock.
        """
        if not settings.get("mining", True) or settings.get("power_mode") == "sleep":
            return None
        if settings.get("clock_manual"):
            return None
        limit = self.operator_limit(settings)
        if limit is None:
            limit = self.stock_limit_for(
                self.active_mode(settings.get("power_mode", "normal"), ambient_c)
            )
        pct = float(settings.get("power_percent", 100.0))
        base = limit if limit is not None else (self.profile.rated.power_w if pct < 100 else None)
        return None if base is None else float(base) * pct / 100.0

    def resolve(
        self, settings: dict, tuner_table: TunerTable, ambient_c: float
    ) -> tuple[float, float, bool]:
        """Return (freq, voltage, hashing) the firmware would run for ``settings``.

        ``tuner_table`` gives the tuner's view for a clock cap; it is called only when a
        power target is in force (an operator's or the stock limit, or a power percent).
        The tuner never clocks above the running mode's clock unless an operator's Braiins
        target allows it, so an unbinding stock limit leaves the mode clock as it is.
        """
        configured = settings.get("power_mode", "normal")
        if not settings.get("mining", True) or configured == "sleep":
            return 0.0, 0.0, False
        if settings.get("clock_manual"):
            return float(settings["freq_mhz"]), float(settings["voltage_v"]), True
        mode = self.active_mode(configured, ambient_c)
        target = self.power_target(settings, ambient_c)
        if target is None:
            f = self.mode_freq(mode)
            return f, float(firmware_voltage(self.profile, f)), True
        limited = self.operator_limit(settings) is not None
        grid, volts, reported = tuner_table(self.tuner_cap(mode, limited))
        i = pick_highest_fitting(reported, target)
        return float(grid[i]), float(volts[i]), True

    def protect(
        self,
        freq: float,
        volt: float,
        amb: float,
        board_active: np.ndarray,
        boards_ok: np.ndarray,
        dead: np.ndarray,
        fans_ok: np.ndarray,
    ) -> tuple[OperatingPoint | None, bool]:
        """Return (steady point after over-temperature protection or None, throttled).

        Protection steps the clock down in THROTTLE_STEP_MHZ steps at the same voltage (at
        most THROTTLE_MAX_FRACTION) until the hottest board is at or below the profile's hot
        temperature; if the deepest step leaves a board above the danger (max) temperature
        the unit stops hashing, and resumes once it is cool enough (no latch).
        """
        th_prof = self.profile.thermal
        floor = max(self.profile.clock.freq_mhz_min, freq * (1.0 - THROTTLE_MAX_FRACTION))
        cands = (
            np.arange(freq, floor - 1e-9, -THROTTLE_STEP_MHZ) if freq > floor else np.array([freq])
        )
        if cands[-1] > floor:
            cands = np.append(cands, floor)
        th = board_thermals(
            self.params, cands, np.full(cands.shape, volt), amb, board_active, fans_ok
        )
        hottest = th.board_temp_c.max(axis=1)
        ok = np.nonzero(hottest <= th_prof.board_temp_hot_c)[0]
        if ok.size:
            i = int(ok[0])
        elif hottest[-1] <= th_prof.board_temp_max_c:
            i = len(cands) - 1
        else:
            return None, True
        throttled = i > 0 or not ok.size
        op = steady_state(
            self.params,
            float(cands[i]),
            volt,
            amb,
            tuple(boards_ok),
            dead,
            tuple(fans_ok),
        )
        return (dataclasses.replace(op, throttled=True) if throttled else op), throttled

    def error_codes(
        self,
        op: OperatingPoint | None,
        throttled: bool,
        shutdown: bool,
        amb: float,
        hashrate: float,
        expected: float,
        t: float,
        *,
        power_mode: str,
        ramp: Ramp,
        boards_ok: np.ndarray,
        dead: np.ndarray,
        fans_ok: np.ndarray,
    ) -> tuple[str, ...]:
        """Vendor-style fault codes (landscape.md §8d; pyasic whatsminer error table)."""
        codes: list[str] = []
        nb = self.profile.hardware.boards
        if self.family == "whatsminer":
            codes += [f"11{i}" for i in range(min(2, self.profile.hardware.fans)) if not fans_ok[i]]
            codes += [f"53{i}" for i in range(nb) if not boards_ok[i]]
            codes += [f"55{i}" for i in range(nb) if boards_ok[i] and dead[i].any()]
            if op is not None and throttled:
                codes.append(f"35{int(np.argmax(op.board_temp_c))}")
            if shutdown:
                codes.append("360")
            if amb > self.profile.thermal.ambient_max_c:
                codes.append("600")
            if power_mode == "high" and amb > HIGH_MODE_AMBIENT_MAX_C:
                codes.append("610")
        else:
            if not boards_ok.all():
                codes.append("J0:8")
            codes += [f"J{i}:2" for i in range(nb) if boards_ok[i] and dead[i].any()]
            if throttled or shutdown:
                codes.append("P:1")
            ramped = ramp.at(t) >= 1.0
            if (
                op is not None
                and ramped
                and expected > 0
                and hashrate < LOW_HASHRATE_FRACTION * expected
            ):
                codes.append("R:1")
        return tuple(codes)
