"""Search space per miner: the hardware profile's safe bounds ∩ the driver's capabilities.

A space is one *knob kind* on one unit:

* ``power_limit`` — continuous watts (Whatsminer, Braiins);
* ``power_percent`` — continuous percent of nameplate power (where a firmware offers it);
* ``power_mode`` — discrete work modes (stock Antminer: low / normal / high);
* ``clock`` — frequency and board voltage (where a firmware allows them), explored as the
  clock plus an offset from the firmware's own V/f line.

Points are handled in a normalised unit cube (``[0, 1]^d``; modes by their rank) so the
surrogate sees every knob the same way. Every point a space returns lies inside the
intersection of the profile's bounds and the knob's bounds, and within the trust region
(the maximum change per trial) of the setting the unit runs now.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from agent.errors import ConfigError, UnsafeSettingsError
from agent.profiles import FirmwareKnobs, HardwareProfile
from agent.snapshot import Capabilities, Knob, Settings

KnobKind = Literal["power_limit", "power_percent", "power_mode", "clock"]

#: Capability names the drivers use for each control (aliases accepted when reading).
KNOB_POWER_LIMIT = "power_limit_w"
KNOB_POWER_PERCENT = "power_percent"
KNOB_POWER_MODE = "power_mode"
KNOB_FREQ = "freq_mhz"
KNOB_VOLTAGE = "voltage_v"
_ALIASES = {
    KNOB_POWER_LIMIT: ("power_limit_w", "power_limit"),
    KNOB_POWER_PERCENT: ("power_percent", "power_pct"),
    KNOB_POWER_MODE: ("power_mode", "work_mode", "mode"),
    KNOB_FREQ: ("freq_mhz", "frequency_mhz", "frequency", "clock"),
    KNOB_VOLTAGE: ("voltage_v", "voltage"),
}

#: Work modes from least to most power; the trust region allows one rank per trial.
MODE_ORDER: tuple[str, ...] = ("sleep", "low", "normal", "high")

#: Largest change per trial as a fraction of the knob's range. A third lets a unit cross
#: its whole envelope in three trials while no single step can jump from the floor to the
#: ceiling (a thermal shock and a guess the constraint models have not yet seen).
DEFAULT_TRUST_FRACTION = 0.3

#: Candidate grid resolution per continuous dimension (1-D: 121 points ≈ 20 W on a 2.4 kW
#: range, finer than the ±5 % power-limit tolerance firmware honours; 2-D: 41 × 41).
GRID_POINTS_1D = 121
GRID_POINTS_2D = 41

#: Voltage grid step for the clock knob, V: the 0.025 V resolution of the simulator's and
#: Braiins' manual tuning (truth.VOLTAGE_STEP_V); undervolt margins are ~0.1 V, so a coarser
#: grid would jump over them.
VOLTAGE_GRID_STEP_V = 0.025

#: Largest change per trial of the voltage *offset* from the firmware's V/f line, V: one
#: LuxOS profile step (0.15 V, landscape.md §8c). Moving along the line with the clock is
#: what the firmware itself does, so only departures from it are rationed.
MAX_VOLTAGE_STEP_V = 0.15

#: Offsets from the firmware's V/f line the clock knob explores, V: ±3 LuxOS profile steps
#: (0.15 V each, landscape.md §8c); absolute voltages are still clipped to the profile.
CLOCK_OFFSET_RANGE_V = (-0.45, 0.45)

#: Tolerance when checking a value against a bound (float noise from normalisation).
BOUND_EPS = 1e-6

#: Firmware families that allow direct board clock and voltage (landscape.md §4: Braiins).
CLOCK_FIRMWARE = frozenset({"braiins"})

#: Firmware names the simulator and drivers use → the profile's driver family.
FIRMWARE_FAMILY = {
    "antminer": "antminer",
    "stock": "antminer",
    "whatsminer": "whatsminer",
    "whatsminer_v2": "whatsminer",
    "whatsminer_v3": "whatsminer",
    "btminer": "whatsminer",
    "braiins": "braiins",
    "bosminer": "braiins",
}


def firmware_line(profile: HardwareProfile, freq_mhz: float) -> float:
    """Return the firmware's default board voltage at a clock (the profile's V/f line).

    Linear through the default point with the slope to the maximum clock (LuxOS S19k Pro:
    +0.006 V/MHz above an 11.88 V floor, landscape.md §8b), clamped to the voltage range.
    """
    c = profile.clock
    if c.freq_mhz_max > c.freq_mhz_default:
        slope = (c.voltage_v_max - c.voltage_v_default) / (c.freq_mhz_max - c.freq_mhz_default)
    elif c.freq_mhz_default > c.freq_mhz_min:
        slope = (c.voltage_v_default - c.voltage_v_min) / (c.freq_mhz_default - c.freq_mhz_min)
    else:
        slope = 0.0
    v = c.voltage_v_default + slope * (freq_mhz - c.freq_mhz_default)
    return min(max(v, c.voltage_v_min), c.voltage_v_max)


def firmware_knobs(profile: HardwareProfile, firmware: str) -> FirmwareKnobs:
    """Return the profile's control block for ``firmware`` (exact key, then its driver family)."""
    if firmware in profile.firmware:
        return profile.firmware[firmware]
    family = FIRMWARE_FAMILY.get(firmware, firmware)
    if family in profile.firmware:
        return profile.firmware[family]
    for fk in profile.firmware.values():
        if fk.driver == family:
            return fk
    raise ConfigError(f"profile {profile.id} has no controls for firmware {firmware!r}")


def capabilities_from_profile(
    profile: HardwareProfile, firmware: str, *, clock: bool = False
) -> Capabilities:
    """Capabilities implied by the profile alone (for simulators and offline planning).

    ``clock=True`` adds direct frequency/voltage knobs where the firmware allows them
    (Braiins OS+ manual per-hashboard tuning, landscape.md §4); no shipped driver exposes
    them yet, so they are opt-in.
    """
    fk = firmware_knobs(profile, firmware)
    knobs: list[Knob] = []
    if fk.power_limit:
        knobs.append(
            Knob(
                KNOB_POWER_LIMIT,
                "continuous",
                profile.power.min_w,
                profile.power.max_w,
                restarts=fk.restarts_on_power_limit,
                restart_s=fk.restart_s,
            )
        )
    if fk.power_percent:
        knobs.append(
            Knob(
                KNOB_POWER_PERCENT,
                "continuous",
                100.0 * profile.power.min_w / profile.rated.power_w,
                100.0 * profile.power.max_w / profile.rated.power_w,
                restarts=fk.restarts_on_power_limit,
                restart_s=fk.restart_s,
            )
        )
    if fk.power_modes:
        knobs.append(Knob(KNOB_POWER_MODE, "discrete", choices=tuple(fk.power_modes)))
    if clock and fk.driver in CLOCK_FIRMWARE:
        c = profile.clock
        knobs.append(Knob(KNOB_FREQ, "continuous", c.freq_mhz_min, c.freq_mhz_max))
        knobs.append(Knob(KNOB_VOLTAGE, "continuous", c.voltage_v_min, c.voltage_v_max))
    return Capabilities(reports_power=True, knobs=tuple(knobs))


def _knob(caps: Capabilities, canonical: str) -> Knob | None:
    for name in _ALIASES[canonical]:
        k = caps.knob(name)
        if k is not None:
            return k
    return None


def _intersect(lo: float, hi: float, knob: Knob, what: str) -> tuple[float, float]:
    klo = knob.min if knob.min is not None else lo
    khi = knob.max if knob.max is not None else hi
    lo2, hi2 = max(lo, klo), min(hi, khi)
    if not lo2 < hi2:
        raise ConfigError(f"{what}: profile bounds and driver bounds do not overlap")
    return lo2, hi2


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """The settings one optimiser may propose for one unit, with a per-trial trust region."""

    miner_id: str
    profile: HardwareProfile = field(repr=False)
    kind: KnobKind
    #: Native names of the continuous dimensions (empty for modes).
    names: tuple[str, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]
    #: Allowed work modes in increasing power order (``power_mode`` only; sleep excluded).
    modes: tuple[str, ...] = ()
    trust_fraction: float = DEFAULT_TRUST_FRACTION
    #: Seconds of lost hashrate each change costs (restart + ramp), 0 when it does not restart.
    restart_s: float = 0.0

    @property
    def dim(self) -> int:
        """Number of normalised dimensions."""
        return 1 if self.kind == "power_mode" else len(self.names)

    # ----- conversions -------------------------------------------------------------------

    def to_unit(self, settings: Settings) -> np.ndarray:
        """Normalised coordinates of ``settings`` (raises if it does not set this knob)."""
        if self.kind == "power_mode":
            mode = settings.power_mode
            if mode not in self.modes:
                raise UnsafeSettingsError(f"{self.miner_id}: mode {mode!r} not in {self.modes}")
            n = len(self.modes)
            return np.array([self.modes.index(mode) / (n - 1) if n > 1 else 0.0])
        vals = [_get(settings, name) for name in self.names]
        if any(v is None for v in vals):
            raise UnsafeSettingsError(f"{self.miner_id}: settings do not set {self.names}")
        if self.kind == "clock":
            f, v = float(vals[0]), float(vals[1])  # type: ignore[arg-type]
            off = v - firmware_line(self.profile, f)
            lo_o, hi_o = CLOCK_OFFSET_RANGE_V
            return np.array(
                [(f - self.lows[0]) / (self.highs[0] - self.lows[0]), (off - lo_o) / (hi_o - lo_o)]
            )
        lo, hi = np.array(self.lows), np.array(self.highs)
        return (np.array(vals, dtype=float) - lo) / (hi - lo)

    def from_unit(self, u: np.ndarray) -> Settings:
        """Return the settings at normalised coordinates ``u`` (clipped to the cube)."""
        u = np.clip(np.asarray(u, dtype=float).reshape(-1), 0.0, 1.0)
        if self.kind == "power_mode":
            n = len(self.modes)
            return Settings(power_mode=self.modes[round(float(u[0]) * (n - 1))])  # type: ignore[arg-type]
        if self.kind == "clock":
            f = self.lows[0] + u[0] * (self.highs[0] - self.lows[0])
            lo_o, hi_o = CLOCK_OFFSET_RANGE_V
            v = firmware_line(self.profile, f) + lo_o + u[1] * (hi_o - lo_o)
            return _make(
                freq_mhz=float(round(f, 3)),
                voltage_v=float(round(_clip(v, self.lows[1], self.highs[1]), 3)),
            )
        lo, hi = np.array(self.lows), np.array(self.highs)
        vals = lo + u[: len(self.names)] * (hi - lo)
        return _make(**{n: float(round(v, 3)) for n, v in zip(self.names, vals, strict=True)})

    # ----- bounds --------------------------------------------------------------------------

    def contains(self, settings: Settings) -> bool:
        """Whether ``settings`` sets this knob to a value inside the bounds."""
        if self.kind == "power_mode":
            return settings.power_mode in self.modes
        for name, lo, hi in zip(self.names, self.lows, self.highs, strict=True):
            v = _get(settings, name)
            if v is None or not (lo - BOUND_EPS <= v <= hi + BOUND_EPS):
                return False
        return True

    def check(self, settings: Settings) -> Settings:
        """Return ``settings`` or raise ``UnsafeSettingsError`` when outside the bounds."""
        if not self.contains(settings):
            raise UnsafeSettingsError(
                f"{self.miner_id}: {settings.changed_fields()} outside {self.describe()}"
            )
        return settings

    def describe(self) -> str:
        """Human-readable bounds."""
        if self.kind == "power_mode":
            return f"modes {list(self.modes)}"
        return ", ".join(
            f"{n} in [{lo:g}, {hi:g}]"
            for n, lo, hi in zip(self.names, self.lows, self.highs, strict=True)
        )

    # ----- defaults and candidates --------------------------------------------------------

    def stock(self) -> Settings:
        """Return the factory setting expressed in this knob (clipped into the bounds)."""
        prof = self.profile
        if self.kind == "power_mode":
            return Settings(power_mode="normal" if "normal" in self.modes else self.modes[0])  # type: ignore[arg-type]
        if self.kind == "power_limit":
            return _make(power_limit_w=_clip(prof.rated.power_w, self.lows[0], self.highs[0]))
        if self.kind == "power_percent":
            return _make(power_percent=_clip(100.0, self.lows[0], self.highs[0]))
        c = prof.clock
        return _make(
            freq_mhz=_clip(c.freq_mhz_default, self.lows[0], self.highs[0]),
            voltage_v=_clip(c.voltage_v_default, self.lows[1], self.highs[1]),
        )

    def grid(self) -> np.ndarray:
        """Every candidate point, normalised, shape ``(n, dim)``."""
        if self.kind == "power_mode":
            n = len(self.modes)
            return np.linspace(0.0, 1.0, n).reshape(-1, 1) if n > 1 else np.zeros((1, 1))
        if self.dim == 1:
            return np.linspace(0.0, 1.0, GRID_POINTS_1D).reshape(-1, 1)
        axes = [np.linspace(0.0, 1.0, GRID_POINTS_2D)] * self.dim
        if self.kind == "clock":  # offsets on the firmware's own voltage step
            lo_o, hi_o = CLOCK_OFFSET_RANGE_V
            n_v = round((hi_o - lo_o) / VOLTAGE_GRID_STEP_V) + 1
            axes = [np.linspace(0.0, 1.0, GRID_POINTS_2D), np.linspace(0.0, 1.0, n_v)]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.reshape(-1) for m in mesh], axis=1)

    def step_limits(self) -> np.ndarray:
        """Largest change per trial in normalised units, per dimension."""
        if self.kind == "power_mode":
            n = len(self.modes)
            return np.array([1.0 / (n - 1) + BOUND_EPS if n > 1 else 1.0])
        lim = np.full(self.dim, self.trust_fraction + BOUND_EPS)
        if self.kind == "clock":
            lo_o, hi_o = CLOCK_OFFSET_RANGE_V
            lim[1] = min(lim[1], MAX_VOLTAGE_STEP_V / (hi_o - lo_o) + BOUND_EPS)
        return lim

    def in_trust(self, current: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Boolean mask: which ``points`` lie within one trial's step of ``current``."""
        delta = np.abs(np.atleast_2d(points) - np.asarray(current).reshape(1, -1))
        return np.all(delta <= self.step_limits().reshape(1, -1), axis=1)

    def toward(self, current: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Return the point one trust-region step from ``current`` toward ``target``."""
        cur = np.asarray(current, dtype=float).reshape(-1)
        delta = np.asarray(target, dtype=float).reshape(-1) - cur
        lim = self.step_limits() - BOUND_EPS
        return np.clip(cur + np.clip(delta, -lim, lim), 0.0, 1.0)


def _clip(v: float, lo: float, hi: float) -> float:
    return float(min(max(v, lo), hi))


def _get(settings: Settings, name: str) -> float | None:
    return getattr(settings, name, None)


def _make(**fields: float) -> Settings:
    """Build ``Settings`` from native knob values (raises if this build lacks a field)."""
    known = {f.name for f in dataclasses.fields(Settings)}
    missing = set(fields) - known
    if missing:
        raise ConfigError(f"Settings has no field(s) {sorted(missing)} in this build")
    return Settings(**fields)  # type: ignore[arg-type]


def build_space(
    miner_id: str,
    profile: HardwareProfile,
    caps: Capabilities,
    kind: KnobKind | None = None,
    trust_fraction: float = DEFAULT_TRUST_FRACTION,
) -> SearchSpace:
    """Build the space for one unit: ``kind`` if given, else the finest knob it offers.

    Preference: power limit, power percent, work modes (clock only when asked for, since it
    bypasses the firmware's own voltage tuning). Raises ``ConfigError`` when nothing fits.
    """
    if not 0 < trust_fraction <= 1:
        raise ConfigError("trust_fraction must lie in (0, 1]")
    order: tuple[KnobKind, ...] = (
        (kind,) if kind else ("power_limit", "power_percent", "power_mode")
    )
    prof = profile
    for k in order:
        if k == "power_limit" and (knob := _knob(caps, KNOB_POWER_LIMIT)):
            lo, hi = _intersect(prof.power.min_w, prof.power.max_w, knob, f"{miner_id} power")
            return SearchSpace(
                miner_id,
                prof,
                "power_limit",
                (KNOB_POWER_LIMIT,),
                (lo,),
                (hi,),
                trust_fraction=trust_fraction,
                restart_s=knob.restart_s if knob.restarts else 0.0,
            )
        if k == "power_percent" and (knob := _knob(caps, KNOB_POWER_PERCENT)):
            plo = 100.0 * prof.power.min_w / prof.rated.power_w
            phi = 100.0 * prof.power.max_w / prof.rated.power_w
            lo, hi = _intersect(plo, phi, knob, f"{miner_id} power percent")
            return SearchSpace(
                miner_id,
                prof,
                "power_percent",
                (KNOB_POWER_PERCENT,),
                (lo,),
                (hi,),
                trust_fraction=trust_fraction,
                restart_s=knob.restart_s if knob.restarts else 0.0,
            )
        if k == "power_mode" and (knob := _knob(caps, KNOB_POWER_MODE)):
            modes = tuple(m for m in MODE_ORDER if m in knob.choices and m != "sleep")
            if not modes:
                raise ConfigError(f"{miner_id}: no work modes besides sleep")
            return SearchSpace(
                miner_id,
                prof,
                "power_mode",
                (),
                (),
                (),
                modes=modes,
                trust_fraction=trust_fraction,
                restart_s=knob.restart_s if knob.restarts else 0.0,
            )
        if k == "clock":
            fknob, vknob = _knob(caps, KNOB_FREQ), _knob(caps, KNOB_VOLTAGE)
            if fknob and vknob:
                c = prof.clock
                flo, fhi = _intersect(c.freq_mhz_min, c.freq_mhz_max, fknob, f"{miner_id} freq")
                vlo, vhi = _intersect(
                    c.voltage_v_min, c.voltage_v_max, vknob, f"{miner_id} voltage"
                )
                return SearchSpace(
                    miner_id,
                    prof,
                    "clock",
                    (KNOB_FREQ, KNOB_VOLTAGE),
                    (flo, vlo),
                    (fhi, vhi),
                    trust_fraction=trust_fraction,
                    restart_s=fknob.restart_s if fknob.restarts else 0.0,
                )
    raise ConfigError(f"{miner_id}: driver offers no knob of kind {order}")


def replace(space: SearchSpace, **changes: object) -> SearchSpace:
    """Return a copy of ``space`` with some fields changed."""
    return dataclasses.replace(space, **changes)  # type: ignore[arg-type]
