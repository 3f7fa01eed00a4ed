"""One simulated miner: hidden physics plus simulated firmware behaviour, read lazily.

The protocol servers in ``agent.simulator.servers`` call this API; nothing here knows about
wire formats. State changes only on commands and injected events; a reading is computed on
request at ``clock.now()`` (cached per simulated second) and cumulative counters are closed-form
integrals over piecewise segments, so nothing ticks and idle units cost nothing.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from dataclasses import dataclass

import numpy as np
import structlog

from agent.profiles import FirmwareKnobs, HardwareProfile
from agent.simulator.clock import Ramp, Segment, SimClock, gaussian_noise
from agent.simulator.physics import (
    CONTROL_W,
    FAN_MIN_FRACTION,
    OperatingPoint,
    UnitParams,
    board_thermals,
    draw_params,
    firmware_voltage,
    steady_state,
)

log = structlog.get_logger(__name__)

#: Firmware names the simulator accepts → the profile's firmware-knob family.
FIRMWARE_FAMILY = {
    "antminer": "antminer",
    "whatsminer_v2": "whatsminer",
    "whatsminer_v3": "whatsminer",
    "braiins": "braiins",
}

#: Stock Antminer power-mode switch takes 10–20 s (landscape.md §2, MOS docs); drawn per unit.
ANTMINER_MODE_SWITCH_S = (10.0, 20.0)
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
#: Relative noise of the 5-second hashrate: fixtures show 5 s vs average −1.1 % (S19 Pro,
#: antminer/v2020) and −1.8 % (S19k Pro, luxminer/v1).
HASHRATE_5S_NOISE = 0.015
#: Relative noise of the firmware power reading. Engineering assumption.
POWER_READING_NOISE = 0.005
#: Pool share difficulty: ePIC S19 XP fixture session difficulty 262144 (epic/v1/summary.json).
POOL_DIFFICULTY = 262144.0
#: Rejected share fraction: S19 Pro fixture, 11 rejected of 4068 (antminer/v2020/summary.json).
REJECT_FRACTION = 0.0027
#: Antminer "R:1 low hashrate" when below this share of expected after the ramp.
#: Engineering assumption (the code's threshold is not published).
LOW_HASHRATE_FRACTION = 0.8
#: Relative change of the protected steady hashrate that starts a new counter segment.
#: Small enough to follow a 25 MHz throttle step (~4–10 %), large enough to ignore the
#: sub-percent leakage drift of the day/night swing.
RESEGMENT_TOLERANCE = 0.01
#: MicroBT "high performance" mode needs ambient ≤ 28 °C (landscape.md §2); above it the
#: firmware raises code 610 (pyasic whatsminer error table).
HIGH_MODE_AMBIENT_MAX_C = 28.0
#: Window of the ``hashrate_30m`` reading, s.
WINDOW_30M_S = 1800.0
#: Closed segments older than this are folded into totals and dropped.
SEGMENT_KEEP_S = WINDOW_30M_S
_DIFF1_HASHES = 2.0**32


class UnsupportedControl(ValueError):
    """Raised when a firmware does not offer the requested control on this model."""


@dataclass(frozen=True)
class BoardState:
    """One hashboard as firmware would report it."""

    index: int
    hashrate_ths: float
    chips_total: int
    chips_ok: int
    chip_status: str
    freq_mhz: float
    voltage_v: float
    board_temp_c: float
    chip_temp_c: float
    inlet_temp_c: float
    outlet_temp_c: float
    hw_errors: int
    alive: bool


@dataclass(frozen=True)
class UnitReading:
    """Everything a firmware could report at one instant."""

    ts: float
    elapsed_s: int
    is_mining: bool
    power_mode: str
    power_limit_w: float | None
    hashrate_5s_ths: float
    hashrate_avg_ths: float
    hashrate_30m_ths: float
    expected_hashrate_ths: float
    power_true_w: float
    power_reported_w: float
    env_temp_c: float
    fans_rpm: tuple[int, ...]
    boards: tuple[BoardState, ...]
    accepted: int
    rejected: int
    hw_errors: int
    error_codes: tuple[str, ...]
    throttled: bool


@dataclass(frozen=True, eq=False)
class FaultState:
    """Injected hardware faults of one unit (a snapshot)."""

    boards_ok: tuple[bool, ...]
    #: bool (boards, chips)
    dead_chips: np.ndarray
    fans_ok: tuple[bool, ...]
    ambient_offset_c: float

    @property
    def alive_chips(self) -> np.ndarray:
        """Bool (boards, chips): chip present, powered and not dead."""
        return np.asarray(self.boards_ok)[:, None] & ~self.dead_chips


class SimUnit:
    """A simulated miner: hidden physics, firmware controls, lazy readings."""

    def __init__(
        self, unit_id: str, profile: HardwareProfile, firmware: str, seed: int, clock: SimClock
    ) -> None:
        if firmware not in FIRMWARE_FAMILY:
            raise ValueError(
                f"unknown firmware {firmware!r}; expected one of {sorted(FIRMWARE_FAMILY)}"
            )
        family = FIRMWARE_FAMILY[firmware]
        if family not in profile.firmware:
            raise ValueError(f"profile {profile.id} has no {family!r} firmware knobs")
        self.unit_id = unit_id
        self.profile = profile
        self.firmware = firmware
        self.family = family
        self.knobs: FirmwareKnobs = profile.firmware[family]
        self.seed = seed
        self.clock = clock
        self.params: UnitParams = draw_params(profile, seed)
        rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x51A7])
        self._mode_switch_s = float(rng.uniform(*ANTMINER_MODE_SWITCH_S))
        self._reboot_s = float(rng.uniform(*REBOOT_S))
        self._lock = threading.RLock()
        nb, nc = profile.hardware.boards, profile.hardware.chips_per_board
        self._boards_ok = np.ones(nb, dtype=bool)
        self._dead = np.zeros((nb, nc), dtype=bool)
        self._fans_ok = np.ones(profile.hardware.fans, dtype=bool)
        self._ambient_offset = 0.0
        clk = profile.clock
        self._settings: dict = {
            "power_limit_w": profile.power.max_w if family == "whatsminer" else None,
            "power_mode": "normal",
            "power_percent": 100.0,
            "mining": True,
            "freq_mhz": clk.freq_mhz_default,
            "voltage_v": clk.voltage_v_default,
        }
        self._limit_active = False
        self._clock_manual = False
        self._version = 0
        self._cache: tuple[int, int, UnitReading] | None = None
        self._op_cache: tuple[tuple, tuple[OperatingPoint | None, bool]] | None = None
        now = clock.now()
        # the unit has been up and mining for a while when the simulation starts
        uptime = float(rng.uniform(3600.0, 86400.0))
        self._web_down_until = -math.inf
        self._proc_start = now - uptime
        self._ramp = Ramp(t_up=self._proc_start, ramp_s=0.0, frac0=0.0)
        self._closed_board = np.zeros(nb)
        self._closed_hw = np.zeros(nb)
        self._recent: list[tuple[Segment, float]] = []  # closed (segment, t_end) within 30 min
        self._segment = Segment(
            self._proc_start, self._ramp, *self._segment_rates(self._proc_start)
        )

    # ------------------------------------------------------------------ public state
    @property
    def settings(self) -> dict:
        """Current firmware configuration (a copy)."""
        with self._lock:
            return dict(self._settings, clock_manual=self._clock_manual)

    @property
    def limit_active(self) -> bool:
        """Whether a power limit/target set through the API is in force."""
        return self._limit_active

    def faults(self) -> FaultState:
        """Copy of the injected hardware faults."""
        with self._lock:
            return FaultState(
                boards_ok=tuple(bool(x) for x in self._boards_ok),
                dead_chips=self._dead.copy(),
                fans_ok=tuple(bool(x) for x in self._fans_ok),
                ambient_offset_c=self._ambient_offset,
            )

    def board_active(self) -> np.ndarray:
        """Fraction of each board's chips that are powered (0 for a lost board)."""
        return (~self._dead).mean(axis=1) * self._boards_ok

    def ambient_c(self, t: float | None = None) -> float:
        """Room temperature at ``t`` (default now), including any injected offset."""
        return self.params.ambient_at(self.clock.now() if t is None else t, self._ambient_offset)

    def is_up(self) -> bool:
        """Return False while the mining process restarts or the unit reboots."""
        t = self.clock.now()
        return t >= self._web_down_until and t >= self._ramp.t_up

    def web_up(self) -> bool:
        """Web/control plane up (False only during a full reboot)."""
        return self.clock.now() >= self._web_down_until

    # ------------------------------------------------------------------ controls
    def set_power_limit(self, watts: float) -> None:
        """Power target in W; the firmware tuner picks the highest clock that fits."""
        if not self.knobs.power_limit:
            raise UnsupportedControl(f"{self.firmware} on {self.profile.id} has no power limit")
        p = self.profile.power
        if not (math.isfinite(watts) and p.min_w <= watts <= p.max_w):
            raise ValueError(f"power limit {watts} W outside [{p.min_w}, {p.max_w}]")
        with self._lock:
            self._settings["power_limit_w"] = float(watts)
            self._limit_active = True
            self._clock_manual = False
            if self.knobs.restarts_on_power_limit:
                self._settings["power_percent"] = 100.0  # temporary settings die with the process
                self._apply(restart=True)
            else:
                self._apply(restart=False)
        log.debug("sim_power_limit", unit=self.unit_id, watts=watts)

    def clear_power_limit(self) -> None:
        """Remove the power target (Whatsminer "99999" reset; Braiins default)."""
        if not self.knobs.power_limit:
            raise UnsupportedControl(f"{self.firmware} on {self.profile.id} has no power limit")
        with self._lock:
            self._settings["power_limit_w"] = (
                self.profile.power.max_w if self.family == "whatsminer" else None
            )
            self._limit_active = False
            self._apply(restart=self.knobs.restarts_on_power_limit)

    def set_power_percent(self, pct: float) -> None:
        """Temporary power reduction to ``pct`` % of the limit (or rated); no restart."""
        if not self.knobs.power_percent:
            raise UnsupportedControl(f"{self.firmware} on {self.profile.id} has no power percent")
        if not (math.isfinite(pct) and 0 < pct <= 100):
            raise ValueError(f"power percent {pct} outside (0, 100]")
        with self._lock:
            self._settings["power_percent"] = float(pct)
            self._clock_manual = False
            self._apply(restart=False)

    def set_power_mode(self, mode: str) -> None:
        """normal/low/high/sleep, where the firmware offers it."""
        if mode not in self.knobs.power_modes:
            raise ValueError(
                f"power mode {mode!r} not offered by {self.firmware} on {self.profile.id}"
            )
        with self._lock:
            if mode == self._settings["power_mode"]:
                return
            waking = self._settings["power_mode"] == "sleep"
            self._settings["power_mode"] = mode
            self._clock_manual = False
            # stock Antminer restarts bmminer on every mode write (10–20 s); Whatsminer mode
            # switches are applied live (engineering assumption) except waking from sleep,
            # which powers the boards on like power_on.
            if self.family == "antminer":
                self._apply(restart=True, down_s=self._mode_switch_s)
            elif waking:
                self._apply(restart=True)
            else:
                self._apply(restart=False)

    def set_mining(self, on: bool) -> None:
        """power_on / power_off: stop hashing (control plane stays up) or resume."""
        with self._lock:
            if bool(on) == self._settings["mining"]:
                return
            self._settings["mining"] = bool(on)
            if on:
                self._apply(
                    restart=True,
                    down_s=self._mode_switch_s if self.family != "whatsminer" else None,
                )
            else:
                self._apply(restart=False, ramp_s=0.0)

    def set_clock(self, freq_mhz: float, voltage_v: float, *, force: bool = False) -> None:
        """Direct board clock and voltage (Braiins manual tuning; ``force`` for benchmarks)."""
        if self.family != "braiins" and not force:
            raise UnsupportedControl(f"{self.firmware} does not allow direct V/f")
        c = self.profile.clock
        if not (c.freq_mhz_min <= freq_mhz <= c.freq_mhz_max):
            raise ValueError(
                f"frequency {freq_mhz} MHz outside [{c.freq_mhz_min}, {c.freq_mhz_max}]"
            )
        if not (c.voltage_v_min <= voltage_v <= c.voltage_v_max):
            raise ValueError(
                f"voltage {voltage_v} V outside [{c.voltage_v_min}, {c.voltage_v_max}]"
            )
        with self._lock:
            self._clock_manual = True
            self._settings["freq_mhz"] = float(freq_mhz)
            self._settings["voltage_v"] = float(voltage_v)
            self._apply(restart=False)

    def reboot(self) -> None:
        """Full reboot: web and mining process down, then a fresh process ramps up."""
        with self._lock:
            now = self.clock.now()
            self._web_down_until = now + self._reboot_s
            self._settings["power_percent"] = 100.0
            self._apply(restart=True, down_s=self._reboot_s)
        log.debug("sim_reboot", unit=self.unit_id)

    # ------------------------------------------------------------------ fault injection
    def fail_fan(self, index: int) -> None:
        """Stop fan ``index``."""
        self._check_index(index, self.profile.hardware.fans, "fan")
        with self._lock:
            self._fans_ok[index] = False
            self._apply(restart=False, ramp_s=0.0)

    def lose_board(self, index: int) -> None:
        """Hashboard ``index`` disappears (no power, no hashes)."""
        self._check_index(index, self.profile.hardware.boards, "board")
        with self._lock:
            self._boards_ok[index] = False
            self._apply(restart=False, ramp_s=0.0)

    def degrade_chips(self, board: int, count: int) -> None:
        """Kill ``count`` more chips on ``board`` (the weakest working ones first)."""
        self._check_index(board, self.profile.hardware.boards, "board")
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._lock:
            q = np.where(self._dead[board], np.inf, self.params.chip_quality[board])
            for idx in np.argsort(q, kind="stable")[:count]:
                self._dead[board, idx] = True
            self._apply(restart=False, ramp_s=0.0)

    def set_ambient_offset(self, delta_c: float) -> None:
        """Shift this unit's room temperature by ``delta_c`` (heat wave, blocked intake)."""
        if not math.isfinite(delta_c):
            raise ValueError("ambient offset must be finite")
        with self._lock:
            self._ambient_offset = float(delta_c)
            self._apply(restart=False, ramp_s=0.0)

    def repair(self) -> None:
        """Clear every injected fault (fans, boards, chips, ambient offset)."""
        with self._lock:
            self._fans_ok[:] = True
            self._boards_ok[:] = True
            self._dead[:] = False
            self._ambient_offset = 0.0
            self._apply(restart=False, ramp_s=0.0)

    @staticmethod
    def _check_index(i: int, n: int, what: str) -> None:
        if not 0 <= i < n:
            raise ValueError(f"{what} index {i} outside 0..{n - 1}")

    # ------------------------------------------------------------------ firmware logic
    def mode_freq(self, mode: str) -> float:
        """Clock the firmware runs in a power mode before any power limit."""
        c = self.profile.clock
        frac = 1.0
        if mode == "low":
            frac = self.knobs.low_mode_fraction or 1.0
        elif mode == "high":
            frac = self.knobs.high_mode_fraction or 1.0
        return float(np.clip(c.freq_mhz_default * frac, c.freq_mhz_min, c.freq_mhz_max))

    def tuner_table(self, f_cap: float, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the power tuner's view: (freq grid, safe voltages, firmware-estimated W).

        The simulated tuner (Whatsminer power limit, Braiins power target) uses the
        firmware's own, biased power estimate, so a limit holds in reported watts, not at
        the wall (Foreman: 5–20 % apart, landscape.md §2).
        """
        c = self.profile.clock
        grid = np.arange(c.freq_mhz_min, f_cap + 1e-9, TUNER_STEP_MHZ)
        volts = firmware_voltage(self.profile, grid)
        th = board_thermals(
            self.params, grid, volts, self.ambient_c(t), self.board_active(), self._fans_ok
        )
        return grid, volts, th.power_w * (1.0 + self.params.power_bias)

    def tuner_cap(self, mode: str, limited: bool) -> float:
        """Highest clock the tuner may pick: the mode's clock, or f_max for a Braiins target."""
        if self.family == "braiins" and limited:
            return self.profile.clock.freq_mhz_max  # a Braiins power target may overclock
        return self.mode_freq(mode)

    def resolve(self, settings: dict, t: float | None = None) -> tuple[float, float, bool]:
        """Return (freq, voltage, hashing) the firmware would run for ``settings`` at ``t``."""
        t = self.clock.now() if t is None else t
        mode = settings.get("power_mode", "normal")
        if not settings.get("mining", True) or mode == "sleep":
            return 0.0, 0.0, False
        if settings.get("clock_manual"):
            return float(settings["freq_mhz"]), float(settings["voltage_v"]), True
        limit = settings.get("power_limit_w") if settings.get("limit_active", True) else None
        pct = float(settings.get("power_percent", 100.0))
        base = limit if limit is not None else (self.profile.rated.power_w if pct < 100 else None)
        if base is None:
            f = self.mode_freq(mode)
            return f, float(firmware_voltage(self.profile, f)), True
        grid, volts, reported = self.tuner_table(self.tuner_cap(mode, limit is not None), t)
        i = pick_highest_fitting(reported, base * pct / 100.0)
        return float(grid[i]), float(volts[i]), True

    def protected_point(
        self, freq: float, volt: float, t: float
    ) -> tuple[OperatingPoint | None, bool]:
        """Return (steady point after over-temperature protection or None, throttled).

        Protection steps the clock down in THROTTLE_STEP_MHZ steps at the same voltage (at
        most THROTTLE_MAX_FRACTION) until the hottest board is at or below the profile's hot
        temperature; if the deepest step leaves a board above the danger (max) temperature
        the unit stops hashing, and resumes once it is cool enough (no latch).
        Cached per state version and 0.1 °C of ambient (ambient moves slowly).
        """
        amb = self.ambient_c(t)
        key = (self._version, freq, volt, round(amb, 1))
        if self._op_cache is not None and self._op_cache[0] == key:
            return self._op_cache[1]
        result = self._protect(freq, volt, amb)
        self._op_cache = (key, result)
        return result

    def _protect(self, freq: float, volt: float, amb: float) -> tuple[OperatingPoint | None, bool]:
        th_prof = self.profile.thermal
        floor = max(self.profile.clock.freq_mhz_min, freq * (1.0 - THROTTLE_MAX_FRACTION))
        cands = (
            np.arange(freq, floor - 1e-9, -THROTTLE_STEP_MHZ) if freq > floor else np.array([freq])
        )
        if cands[-1] > floor:
            cands = np.append(cands, floor)
        th = board_thermals(
            self.params, cands, np.full(cands.shape, volt), amb, self.board_active(), self._fans_ok
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
            tuple(self._boards_ok),
            self._dead,
            tuple(self._fans_ok),
        )
        return (dataclasses.replace(op, throttled=True) if throttled else op), throttled

    def _current_settings(self) -> dict:
        return dict(
            self._settings, clock_manual=self._clock_manual, limit_active=self._limit_active
        )

    def _hashing(self) -> bool:
        return bool(self._settings["mining"]) and self._settings["power_mode"] != "sleep"

    def _segment_rates(self, t0: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Re-resolve the firmware clock for the current settings; steady board rates at t0."""
        freq, volt, hashing = self.resolve(self._current_settings(), t0)
        if hashing and not self._clock_manual:
            self._settings["freq_mhz"], self._settings["voltage_v"] = freq, volt
        op = self.protected_point(freq, volt, t0)[0] if hashing else None
        if op is None:
            zeros = (0.0,) * self.profile.hardware.boards
            return zeros, zeros
        return op.board_hashrate_ths, op.board_hw_error_rate

    def _apply(
        self, *, restart: bool, down_s: float | None = None, ramp_s: float | None = None
    ) -> None:
        """Close the running segment at now and open one for the new state."""
        now = self.clock.now()
        self._version += 1  # before any physics, so no cached point of the old state is reused
        old_rate = sum(self._segment.board_ths) * self._segment.ramp.at(now)
        self._close_segment(now)
        if restart:
            if self.family == "whatsminer":
                down = WHATSMINER_DOWN_S if down_s is None else down_s
                ramp_len = max(0.0, self.knobs.restart_s - WHATSMINER_DOWN_S)
            else:
                down = self._mode_switch_s if down_s is None else down_s
                ramp_len = ANTMINER_RAMP_S
            self._proc_start = now + down
            self._ramp = Ramp(t_up=now + down, ramp_s=ramp_len, frac0=0.0)
            self._closed_board[:] = 0.0
            self._closed_hw[:] = 0.0
            self._recent.clear()
        board_ths, board_hw = self._segment_rates(now)
        if not restart and now >= self._ramp.t_up:
            new_rate = sum(board_ths)
            r = RETUNE_RAMP_S if ramp_s is None else ramp_s
            if r <= 0 or new_rate <= 0:
                self._ramp = Ramp(t_up=now, ramp_s=0.0, frac0=1.0)
            else:
                self._ramp = Ramp(
                    t_up=now, ramp_s=r, frac0=float(np.clip(old_rate / new_rate, 0.0, 2.0))
                )
        self._segment = Segment(now, self._ramp, board_ths, board_hw)

    def _resegment_if_drifted(self, op: OperatingPoint | None, t: float) -> None:
        """Start a new counter segment when protection changed the steady rate since the last.

        Ambient swings move units in and out of over-temperature protection without any
        command; counters follow from the first reading that sees the change.
        """
        seg_rate = sum(self._segment.board_ths)
        rate = 0.0 if op is None else op.hashrate_ths
        if abs(rate - seg_rate) <= RESEGMENT_TOLERANCE * max(seg_rate, rate, 1e-9):
            return
        self._close_segment(t)
        zeros = (0.0,) * self.profile.hardware.boards
        ths = zeros if op is None else op.board_hashrate_ths
        hw = zeros if op is None else op.board_hw_error_rate
        self._segment = Segment(t, self._ramp, ths, hw)

    def _close_segment(self, t_end: float) -> None:
        seg = self._segment
        ms = seg.hash_s(seg.t0, t_end)
        ths = np.asarray(seg.board_ths)
        self._closed_board += ths * ms
        self._closed_hw += ths * np.asarray(seg.board_hw) * ms
        self._recent.append((seg, t_end))
        self._recent = [(s, e) for s, e in self._recent if e > t_end - SEGMENT_KEEP_S]

    # ------------------------------------------------------------------ reading
    def reading(self) -> UnitReading:
        """Firmware-visible state at clock.now(), cached per simulated second."""
        with self._lock:
            t = self.clock.now()
            tick = math.floor(t)
            if (
                self._cache is not None
                and self._cache[0] == tick
                and self._cache[1] == self._version
            ):
                return self._cache[2]
            r = self._compute(t)
            self._cache = (tick, self._version, r)
            return r

    def _compute(self, t: float) -> UnitReading:
        prof, nb = self.profile, self.profile.hardware.boards
        amb = self.ambient_c(t)
        up = t >= self._web_down_until and t >= self._ramp.t_up
        freq, volt, hashing = (
            self._settings["freq_mhz"],
            self._settings["voltage_v"],
            self._hashing(),
        )
        op, throttled, shutdown = None, False, False
        if up and hashing:
            op, throttled = self.protected_point(freq, volt, t)
            shutdown = op is None
            self._resegment_if_drifted(op, t)
        m = self._ramp.at(t) if op is not None else 0.0
        idle_rpm = tuple(
            round(FAN_MIN_FRACTION * r) if ok else 0
            for r, ok in zip(self.params.fan_rpm_max, self._fans_ok, strict=True)
        )
        idle_w = CONTROL_W + (
            self._fans_ok.sum() * self.params.coeffs.fan_w_max * FAN_MIN_FRACTION**3 if up else 0.0
        )
        if op is not None:
            warm = min(m, 1.0)
            power = idle_w + (op.power_w - idle_w) * m
            fans = op.fans_rpm
            temps = [
                tuple(amb + (x - amb) * warm for x in arr)
                for arr in (op.board_temp_c, op.chip_temp_c, op.inlet_temp_c, op.outlet_temp_c)
            ]
            board_h = [h * m for h in op.board_hashrate_ths]
            chip_ok = op.chip_ok
        else:
            power, fans = idle_w, idle_rpm if up else (0,) * prof.hardware.fans
            temps = [(amb,) * nb] * 4
            board_h = [0.0] * nb
            chip_ok = self._boards_ok[:, None] & ~self._dead
        hashrate = sum(board_h)
        noise = gaussian_noise(self.seed, math.floor(t), 1)
        h5 = max(0.0, hashrate * (1.0 + HASHRATE_5S_NOISE * noise))
        p_rep = (
            power
            * (1.0 + self.params.power_bias)
            * (1.0 + POWER_READING_NOISE * gaussian_noise(self.seed, math.floor(t), 2))
        )

        # counters since process start (closed segments + running one), closed form
        seg = self._segment
        ms = seg.hash_s(seg.t0, t)
        ths = np.asarray(seg.board_ths)
        board_ths_s = self._closed_board + ths * ms
        board_hw_hashes = (
            (self._closed_hw + ths * np.asarray(seg.board_hw) * ms) * 1e12 / _DIFF1_HASHES
        )
        elapsed = max(0.0, t - self._proc_start) if up else 0.0
        diff1 = board_ths_s.sum() * 1e12 / _DIFF1_HASHES
        shares = diff1 / POOL_DIFFICULTY
        accepted = int(shares * (1.0 - REJECT_FRACTION))
        rejected = int(shares * REJECT_FRACTION)
        avg = board_ths_s.sum() / elapsed if elapsed > 0 else 0.0
        lo = max(t - WINDOW_30M_S, self._proc_start)
        win = sum(sum(s.board_ths) * s.hash_s(lo, min(e, t)) for s, e in self._recent if e > lo)
        win += sum(seg.board_ths) * seg.hash_s(lo, t)
        h30 = win / (t - lo) if t > lo else 0.0

        expected = (
            prof.expected_chips
            * self.params.hashes_per_clock
            * (freq if hashing else self.params.f_default)
            * 1e-6
        )
        boards = tuple(
            BoardState(
                index=i,
                hashrate_ths=board_h[i],
                chips_total=prof.hardware.chips_per_board,
                chips_ok=int(chip_ok[i].sum()) if self._boards_ok[i] else 0,
                chip_status=_chip_status(chip_ok[i]) if self._boards_ok[i] else "",
                freq_mhz=float(op.freq_mhz)
                if op is not None and self._boards_ok[i]
                else (float(freq) if hashing and self._boards_ok[i] else 0.0),
                voltage_v=float(volt) if hashing and self._boards_ok[i] else 0.0,
                board_temp_c=temps[0][i],
                chip_temp_c=temps[1][i],
                inlet_temp_c=temps[2][i],
                outlet_temp_c=temps[3][i],
                hw_errors=int(board_hw_hashes[i]),
                alive=bool(self._boards_ok[i]),
            )
            for i in range(nb)
        )
        codes = self._error_codes(op, throttled, shutdown, amb, hashrate, expected, t)
        return UnitReading(
            ts=t,
            elapsed_s=int(elapsed),
            is_mining=bool(op is not None and up and m > 0),
            power_mode=self._settings["power_mode"],
            power_limit_w=self._settings["power_limit_w"],
            hashrate_5s_ths=h5,
            hashrate_avg_ths=avg,
            hashrate_30m_ths=h30,
            expected_hashrate_ths=expected,
            power_true_w=power,
            power_reported_w=p_rep,
            env_temp_c=amb,
            fans_rpm=fans if up else (0,) * prof.hardware.fans,
            boards=boards,
            accepted=accepted,
            rejected=rejected,
            hw_errors=int(board_hw_hashes.sum()),
            error_codes=codes,
            throttled=throttled,
        )

    def _error_codes(
        self,
        op: OperatingPoint | None,
        throttled: bool,
        shutdown: bool,
        amb: float,
        hashrate: float,
        expected: float,
        t: float,
    ) -> tuple[str, ...]:
        """Vendor-style fault codes (landscape.md §8d; pyasic whatsminer error table)."""
        codes: list[str] = []
        nb = self.profile.hardware.boards
        if self.family == "whatsminer":
            codes += [
                f"11{i}" for i in range(min(2, self.profile.hardware.fans)) if not self._fans_ok[i]
            ]
            codes += [f"53{i}" for i in range(nb) if not self._boards_ok[i]]
            codes += [f"55{i}" for i in range(nb) if self._boards_ok[i] and self._dead[i].any()]
            if op is not None and throttled:
                codes.append(f"35{int(np.argmax(op.board_temp_c))}")
            if shutdown:
                codes.append("360")
            if amb > self.profile.thermal.ambient_max_c:
                codes.append("600")
            if self._settings["power_mode"] == "high" and amb > HIGH_MODE_AMBIENT_MAX_C:
                codes.append("610")
        else:
            if not self._boards_ok.all():
                codes.append("J0:8")
            codes += [f"J{i}:2" for i in range(nb) if self._boards_ok[i] and self._dead[i].any()]
            if throttled or shutdown:
                codes.append("P:1")
            ramped = self._ramp.at(t) >= 1.0
            if (
                op is not None
                and ramped
                and expected > 0
                and hashrate < LOW_HASHRATE_FRACTION * expected
            ):
                codes.append("R:1")
        return tuple(codes)


def pick_highest_fitting(reported_w: np.ndarray, target_w: float) -> int:
    """Index of the highest grid clock whose estimated power fits, else the lowest clock."""
    fits = np.nonzero(reported_w <= target_w)[0]
    return int(fits.max()) if fits.size else 0


def _chip_status(ok: np.ndarray) -> str:
    """Antminer chain_acs style: groups of three, ``o`` ok, ``x`` bad (' ooo ooo xoo')."""
    n = len(ok)
    groups = (n + 2) // 3
    buf = np.full(n + groups, ord(" "), dtype=np.uint8)
    idx = np.arange(n)
    buf[idx + idx // 3 + 1] = np.where(ok, ord("o"), ord("x"))
    return buf.tobytes().decode("ascii")
