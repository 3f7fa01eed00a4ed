"""Response priors: what a unit should do at a setting before it has been tried.

``ResponsePrior.predict(settings, context)`` returns hashrate (TH/s), wall power (W) and
chip temperature (°C), each with a standard deviation. Two implementations:

* :class:`PhysicsPrior` — from the hardware profile alone: hashrate linear in clock, power
  ∝ V²·f, boards held at the fan target until the fans saturate and then rising with
  power, chips ~15 °C over the board; uncertainty bands from the published spreads
  (shared/docs/landscape.md §8b).
* :class:`BundlePrior` — the central trainer's compiled miner-response model
  (``agent.inference.model``), given profile features + settings + ambient.

**Documented safe behaviour** (tested in tests/optimize/test_prior.py):

1. No bundle, or the bundle cannot be loaded → :func:`select_prior` raises nothing and
   returns the :class:`PhysicsPrior`; the evidence string says why.
2. The bundle model lacks a feature at predict time → :class:`BundlePrior` raises
   ``ModelError``; :class:`FallbackPrior` catches it, answers from physics and counts the
   fallback (visible in every proposal's evidence).
3. No hardware profile (or one without a clock block) → ``ModelError``: nothing is
   proposed for that unit and it keeps its current settings (see ``fleet.plan_fleet``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import structlog

from agent.errors import AgentError, ConfigError, ModelError
from agent.optimize.surrogate import ThermalPrior
from agent.profiles import HardwareProfile
from agent.snapshot import Settings

log = structlog.get_logger(__name__)

#: Relative 1-σ of hashrate around nameplate-scaled clock: per-chip hashrate on a real S19 XP
#: board has σ ≈ 16 % (landscape.md §2, "Silicon lottery"); over ~100+ chips per board the
#: unit-level spread shrinks, vendors bin units to ±3 % (S19 Pro "110 ±3 %", §8a); 5 % covers
#: binning plus the model error of the linear-in-clock fit.
HASHRATE_REL_SD = 0.05

#: Relative 1-σ of wall power: nameplate/firmware power differs from real draw by 5–20 %
#: (Foreman, landscape.md §2 "Power truth"); 8 % sits inside that band as one σ.
POWER_REL_SD = 0.08

#: Relative 1-σ of wall power at a firmware power limit or percent: the firmware holds its
#: *own estimate* at the limit, and that estimate differs from real draw by 5–20 % either
#: way (landscape.md §2 "Power truth"), so the real draw at a limit carries the whole
#: error: a uniform ±5–20 % has σ = 13.2 %. (8 % before: trials at full power cannot see
#: the bias, and the site budget then overdrew its cap by up to 6 % in true power on the
#: simulator; tests/optimize/test_budget_truth.py.)
POWER_LIMIT_REL_SD = 0.132

#: Chip-temperature 1-σ: a floor (°C) plus a fraction of the rise above ambient. Chip
#: temperature is estimated as board + ~15 °C by several firmwares (landscape.md §2), so a
#: few degrees of model error is the least one can claim.
TEMP_SD_FLOOR_C = 3.0
TEMP_SD_REL_RISE = 0.12

#: Ambient assumed when a unit reports none, °C: the top of MicroBT's rated intake range
#: (−5..35 °C, landscape.md §8a), i.e. the pessimistic end for thermal constraints.
DEFAULT_AMBIENT_C = 35.0

#: Hardware-error share (errors / diff-1 work) expected inside the firmware's voltage
#: envelope, and its 1-σ. 4.3e-7 is a real S19 Pro: 562 HW errors over 50,474 s at
#: 111.8 TH/s (shared/fixtures/asic-rs/antminer/v2020); the σ allows ten times that.
HW_ERR_PRIOR_SHARE = 4.3e-7
HW_ERR_SD_SHARE = 4.3e-6

#: Undervolt below the clock's stable voltage at which every chip fails, V: one LuxOS
#: profile step (0.15 V, landscape.md §8c). Only the clock knob can undervolt.
UNDERVOLT_FAIL_V = 0.15

#: Chip over hottest-board temperature at rated power, °C: "other firmwares estimate chip
#: temperature as board + ~15 °C" (landscape.md §2). Its 1-σ covers the real Whatsminer
#: fixtures (chip − board ≈ 13.6 °C on an M3x, ≈ 34 °C on an M60S; physics.py cites them).
CHIP_OVER_BOARD_C = 15.0
CHIP_OVER_BOARD_SD_C = 10.0

#: Relative 1-σ of the full-fan thermal slope. The profile carries no airflow data, so the
#: slope comes from the fan-speed evidence in :meth:`PhysicsPrior.full_fan_slope`; ±35 %
#: covers that evidence's spread (fans at 74–98 % of full speed, ±11 % of the rise) and an
#: unknown room temperature (±5 °C of a 20–45 °C rise), with margin.
THERMAL_SLOPE_REL_SD = 0.35

#: Fan speed, as a fraction of full speed, that holds a board at its target at rated
#: power: the real fixtures run at 82–98 % (S19 Pro, antminer/v2020/stats.json fan1–4
#: 5040–6000 of 6150 rpm) and 73–74 % (M60S, whatsminer/v3 get_miner_status_summary
#: fan-speed-in/out 5400/5280 of ~7250 rpm); 0.86 is the middle of 0.74–0.98.
FAN_FRACTION_AT_RATED = 0.86

#: Room temperature those fixtures ran in, °C. Engineering assumption (the M60S fixture
#: reports 28.5 °C "environment-temperature"; the S19 Pro fixture reports none).
FIXTURE_ROOM_C = 25.0

#: Forced-convection heat transfer grows as airflow^0.8 (Nusselt ∝ Re^0.8, textbook).
AIRFLOW_EXPONENT = 0.8

#: Softness (1-σ, as a fraction of the bound) of the vendor-rating bounds: stock power at
#: the rated maximum ambient keeps the board under its throttle point and the chip under
#: its limit (``ambient_max_c`` is the vendor's operating range, cited in each profile).
#: The rating holds for nameplate power, but a unit's real draw differs from nameplate by
#: 5–20 % either way (landscape.md §2 "Power truth": σ ≈ 13 % for a uniform ±5–20 %), and
#: units differ from the typical one the rating describes; 15 % covers both.
VENDOR_BOUND_REL_SD = 0.15


@dataclass(frozen=True, slots=True)
class PriorContext:
    """Everything besides the settings that a prediction may use."""

    profile: HardwareProfile
    firmware: str
    ambient_c: float | None = None
    #: Extra model features (telemetry aggregates) keyed by feature name.
    features: Mapping[str, float] = field(default_factory=dict)

    @property
    def ambient(self) -> float:
        """Ambient to assume, °C (pessimistic default when unreported)."""
        return self.ambient_c if self.ambient_c is not None else DEFAULT_AMBIENT_C


@dataclass(frozen=True, slots=True)
class Response:
    """A predicted operating point with 1-σ uncertainties."""

    hashrate_ths: float
    power_w: float
    chip_temp_c: float
    hashrate_sd: float = 0.0
    power_sd: float = 0.0
    chip_temp_sd: float = 0.0
    hw_err_share: float = HW_ERR_PRIOR_SHARE
    hw_err_sd: float = HW_ERR_SD_SHARE
    #: Hottest board sensor, °C (``None`` when a model does not predict it).
    board_temp_c: float | None = None
    board_temp_sd: float = 0.0

    def as_tuple(self) -> tuple[float, float, float]:
        """``(hashrate_ths, power_w, chip_temp_c)``."""
        return self.hashrate_ths, self.power_w, self.chip_temp_c


@runtime_checkable
class ResponsePrior(Protocol):
    """Predicts a unit's response to settings before any trial."""

    name: str

    def predict(self, settings: Settings, context: PriorContext) -> Response:
        """Predicted hashrate, power and chip temperature at ``settings``."""
        ...


# ---------------------------------------------------------------------------------------
# Profile physics
# ---------------------------------------------------------------------------------------


def power_rel_sd(settings: Settings) -> float:
    """Relative 1-σ of the prior's wall power at ``settings`` (wider at a firmware limit)."""
    limited = settings.power_limit_w is not None or settings.power_percent is not None
    return POWER_LIMIT_REL_SD if limited else POWER_REL_SD


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """Clock and voltage the firmware would run at, or ``None`` for a sleeping unit."""

    freq_mhz: float
    voltage_v: float


class PhysicsPrior:
    """Nameplate + linear-in-clock hashrate + V²·f power + linear thermal rise."""

    name = "profile-physics"

    def voltage_for(self, profile: HardwareProfile, freq_mhz: float) -> float:
        """Minimum stable board voltage at ``freq_mhz``: the firmware's V/f line."""
        from agent.optimize.space import firmware_line

        return firmware_line(profile, freq_mhz)

    def hashrate(self, profile: HardwareProfile, freq_mhz: float) -> float:
        """TH/s at a clock: nameplate scaled linearly (landscape.md §8b)."""
        return profile.rated.hashrate_ths * freq_mhz / profile.clock.freq_mhz_default

    def power(self, profile: HardwareProfile, freq_mhz: float, voltage_v: float) -> float:
        """Wall watts at a clock and voltage: nameplate scaled by V²·f (landscape.md §8b)."""
        c = profile.clock
        return (
            profile.rated.power_w
            * (voltage_v / c.voltage_v_default) ** 2
            * (freq_mhz / c.freq_mhz_default)
        )

    def freq_for_power(self, profile: HardwareProfile, watts: float) -> float:
        """Return the clock a power-limiting firmware settles at for a wall-power limit."""
        c = profile.clock
        lo, hi = c.freq_mhz_min, c.freq_mhz_max

        def p(f: float) -> float:
            return self.power(profile, f, self.voltage_for(profile, f))

        if watts <= p(lo):
            return lo
        if watts >= p(hi):
            return hi
        for _ in range(50):  # bisection on a monotone curve; 50 halvings ≪ 1 kHz
            mid = 0.5 * (lo + hi)
            if p(mid) < watts:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def operating_point(self, settings: Settings, context: PriorContext) -> OperatingPoint | None:
        """Where the firmware would run for ``settings`` (``None`` = asleep / not mining)."""
        from agent.optimize.space import firmware_knobs  # local: space imports numpy only

        prof = context.profile
        c = prof.clock
        if settings.mining is False or settings.power_mode == "sleep":
            return None
        freq = getattr(settings, "freq_mhz", None)
        volt = getattr(settings, "voltage_v", None)
        if freq is not None:
            return OperatingPoint(freq, volt if volt is not None else self.voltage_for(prof, freq))
        if settings.power_limit_w is not None:
            f = self.freq_for_power(prof, settings.power_limit_w)
            return OperatingPoint(f, self.voltage_for(prof, f))
        if settings.power_percent is not None:
            f = self.freq_for_power(prof, prof.rated.power_w * settings.power_percent / 100.0)
            return OperatingPoint(f, self.voltage_for(prof, f))
        mode = settings.power_mode or "normal"
        frac = 1.0
        if mode in ("low", "high"):
            try:
                fk = firmware_knobs(prof, context.firmware)
            except ConfigError as err:
                raise ModelError(f"{prof.id}: no controls for {context.firmware}") from err
            frac_opt = fk.low_mode_fraction if mode == "low" else fk.high_mode_fraction
            if frac_opt is None:
                raise ModelError(f"{prof.id}/{context.firmware}: no {mode}-mode fraction")
            frac = frac_opt
        f = c.freq_mhz_default * frac
        return OperatingPoint(f, self.voltage_for(prof, f))

    def full_fan_slope(self, profile: HardwareProfile) -> float:
        """Board rise over ambient per wall watt at full fan speed, °C/W (prior mean).

        At rated power in a :data:`FIXTURE_ROOM_C` room the fans run at
        :data:`FAN_FRACTION_AT_RATED` and hold the board at its target; heat transfer scales
        as airflow^0.8, so full speed leaves ``(target − room) · u^0.8`` of rise. (The old
        rule — maximum power at the rated ambient lands on the board's maximum — put stock
        Whatsminers over their throttle point at 35 °C, against the vendor's own rating,
        and was 30–50 % hotter than the simulator at 25 °C.)
        """
        t = profile.thermal
        rise = (t.board_temp_target_c - FIXTURE_ROOM_C) * FAN_FRACTION_AT_RATED**AIRFLOW_EXPONENT
        if rise <= 0:
            raise ModelError(f"{profile.id}: board target must exceed {FIXTURE_ROOM_C} °C")
        return rise / profile.rated.power_w

    def board_temp(self, profile: HardwareProfile, power_w: float, ambient_c: float) -> float:
        """Hottest board sensor, °C: the fan loop holds the target until fans saturate."""
        t = profile.thermal
        return max(t.board_temp_target_c, ambient_c + self.full_fan_slope(profile) * power_w)

    def thermal_prior(self, profile: HardwareProfile) -> ThermalPrior:
        """Return the thermal model's starting point for this profile.

        Slope from :meth:`full_fan_slope`; the vendor's rating (stock power runs at the
        rated maximum ambient) enters as two soft bounds: board rise at rated power ≤
        ``board_temp_hot_c − ambient_max_c`` and chip over board ≤ ``chip_temp_max_c −
        board_temp_hot_c``.
        """
        t = profile.thermal
        rise_max = t.board_temp_hot_c - t.ambient_max_c
        chip_max = t.chip_temp_max_c - t.board_temp_hot_c
        if rise_max <= 0 or chip_max <= 0:
            raise ModelError(f"{profile.id}: thermal limits leave no room at the rated ambient")
        return ThermalPrior(
            board_target_c=t.board_temp_target_c,
            # the firmware throttles at "hot": that is the limit a proposal must respect
            board_max_c=t.board_temp_hot_c,
            chip_max_c=t.chip_temp_max_c,
            rated_power_w=profile.rated.power_w,
            slope_c_per_w=self.full_fan_slope(profile),
            slope_rel_sd=THERMAL_SLOPE_REL_SD,
            chip_over_board_c=CHIP_OVER_BOARD_C,
            chip_over_board_sd=CHIP_OVER_BOARD_SD_C,
            rated_rise_max_c=rise_max,
            chip_over_board_max_c=chip_max,
            bound_rel_sd=VENDOR_BOUND_REL_SD,
        )

    def chip_temp(self, profile: HardwareProfile, power_w: float, board_c: float) -> float:
        """Chip temperature, °C: board + ~15 °C at rated power (landscape.md §2), ∝ power."""
        return board_c + CHIP_OVER_BOARD_C * power_w / profile.rated.power_w

    def predict(self, settings: Settings, context: PriorContext) -> Response:
        """Predicted response at ``settings`` with nameplate-spread uncertainty."""
        prof = context.profile
        amb = context.ambient
        op = self.operating_point(settings, context)
        if op is None:
            return Response(
                0.0,
                0.0,
                amb,
                0.0,
                0.0,
                TEMP_SD_FLOOR_C,
                HW_ERR_PRIOR_SHARE,
                HW_ERR_SD_SHARE,
                board_temp_c=amb,
                board_temp_sd=TEMP_SD_FLOOR_C,
            )
        th = self.hashrate(prof, op.freq_mhz)
        pw = self.power(prof, op.freq_mhz, op.voltage_v)
        board = self.board_temp(prof, pw, amb)
        chip = self.chip_temp(prof, pw, board)
        under = max(0.0, self.voltage_for(prof, op.freq_mhz) - op.voltage_v)
        err = min(1.0, HW_ERR_PRIOR_SHARE + under / UNDERVOLT_FAIL_V)
        return Response(
            hashrate_ths=th * (1.0 - err),
            power_w=pw,
            chip_temp_c=chip,
            hashrate_sd=HASHRATE_REL_SD * th,
            power_sd=power_rel_sd(settings) * pw,
            chip_temp_sd=TEMP_SD_FLOOR_C + TEMP_SD_REL_RISE * (chip - amb),
            hw_err_share=err,
            hw_err_sd=HW_ERR_SD_SHARE + under / UNDERVOLT_FAIL_V,
            board_temp_c=board,
            board_temp_sd=TEMP_SD_FLOOR_C + TEMP_SD_REL_RISE * (board - amb),
        )


# ---------------------------------------------------------------------------------------
# Bundle model
# ---------------------------------------------------------------------------------------

#: Targets the bundle's response model must provide, in the order a row predictor returns.
BUNDLE_TARGETS = ("hashrate_ths", "power_w", "chip_temp_c")


class RowModel(Protocol):
    """One compiled regression model: one row of features in, one number out."""

    def predict_row(self, row: Sequence[float | None]) -> float:
        """Predict one row (``None``/NaN = missing)."""
        ...


def health_inputs(
    features: Mapping[str, float | None],
    profile: HardwareProfile,
    ambient_c: float | None,
) -> dict[str, float]:
    """Map the daemon's streaming features onto the response model's ``health_*`` inputs.

    ``features`` are ``agent.features`` rolling values for one unit (what the daemon has
    when it starts a round); the mapping is ``agent.inference.miner.health_from_features``.
    Only known values are returned. **Without features** (a config-file or simulated
    round, or fewer polls than the model's health window needs) every health input is
    unknown and the bundle prior runs with health missing, which its training prepared it
    for (health dropout); a malformed feature is logged and treated the same way.
    """
    if not features:
        return {}
    from agent.inference.miner import health_from_features, profile_features  # lazy

    merged: dict[str, float | None] = {**features, **profile_features(profile)}
    if ambient_c is not None:
        merged["ambient_c"] = ambient_c
    try:
        health = health_from_features(merged)
    except ModelError as err:
        log.warning("health_features_unusable", profile=profile.id, error=str(err))
        return {}
    return {k: float(v) for k, v in health.items() if v is not None}


def settings_features(settings: Settings, context: PriorContext) -> dict[str, float]:
    """Return the settings, profile and ambient features a response model is trained on."""
    prof = context.profile
    feats: dict[str, float] = {
        "rated_hashrate_ths": prof.rated.hashrate_ths,
        "rated_power_w": prof.rated.power_w,
        "rated_j_per_th": prof.rated_j_per_th,
        "boards": float(prof.hardware.boards),
        "chips_per_board": float(prof.hardware.chips_per_board),
        "freq_mhz_default": prof.clock.freq_mhz_default,
        "voltage_v_default": prof.clock.voltage_v_default,
        "chip_temp_max_c": prof.thermal.chip_temp_max_c,
    }
    if context.ambient_c is not None:
        feats["env_temp_c"] = context.ambient_c
        feats["ambient_c"] = context.ambient_c
    for name in ("power_limit_w", "power_percent", "freq_mhz", "voltage_v"):
        v = getattr(settings, name, None)
        if v is not None:
            feats[name] = float(v)
    if settings.power_mode is not None:
        feats["power_mode_rank"] = float(
            ("sleep", "low", "normal", "high").index(settings.power_mode)
        )
    feats.update({k: float(v) for k, v in context.features.items()})
    return feats


class BundlePrior:
    """The trainer's compiled miner-response models behind the ``ResponsePrior`` protocol."""

    name = "bundle"

    def __init__(
        self,
        models: Mapping[str, RowModel],
        feature_names: Sequence[str],
        *,
        required: Sequence[str] | None = None,
        relative_sd: Mapping[str, float] | None = None,
        version: str = "unknown",
    ) -> None:
        missing = [t for t in BUNDLE_TARGETS if t not in models]
        if missing:
            raise ModelError(f"bundle response model lacks targets {missing}")
        if not feature_names:
            raise ModelError("bundle response model declares no features")
        self.models = dict(models)
        self.feature_names = tuple(feature_names)
        #: Features that must be present; the others go in as missing (``None``).
        self.required = tuple(self.feature_names if required is None else required)
        self.relative_sd = dict(relative_sd or {})
        self.version = version

    @classmethod
    def load(cls, bundle_dir: Any) -> BundlePrior:
        """Load from an active bundle directory via ``agent.inference.model`` (or raise)."""
        try:
            from agent.inference import model as inference_model
        except ImportError as err:
            raise ModelError("agent.inference.model is not available") from err
        loader: Callable[..., Any] | None = getattr(inference_model, "load_response_model", None)
        if loader is None:
            raise ModelError("agent.inference.model offers no response model loader")
        try:
            bundle = loader(bundle_dir)
        except (OSError, ValueError, AgentError) as err:
            raise ModelError(f"response model in {bundle_dir} unusable: {err}") from err
        try:
            from agent.inference.miner import REQUIRED_FEATURES
        except ImportError:  # an older inference module: treat every feature as required
            REQUIRED_FEATURES = tuple(bundle.feature_names)
        return cls(
            models=bundle.models,
            feature_names=bundle.feature_names,
            required=REQUIRED_FEATURES,
            relative_sd=getattr(bundle, "relative_sd", None),
            version=str(getattr(bundle, "version", "unknown")),
        )

    def predict(self, settings: Settings, context: PriorContext) -> Response:
        """Predicted response; ``ModelError`` when a required feature is missing."""
        feats = settings_features(settings, context)
        missing = [f for f in self.required if f not in feats]
        if missing:
            raise ModelError(f"response model needs missing features {missing}")
        row: list[float | None] = [feats.get(f) for f in self.feature_names]
        out: dict[str, float] = {}
        for target in BUNDLE_TARGETS:
            value = float(self.models[target].predict_row(row))
            if not math.isfinite(value):
                raise ModelError(f"response model predicted {value} for {target}")
            out[target] = value
        th, pw, temp = out["hashrate_ths"], out["power_w"], out["chip_temp_c"]
        rise = max(temp - context.ambient, 0.0)
        return Response(
            hashrate_ths=max(th, 0.0),
            power_w=max(pw, 0.0),
            chip_temp_c=temp,
            hashrate_sd=self.relative_sd.get("hashrate_ths", HASHRATE_REL_SD) * abs(th),
            power_sd=self.relative_sd.get("power_w", POWER_REL_SD) * abs(pw),
            chip_temp_sd=TEMP_SD_FLOOR_C
            + self.relative_sd.get("chip_temp_c", TEMP_SD_REL_RISE) * rise,
        )


class FallbackPrior:
    """Try a primary prior; on ``ModelError`` answer from a fallback and count it."""

    def __init__(self, primary: ResponsePrior, fallback: ResponsePrior) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallbacks = 0
        self.last_error: str | None = None
        self.name = f"{primary.name}+{fallback.name}"

    def predict(self, settings: Settings, context: PriorContext) -> Response:
        """Return the primary's prediction, or the fallback's when the primary cannot answer."""
        try:
            return self.primary.predict(settings, context)
        except ModelError as err:
            if self.fallbacks == 0:
                log.warning("prior_fallback", primary=self.primary.name, error=str(err))
            self.fallbacks += 1
            self.last_error = str(err)
            return self.fallback.predict(settings, context)


def select_prior(bundle_dir: Any | None = None) -> tuple[ResponsePrior, str]:
    """Return the best prior available and a one-line evidence note saying which and why."""
    physics = PhysicsPrior()
    if bundle_dir is None:
        return physics, "profile-physics prior (no model bundle configured)"
    try:
        bundle = BundlePrior.load(bundle_dir)
    except ModelError as err:
        log.warning("bundle_prior_unavailable", bundle=str(bundle_dir), error=str(err))
        return physics, f"profile-physics prior (bundle unusable: {err})"
    return FallbackPrior(bundle, physics), f"bundle response model {bundle.version}"
