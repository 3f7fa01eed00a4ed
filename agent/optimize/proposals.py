"""Proposals: what the optimiser suggests for one miner, with its expected effect and evidence.

A proposal is advice. Nothing here applies settings: applying needs an operator's approval
(``agent.actions``), which re-checks the profile's bounds before and at apply time.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.errors import UnsafeSettingsError
from agent.optimize.optimizer import INTERVAL_Z, Posterior, UnitOptimizer
from agent.optimize.space import SearchSpace
from agent.snapshot import Settings

Risk = Literal["low", "medium", "high"]

#: ``change``: a move whose P(feasible) meets the gate. ``safety_retreat``: the one
#: documented exception (``fleet`` module doc) — the current setting is itself below the
#: gate and the move draws no more power (or sleeps) and raises P(feasible).
ProposalKind = Literal["change", "safety_retreat"]

#: P(feasible) at or above which a measured setting counts as low risk.
LOW_RISK_P_FEASIBLE = 0.99


@dataclass(frozen=True, slots=True)
class Proposal:
    """One suggested change for one miner (never applied here)."""

    miner_id: str
    settings: Settings
    current: Settings
    expected_delta_w: float
    expected_delta_ths: float
    #: Net of the amortised switching (restart) cost.
    expected_delta_usd_day: float
    #: Two-sided 90 % interval of ``expected_delta_usd_day``.
    delta_usd_day_interval: tuple[float, float]
    #: Distance to each limit (°C or share; positive = inside), plus ``p_feasible``.
    constraint_margins: dict[str, float]
    evidence: dict[str, Any]
    risk: Risk
    reason: str = "tuning"
    switching_cost_usd_day: float = 0.0
    kind: ProposalKind = "change"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = dataclasses.asdict(self)
        out["settings"] = self.settings.changed_fields()
        out["current"] = self.current.changed_fields()
        out["delta_usd_day_interval"] = list(self.delta_usd_day_interval)
        return out


def is_sleep(settings: Settings) -> bool:
    """Whether ``settings`` stops hashing."""
    return settings.power_mode == "sleep" or settings.mining is False


def check_bounds(space: SearchSpace, settings: Settings) -> Settings:
    """Raise ``UnsafeSettingsError`` unless ``settings`` is sleep or inside ``space``."""
    if is_sleep(settings):
        modes = space.profile.firmware and any(
            "sleep" in fk.power_modes for fk in space.profile.firmware.values()
        )
        if settings.power_mode == "sleep" and not modes:
            raise UnsafeSettingsError(f"{space.miner_id}: this model has no sleep mode")
        return settings
    return space.check(settings)


def _risk(target: Posterior, p_min: float) -> Risk:
    if target.observed and target.p_feasible >= LOW_RISK_P_FEASIBLE:
        return "low"
    if target.observed or target.p_feasible >= LOW_RISK_P_FEASIBLE:
        return "medium"
    return "high" if target.p_feasible < p_min else "medium"


def build_proposal(
    opt: UnitOptimizer,
    target: Posterior,
    *,
    reason: str = "tuning",
    prior_note: str = "",
    sleep_power_w: float | None = None,
    kind: ProposalKind = "change",
    p_feasible_current: float | None = None,
) -> Proposal | None:
    """Build a proposal to move ``opt``'s unit to ``target`` (``None`` when it is already there)."""
    space = opt.space
    settings = check_bounds(space, target.settings)
    if settings == opt.current:
        return None
    now = opt.predict(opt.current)
    hp, c = opt.economics.rates()
    if is_sleep(settings):
        watts = sleep_power_w if sleep_power_w is not None else 0.0
        d_w, d_th = watts - now.power_w, -now.hashrate_ths
        d_profit = -c * watts - now.profit_usd_day
        sd = now.profit_sd
        switch = 0.0
    else:
        d_w = target.power_w - now.power_w
        d_th = target.hashrate_ths - now.hashrate_ths
        switch = opt.switching_cost_per_day(settings)
        d_profit = target.profit_usd_day - now.profit_usd_day - switch
        sd = math.hypot(target.profit_sd, now.profit_sd)
    margins = {
        "chip_temp_c": round(target.chip_limit_c - target.chip_temp_c, 2),
        "board_temp_c": round(target.board_limit_c - target.board_temp_c, 2),
        "hw_err_share": target.hw_err_limit - target.hw_err_share,
        "p_feasible": round(target.p_feasible, 4),
    }
    if p_feasible_current is not None:
        margins["p_feasible_current"] = round(p_feasible_current, 4)
    hw_off, hw_scale = opt.models["hashrate"].calibration()
    evidence = {
        "prior": prior_note or opt.prior.name,
        "strategy": opt.config.strategy,
        "trials": len(opt.trials),
        "trials_at_setting": target.observed,
        "hashrate_calibration": {"offset_ths": round(hw_off, 3), "scale": round(hw_scale, 4)},
        "thermal": {k: round(v, 6) for k, v in opt.thermal.params().items()},
        "saturated_trials": opt.thermal.n_saturated,
        # the response model's health inputs from the daemon's features ("unknown" when the
        # round had none: a bundle prior then predicts with health missing)
        "health": {k: round(v, 4) for k, v in opt.context.features.items()} or "unknown",
    }
    return Proposal(
        miner_id=space.miner_id,
        settings=settings,
        current=opt.current,
        expected_delta_w=round(d_w, 1),
        expected_delta_ths=round(d_th, 3),
        expected_delta_usd_day=round(d_profit, 4),
        delta_usd_day_interval=(
            round(d_profit - INTERVAL_Z * sd, 4),
            round(d_profit + INTERVAL_Z * sd, 4),
        ),
        constraint_margins=margins,
        evidence=evidence,
        risk="low" if is_sleep(settings) else _risk(target, opt.config.p_feasible),
        reason=reason,
        switching_cost_usd_day=round(switch, 4),
        kind=kind,
        extra={"hashprice_usd_per_th_day": hp, "usd_per_watt_day": c},
    )
