"""Miner response model on the agent: the optimizer's prior for hashrate, power and chip temp.

Feature vector (``MINER_FEATURES``, in this order; ``None`` = missing/not set):

========================== ==================================================================
hardware profile           ``rated_hashrate_ths``, ``rated_power_w``, ``rated_j_per_th``,
                           ``boards``, ``chips_per_board``, ``freq_mhz_default``,
                           ``voltage_v_default``, ``chip_temp_max_c`` (all required)
settings                   ``power_mode_rank`` (sleep 0, low 1, normal 2, high 3; None =
                           firmware default, i.e. normal),
                           ``power_limit_w`` (firmware power target, W), ``power_percent``
                           (temporary reduction, %), ``freq_mhz`` and ``voltage_v`` (direct
                           V/f, Braiins only) — each None when that knob is not used
environment                ``ambient_c`` (intake/room temperature, °C; required)
recent health              ``health_hashrate_ratio`` (hashrate / firmware-expected at its
                           clock), ``health_boards_alive_frac``, ``health_fans_ok_frac``,
                           ``health_hw_errors_per_h``, ``health_chip_rise_per_kw``
                           ((hottest chip - ambient) / firmware-reported kW) — each None when
                           unknown (the models are trained with health dropout, so a unit
                           with no health history at all still gets a sane prediction)
========================== ==================================================================

The health block comes from the daemon's streaming features (``agent.features.extract``
names over ``HEALTH_WINDOW``) through :func:`health_from_features`:

- ``health_hashrate_ratio`` = ``hashrate_ratio_mean_1h``
- ``health_boards_alive_frac`` = ``1 - board_loss_mean_1h / boards`` (profile block)
- ``health_fans_ok_frac`` = ``fan_ratio_min_1h``
- ``health_hw_errors_per_h`` = ``hw_error_rate_mean_1h`` (None where the firmware reports
  no hardware-error counter, e.g. Whatsminer V3)
- ``health_chip_rise_per_kw`` = ``(chip_temp_max_c_mean_1h - ambient_c) /
  (power_w_mean_1h / 1000)`` (None where the firmware reports no power, e.g. stock Antminer)

Training rows (``central/fleetdata.py``) compute the same quantities from simulator
readings the way the firmware reports them; ``tests/ml/test_health_parity.py`` polls
simulated units through the real drivers and checks that both paths agree. A
firmware-reported vs wall power ratio is deliberately not a feature: the agent has no
wall-power reading, so the model must not learn to lean on one.

Three compiled models predict scale-free targets; :class:`MinerResponseModel` converts them
back: hashrate = ratio x rated TH/s, wall power = ratio x rated W, chip temperature =
ambient + ratio x chip limit (see ``TARGETS``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ModelError
from agent.inference.bundle import ModelEntry, VerifiedBundle, open_bundle
from agent.inference.model import TreeModel, load_model

PROFILE_FEATURES = (
    "rated_hashrate_ths",
    "rated_power_w",
    "rated_j_per_th",
    "boards",
    "chips_per_board",
    "freq_mhz_default",
    "voltage_v_default",
    "chip_temp_max_c",
)
SETTINGS_FEATURES = ("power_mode_rank", "power_limit_w", "power_percent", "freq_mhz", "voltage_v")
HEALTH_FEATURES = (
    "health_hashrate_ratio",
    "health_boards_alive_frac",
    "health_fans_ok_frac",
    "health_hw_errors_per_h",
    "health_chip_rise_per_kw",
)
#: Window of the daemon's features the health block is read from (must be in its schema).
HEALTH_WINDOW = "1h"
#: Fewest polls in ``HEALTH_WINDOW`` for health to count as known: below this every health
#: input is None (a unit seen for a minute has no "recent health" yet). Six polls span at
#: least five intervals, enough for a hardware-error rate and a stable mean.
HEALTH_MIN_SAMPLES = 6
MINER_FEATURES = (*PROFILE_FEATURES, *SETTINGS_FEATURES, "ambient_c", *HEALTH_FEATURES)
#: Features that must be present; everything else may be None.
REQUIRED_FEATURES = (*PROFILE_FEATURES, "ambient_c")
POWER_MODE_RANK = {"sleep": 0.0, "low": 1.0, "normal": 2.0, "high": 3.0}

#: target -> (model name in the bundle, scale feature, offset feature): the tree predicts
#: (target - x[offset]) / x[scale], so hashrate and power are fractions of nameplate and chip
#: temperature is its rise over ambient as a fraction of the chip limit.
TARGETS: dict[str, tuple[str, str, str | None]] = {
    "hashrate_ths": ("miner_hashrate", "rated_hashrate_ths", None),
    "power_w": ("miner_power", "rated_power_w", None),
    "chip_temp_c": ("miner_chip_temp", "chip_temp_max_c", "ambient_c"),
}


def profile_features(profile: object) -> dict[str, float]:
    """Build the hardware-profile block of the feature vector from a profile."""
    rated = profile.rated  # type: ignore[attr-defined]
    hw = profile.hardware  # type: ignore[attr-defined]
    clk = profile.clock  # type: ignore[attr-defined]
    return {
        "rated_hashrate_ths": float(rated.hashrate_ths),
        "rated_power_w": float(rated.power_w),
        "rated_j_per_th": float(rated.power_w / rated.hashrate_ths),
        "boards": float(hw.boards),
        "chips_per_board": float(hw.chips_per_board),
        "freq_mhz_default": float(clk.freq_mhz_default),
        "voltage_v_default": float(clk.voltage_v_default),
        "chip_temp_max_c": float(profile.thermal.chip_temp_max_c),  # type: ignore[attr-defined]
    }


def feature_row(features: Mapping[str, float | None], names: Sequence[str]) -> list[float | None]:
    """Order a feature mapping by ``names``; required features must be present and finite."""
    row: list[float | None] = []
    for name in names:
        value = features.get(name)
        if value is not None and not isinstance(value, int | float):
            raise ModelError(f"feature {name} is {type(value).__name__}, not a number")
        if name in REQUIRED_FEATURES and (value is None or not math.isfinite(value)):
            raise ModelError(f"required feature {name} is missing")
        row.append(None if value is None else float(value))
    return row


def _known(features: Mapping[str, float | None], name: str) -> float | None:
    """Return a finite number from ``features``, or None (absent, None and NaN: unknown)."""
    value = features.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float):
        raise ModelError(f"feature {name} is {type(value).__name__}, not a number")
    return float(value) if math.isfinite(value) else None


def health_from_features(features: Mapping[str, float | None]) -> dict[str, float | None]:
    """Map the daemon's streaming features onto the model's ``health_*`` inputs.

    ``features`` is the merge of ``agent.features.extract.MinerFeatures.values()`` (its
    schema must include ``HEALTH_WINDOW``), the profile block (:func:`profile_features`,
    for ``boards``) and ``ambient_c``. Returns every name in ``HEALTH_FEATURES``; a value
    that cannot be computed is None (missing), never 0. With fewer than
    ``HEALTH_MIN_SAMPLES`` polls in the window, all of them are None.
    """
    w = HEALTH_WINDOW
    out: dict[str, float | None] = dict.fromkeys(HEALTH_FEATURES)
    samples = _known(features, f"samples_{w}")
    if samples is None or samples < HEALTH_MIN_SAMPLES:
        return out
    out["health_hashrate_ratio"] = _known(features, f"hashrate_ratio_mean_{w}")
    loss, boards = _known(features, f"board_loss_mean_{w}"), _known(features, "boards")
    if loss is not None and boards is not None and boards > 0:
        out["health_boards_alive_frac"] = min(1.0, max(0.0, 1.0 - loss / boards))
    out["health_fans_ok_frac"] = _known(features, f"fan_ratio_min_{w}")
    out["health_hw_errors_per_h"] = _known(features, f"hw_error_rate_mean_{w}")
    chip, ambient = _known(features, f"chip_temp_max_c_mean_{w}"), _known(features, "ambient_c")
    power = _known(features, f"power_w_mean_{w}")
    if chip is not None and ambient is not None and power is not None and power > 0:
        out["health_chip_rise_per_kw"] = (chip - ambient) / (power / 1000.0)
    return out


@dataclass(frozen=True)
class MinerResponse:
    """Predicted steady state of one unit at one setting."""

    hashrate_ths: float
    power_w: float
    chip_temp_c: float


class TargetModel:
    """One compiled model plus its output transform: ``predict_row`` returns target units."""

    def __init__(
        self, target: str, model: TreeModel, scale: int | None, offset: int | None
    ) -> None:
        self.target = target
        self.model = model
        self._scale = scale
        self._offset = offset

    def predict_row(self, row: Sequence[float | None]) -> float:
        """Predict one ordered row in the target's unit (TH/s, W or °C)."""
        value = self.model.predict_row(row)
        for index, is_scale in ((self._scale, True), (self._offset, False)):
            if index is None:
                continue
            ref = row[index]
            if ref is None:
                raise ModelError(f"{self.target}: transform feature missing")
            value = value * ref if is_scale else value + ref
        return value


class MinerResponseModel:
    """The bundle's three response models behind one predict API (the optimizer prior)."""

    def __init__(self, bundle: VerifiedBundle, *, use_shim: bool = True) -> None:
        entries: dict[str, ModelEntry] = {}
        for target, (name, _scale, _offset) in TARGETS.items():
            entries[target] = bundle.model(name)
        names = entries["hashrate_ths"].features
        for target, entry in entries.items():
            if entry.features != names:
                raise ModelError(f"{target} model's features differ from the hashrate model's")
        self.feature_names: tuple[str, ...] = tuple(names)
        self.version = bundle.manifest.bundle_id
        self.models: dict[str, TargetModel] = {}
        self.relative_sd: dict[str, float] = {}
        for target, (name, scale, offset) in TARGETS.items():
            tf = entries[target].output_transform
            if tf is None or (tf.scale, tf.offset) != (scale, offset):
                raise ModelError(f"{name}: manifest transform {tf} is not x{scale} +{offset}")
            model = load_model(bundle, name, use_shim=use_shim)
            index = self.feature_names.index
            self.models[target] = TargetModel(
                target, model, index(scale), None if offset is None else index(offset)
            )
            rel = entries[target].metrics.get("relative_sd")
            if isinstance(rel, int | float):
                self.relative_sd[target] = float(rel)

    @classmethod
    def load(cls, bundle_dir: Path | str) -> MinerResponseModel:
        """Verify a bundle directory and load its response models."""
        return cls(open_bundle(bundle_dir))

    def predict(self, features: Mapping[str, float | None]) -> MinerResponse:
        """Predict hashrate (TH/s), wall power (W) and hottest chip temperature (°C)."""
        row = feature_row(features, self.feature_names)
        out = {t: m.predict_row(row) for t, m in self.models.items()}
        return MinerResponse(
            hashrate_ths=max(0.0, out["hashrate_ths"]),
            power_w=max(0.0, out["power_w"]),
            chip_temp_c=out["chip_temp_c"],
        )
