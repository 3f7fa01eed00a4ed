"""One simulated miner: hidden physics plus simulated firmware behaviour, read lazily.

The protocol servers in ``agent.simulator.servers`` call this API; nothing here knows about
wire formats. State changes only on commands and injected events; a reading is computed on
request at ``clock.now()`` (cached per simulated second) and cumulative counters are closed-form
integrals over piecewise segments, so nothing ticks and idle units cost nothing.

This module holds the unit's state and its commands. Firmware decisions (tuner, protection,
fault codes) live in :mod:`agent.simulator.firmware`, the counters in
:mod:`agent.simulator.counters` and the reading records in :mod:`agent.simulator.reading`;
their public names are re-exported here.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import structlog

from agent.profiles import FirmwareKnobs, HardwareProfile
from agent.simulator.clock import Ramp, Segment, SimClock, gaussian_noise
from agent.simulator.counters import (
    POOL_DIFFICULTY,
    REJECT_FRACTION,
    RESEGMENT_TOLERANCE,
    SEGMENT_KEEP_S,
    WINDOW_30M_S,
    HashCounters,
)
from agent.simulator.firmware import (
    ANTMINER_RAMP_S,
    FIRMWARE_FAMILY,
    HIGH_MODE_AMBIENT_MAX_C,
    LOW_HASHRATE_FRACTION,
    MODE_SWITCH_MIN_FRACTION,
    REBOOT_S,
    REGULATION_DEADBAND,
    RETUNE_RAMP_S,
    THROTTLE_MAX_FRACTION,
    THROTTLE_STEP_MHZ,
    TUNER_STEP_MHZ,
    WHATSMINER_DOWN_S,
    FirmwareLogic,
    UnsupportedControl,
    mode_switch_max_s,
    pick_highest_fitting,
)
from agent.simulator.physics import OperatingPoint, UnitParams, draw_params
from agent.simulator.reading import (
    HASHRATE_5S_NOISE,
    POWER_READING_NOISE,
    BoardState,
    FaultState,
    UnitReading,
    board_states,
    observe,
)
from agent.simulator.reading import chip_status as _chip_status  # noqa: F401  (tests import it)

__all__ = [
    "ANTMINER_RAMP_S",
    "FIRMWARE_FAMILY",
    "HASHRATE_5S_NOISE",
    "HIGH_MODE_AMBIENT_MAX_C",
    "LOW_HASHRATE_FRACTION",
    "MODE_SWITCH_MIN_FRACTION",
    "POOL_DIFFICULTY",
    "POWER_READING_NOISE",
    "REBOOT_S",
    "REGULATION_DEADBAND",
    "REJECT_FRACTION",
    "RESEGMENT_TOLERANCE",
    "RETUNE_RAMP_S",
    "SEGMENT_KEEP_S",
    "THROTTLE_MAX_FRACTION",
    "THROTTLE_STEP_MHZ",
    "TUNER_STEP_MHZ",
    "WHATSMINER_DOWN_S",
    "WINDOW_30M_S",
    "BoardState",
    "FaultState",
    "SimUnit",
    "UnitReading",
    "UnsupportedControl",
    "pick_highest_fitting",
]

log = structlog.get_logger(__name__)


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
        self._fw = FirmwareLogic(profile, family, self.knobs, self.params)
        rng = np.random.default_rng([seed & 0xFFFFFFFF, 0x51A7])
        switch_max = mode_switch_max_s(profile)
        self._mode_switch_s = float(rng.uniform(MODE_SWITCH_MIN_FRACTION * switch_max, switch_max))
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
        self._regulated: tuple[int, float] | None = None  # (state version, ambient) last checked
        now = clock.now()
        # the unit has been up and mining for a while when the simulation starts
        uptime = float(rng.uniform(3600.0, 86400.0))
        self._web_down_until = -math.inf
        self._proc_start = now - uptime
        self._ramp = Ramp(t_up=self._proc_start, ramp_s=0.0, frac0=0.0)
        # settled at the simulation start: the running clock is what the firmware picks now
        self._counters = HashCounters(
            nb, Segment(self._proc_start, self._ramp, *self._segment_rates(now))
        )

    # ------------------------------------------------------------------ public state
    @property
    def settings(self) -> dict:
        """Current firmware configuration (a copy)."""
        with self._lock:
            return dict(self._settings, clock_manual=self._clock_manual)

    @property
    def limit_active(self) -> bool:
        """Whether a power limit/target set through the API is in force.

        A Whatsminer without one still regulates to its stock limit (the profile's maximum,
        shown as ``Power Limit``); see :attr:`stock_limit_w`.
        """
        return self._limit_active

    @property
    def stock_limit_w(self) -> float | None:
        """Power limit the firmware enforces when no operator set one (None: no limit)."""
        return self._fw.stock_limit_w

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
            # stock Antminer restarts bmminer on every mode write (restart_s); Whatsminer mode
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

    def restart_process(self, down_s: float | None = None) -> None:
        """Restart the mining process (btminer / bmminer); the control plane stays up.

        The process is down (API refused, 0 hashrate, fans stopped) for the firmware's
        restart outage (``down_s`` overrides it), then hashrate ramps back exactly as after a
        power-limit restart; counters and ``Elapsed`` restart with the process, and
        temporary settings (power percent) are lost with it (protocols.md §3.3).
        """
        if down_s is not None and not (math.isfinite(down_s) and down_s >= 0):
            raise ValueError(f"restart outage {down_s} s must be finite and >= 0")
        with self._lock:
            self._settings["power_percent"] = 100.0
            self._apply(restart=True, down_s=down_s)
        log.debug("sim_process_restart", unit=self.unit_id, down_s=down_s)

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
        return self._fw.mode_freq(mode)

    def tuner_table(self, f_cap: float, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the power tuner's view at ``t``: (freq grid, safe voltages, firmware W).

        See :meth:`agent.simulator.firmware.FirmwareLogic.tuner_table`.
        """
        return self._fw.tuner_table(f_cap, self.ambient_c(t), self.board_active(), self._fans_ok)

    def tuner_cap(self, mode: str, limited: bool) -> float:
        """Highest clock the tuner may pick: the mode's clock, or f_max for a Braiins target."""
        return self._fw.tuner_cap(mode, limited)

    def active_mode(self, mode: str, t: float | None = None) -> str:
        """Mode the firmware runs at ``t`` for a configured ``mode`` (high needs a cool room)."""
        return self._fw.active_mode(mode, self.ambient_c(t))

    @property
    def mode_switch_s(self) -> float:
        """Outage of a stock mode switch or power-on on this unit, s (from the profile)."""
        return self._mode_switch_s

    def resolve(self, settings: dict, t: float | None = None) -> tuple[float, float, bool]:
        """Return (freq, voltage, hashing) the firmware would run for ``settings`` at ``t``."""
        t = self.clock.now() if t is None else t
        return self._fw.resolve(
            settings, lambda f_cap: self.tuner_table(f_cap, t), self.ambient_c(t)
        )

    def protected_point(
        self, freq: float, volt: float, t: float
    ) -> tuple[OperatingPoint | None, bool]:
        """Return (steady point after over-temperature protection or None, throttled).

        See :meth:`agent.simulator.firmware.FirmwareLogic.protect`. Cached per state
        version and 0.1 °C of ambient (ambient moves slowly).
        """
        amb = self.ambient_c(t)
        key = (self._version, freq, volt, round(amb, 1))
        if self._op_cache is not None and self._op_cache[0] == key:
            return self._op_cache[1]
        result = self._fw.protect(
            freq, volt, amb, self.board_active(), self._boards_ok, self._dead, self._fans_ok
        )
        self._op_cache = (key, result)
        return result

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
        old_rate = self._counters.rate_at(now)
        self._counters.close(now)
        if restart:
            if self.family == "whatsminer":
                down = WHATSMINER_DOWN_S if down_s is None else down_s
                ramp_len = max(0.0, self.knobs.restart_s - WHATSMINER_DOWN_S)
            else:
                down = self._mode_switch_s if down_s is None else down_s
                ramp_len = ANTMINER_RAMP_S
            self._proc_start = now + down
            self._ramp = Ramp(t_up=now + down, ramp_s=ramp_len, frac0=0.0)
            self._counters.reset()
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
        self._counters.segment = Segment(now, self._ramp, board_ths, board_hw)

    def _regulate(self, t: float) -> None:
        """Firmware power regulation: re-run the tuner when ambient moved the unit off target.

        Applies once the process has settled (no restart or retune ramp running) while a
        power target is in force (operator or stock limit, power percent); see
        :meth:`agent.simulator.firmware.FirmwareLogic.retune_due`. The step is a small
        frequency change, taken without a ramp. Checked once per state version and 0.1 °C
        of ambient, from the first reading that sees the change (like protection).
        """
        if t < self._ramp.t_up + self._ramp.ramp_s:
            return
        amb = round(self.ambient_c(t), 1)
        if self._regulated == (self._version, amb):
            return
        if self._fw.retune_due(
            self._current_settings(), self.ambient_c(t), self.board_active(), self._fans_ok
        ):
            self._apply(restart=False, ramp_s=0.0)
        self._regulated = (self._version, amb)

    def _resegment_if_drifted(self, op: OperatingPoint | None, t: float) -> None:
        """Start a new counter segment when protection changed the steady rate since the last.

        Ambient swings move units in and out of over-temperature protection without any
        command; counters follow from the first reading that sees the change.
        """
        seg_rate = sum(self._counters.segment.board_ths)
        rate = 0.0 if op is None else op.hashrate_ths
        if abs(rate - seg_rate) <= RESEGMENT_TOLERANCE * max(seg_rate, rate, 1e-9):
            return
        self._counters.close(t)
        zeros = (0.0,) * self.profile.hardware.boards
        ths = zeros if op is None else op.board_hashrate_ths
        hw = zeros if op is None else op.board_hw_error_rate
        self._counters.segment = Segment(t, self._ramp, ths, hw)

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
        prof = self.profile
        amb = self.ambient_c(t)
        up = t >= self._web_down_until and t >= self._ramp.t_up
        freq, volt, hashing = (
            self._settings["freq_mhz"],
            self._settings["voltage_v"],
            self._hashing(),
        )
        op, throttled, shutdown = None, False, False
        if up and hashing:
            self._regulate(t)
            freq, volt = self._settings["freq_mhz"], self._settings["voltage_v"]
            op, throttled = self.protected_point(freq, volt, t)
            shutdown = op is None
            self._resegment_if_drifted(op, t)
        m = self._ramp.at(t) if op is not None else 0.0
        obs = observe(self.params, op, m, amb, up, self._boards_ok, self._dead, self._fans_ok)
        power = obs.power_w
        hashrate = sum(obs.board_hashrate_ths)
        noise = gaussian_noise(self.seed, math.floor(t), 1)
        h5 = max(0.0, hashrate * (1.0 + HASHRATE_5S_NOISE * noise))
        p_rep = (
            power
            * (1.0 + self.params.power_bias)
            * (1.0 + POWER_READING_NOISE * gaussian_noise(self.seed, math.floor(t), 2))
        )

        # counters since process start (closed segments + running one), closed form
        counts = self._counters.totals(t)
        elapsed = max(0.0, t - self._proc_start) if up else 0.0
        avg = counts.board_ths_s.sum() / elapsed if elapsed > 0 else 0.0
        h30 = self._counters.hashrate_30m(t, self._proc_start)

        expected = (
            prof.expected_chips
            * self.params.hashes_per_clock
            * (freq if hashing else self.params.f_default)
            * 1e-6
        )
        boards = board_states(
            prof, op, freq, volt, hashing, obs, self._boards_ok, counts.board_hw_errors
        )
        codes = self._fw.error_codes(
            op,
            throttled,
            shutdown,
            amb,
            hashrate,
            expected,
            t,
            power_mode=self._settings["power_mode"],
            ramp=self._ramp,
            boards_ok=self._boards_ok,
            dead=self._dead,
            fans_ok=self._fans_ok,
        )
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
            fans_rpm=obs.fans_rpm if up else (0,) * prof.hardware.fans,
            boards=boards,
            accepted=counts.accepted,
            rejected=counts.rejected,
            hw_errors=int(counts.board_hw_errors.sum()),
            error_codes=codes,
            throttled=throttled,
        )
