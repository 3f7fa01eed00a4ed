"""Hardware profiles: per-model specs and safe bounds, loaded and validated from TOML.

This is the only reader of ``hardware_profiles/*.toml``. Hardware knowledge is data: a new
model is a new file, not a subclass. Every number carries a citation in ``sources``.
"""

from __future__ import annotations

import tomllib
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.errors import ConfigError

#: Shipped profiles live beside the package (installed editable) or in the repo root.
PROFILE_DIR = Path(__file__).resolve().parent.parent / "hardware_profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rated(_Strict):
    """Nameplate figures."""

    hashrate_ths: float = Field(gt=0)
    power_w: float = Field(gt=0)


class Hardware(_Strict):
    """Physical layout."""

    boards: int = Field(ge=1, le=8)
    chips_per_board: int = Field(ge=1)
    fans: int = Field(ge=0, le=8)
    #: Hashes per clock cycle per chip (cores); TH/s = boards·chips·this·MHz·1e-6.
    hashes_per_clock: float | None = Field(default=None, gt=0)
    #: Chip generation, when known (e.g. "BM1398").
    chip: str | None = None


class Clock(_Strict):
    """Frequency and board-voltage envelope of the hashboards."""

    freq_mhz_min: float = Field(gt=0)
    freq_mhz_max: float = Field(gt=0)
    freq_mhz_default: float = Field(gt=0)
    voltage_v_min: float = Field(gt=0)
    voltage_v_max: float = Field(gt=0)
    voltage_v_default: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Clock:
        if not self.freq_mhz_min <= self.freq_mhz_default <= self.freq_mhz_max:
            raise ValueError("freq_mhz_min <= freq_mhz_default <= freq_mhz_max violated")
        if not self.voltage_v_min <= self.voltage_v_default <= self.voltage_v_max:
            raise ValueError("voltage_v_min <= voltage_v_default <= voltage_v_max violated")
        return self


class PowerBounds(_Strict):
    """Safe wall-power envelope the agent may ever request."""

    min_w: float = Field(gt=0)
    max_w: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> PowerBounds:
        if self.min_w >= self.max_w:
            raise ValueError("power min_w must be below max_w")
        return self


class Thermal(_Strict):
    """Temperature limits (°C)."""

    board_temp_target_c: float
    board_temp_hot_c: float
    board_temp_max_c: float
    chip_temp_max_c: float
    ambient_max_c: float = 40.0

    @model_validator(mode="after")
    def _ordered(self) -> Thermal:
        if not self.board_temp_target_c < self.board_temp_hot_c < self.board_temp_max_c:
            raise ValueError("board temps must satisfy target < hot < max")
        return self


class FirmwareKnobs(_Strict):
    """The controls one firmware family offers on this model."""

    driver: Literal["antminer", "whatsminer", "braiins"]
    power_modes: tuple[Literal["normal", "low", "high", "sleep"], ...] = ()
    power_limit: bool = False
    power_percent: bool = False
    #: Whether changing the power limit restarts the mining process, and for how long.
    restarts_on_power_limit: bool = False
    restart_s: float = Field(default=0.0, ge=0)
    #: Low-power mode hashrate/power as fractions of normal (stock LPM ≈ 25 % underclock).
    low_mode_fraction: float | None = Field(default=None, gt=0, le=1)
    high_mode_fraction: float | None = Field(default=None, ge=1, le=1.5)


class HardwareProfile(_Strict):
    """A validated hardware profile for one miner model."""

    id: str
    make: Literal["antminer", "whatsminer"]
    name: str
    aliases: tuple[str, ...] = ()
    rated: Rated
    hardware: Hardware
    clock: Clock
    power: PowerBounds
    thermal: Thermal
    firmware: dict[str, FirmwareKnobs]
    #: Citation for each number: dotted field path -> source.
    sources: dict[str, str]

    @property
    def expected_chips(self) -> int:
        """Total chips when every board is healthy."""
        return self.hardware.boards * self.hardware.chips_per_board

    @property
    def rated_j_per_th(self) -> float:
        """Nameplate efficiency."""
        return self.rated.power_w / self.rated.hashrate_ths

    @model_validator(mode="after")
    def _consistent(self) -> HardwareProfile:
        if not self.power.min_w < self.rated.power_w * 1.25:
            raise ValueError("power.min_w is implausibly high versus rated power")
        for key in ("rated.hashrate_ths", "rated.power_w", "hardware.chips_per_board"):
            if key not in self.sources:
                raise ValueError(f"sources must cite {key}")
        return self

    def matches(self, model: str) -> bool:
        """Whether a firmware-reported model string names this profile."""
        norm = _norm(model)
        return any(_norm(a) == norm for a in (self.name, self.id, *self.aliases))


def _norm(text: str) -> str:
    text = text.split(" (")[0].split("_")[0]
    return "".join(ch for ch in text.lower() if ch.isalnum() or ch == "+")


def load_profile(path: Path) -> HardwareProfile:
    """Load and validate one profile file, raising ``ConfigError`` with the file name."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return HardwareProfile.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as err:
        raise ConfigError(f"hardware profile {path.name}: {err}") from err


@cache
def load_profiles(directory: Path = PROFILE_DIR) -> dict[str, HardwareProfile]:
    """Load every profile in ``directory`` keyed by id; duplicates are an error."""
    profiles: dict[str, HardwareProfile] = {}
    for path in sorted(directory.glob("*.toml")):
        prof = load_profile(path)
        if prof.id in profiles:
            raise ConfigError(f"duplicate hardware profile id {prof.id!r} in {path.name}")
        profiles[prof.id] = prof
    return profiles


#: Distinct firmware model strings in a farm are few; drivers ask on every read, and each
#: uncached lookup normalises every alias of every profile (~180 µs, benchmarks/poll.py).
@lru_cache(maxsize=512)
def find_profile(model: str | None, make: str | None = None) -> HardwareProfile | None:
    """Return the profile a firmware model string names, or ``None`` if unknown."""
    if not model:
        return None
    for prof in load_profiles().values():
        if (make is None or prof.make == make) and prof.matches(model):
            return prof
    return None
