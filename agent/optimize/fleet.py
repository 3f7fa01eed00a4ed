"""One optimisation round over a fleet: per-unit optimisers, optional site budget, proposals.

A unit that cannot be optimised (no hardware profile, a prior that cannot answer, no knob
the optimiser understands) is *skipped with its typed error* and keeps its current
settings; the round carries on with the rest (documented safe behaviour, see prior.py).

**The feasibility gate** (issue 6: "a candidate is proposed only if its probability of
being feasible is at least 0.95"): every outcome passes through :func:`_add`, the one place
a :class:`Proposal` is made. A settings change whose P(feasible) is below
``OptimizerConfig.p_feasible`` is never proposed; the unit is listed in
:attr:`FleetPlan.held` instead ("keep current / needs observation", with the reason and
both p values). **The only exception** is a unit that is *already* unsafe — its current
setting is itself below the gate (a hot aisle, a heat wave): it may get a proposal of kind
``"safety_retreat"`` that draws no more power (or sleeps) and raises P(feasible). Sleep
counts as feasible (p = 1): a unit that does not hash cannot overheat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.errors import AgentError, ConfigError, ModelError
from agent.optimize.budget import BudgetPlan, Option, UnitCurve, allocate
from agent.optimize.objective import Economics
from agent.optimize.optimizer import (
    INTERVAL_Z,
    POWER_TIE_W,
    Observation,
    OptimizerConfig,
    Posterior,
    UnitOptimizer,
)
from agent.optimize.prior import PhysicsPrior, PriorContext, ResponsePrior, health_inputs
from agent.optimize.proposals import Proposal, ProposalKind, build_proposal, is_sleep
from agent.optimize.space import build_space, capabilities_from_profile
from agent.profiles import HardwareProfile, find_profile, load_profiles
from agent.snapshot import Capabilities, Settings

log = structlog.get_logger(__name__)

#: Idle draw assumed for a sleeping unit when budgeting, W. Engineering allowance (control
#: board plus fans at their floor); the profiles carry no idle figure, so it errs high,
#: which keeps the site under its cap.
SLEEP_ALLOWANCE_W = 50.0


#: A tuning change is proposed only when it is expected to gain at least this fraction of
#: the unit's current revenue: a trial's hashrate is measured to ≈0.2–0.5 % (five minutes
#: of 5-s samples, trials.MEASURE_WINDOW_S), so smaller gains are noise an operator should
#: not be asked to approve. Budget and first-trial proposals are not filtered.
MIN_GAIN_FRACTION_OF_REVENUE = 0.002


@dataclass(frozen=True, slots=True)
class FleetUnit:
    """What a round knows about one miner."""

    miner_id: str
    #: Profile id or firmware-reported model string.
    model: str | None
    firmware: str
    current: Settings | None = None
    ambient_c: float | None = None
    capabilities: Capabilities | None = None
    trials: tuple[Observation, ...] = ()
    #: The daemon's streaming features for this unit (``agent.features`` values); mapped to
    #: the response model's health inputs (``prior.health_inputs``). Empty = health unknown.
    features: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A unit the round left alone, and the typed error that made it do so."""

    miner_id: str
    error: str
    reason: str


@dataclass(frozen=True, slots=True)
class Held:
    """A unit left on its current settings because no change passed the feasibility gate.

    "Keep current / needs observation": ``candidate`` is what the optimiser would have
    moved to (``None`` when it found nothing at all), ``p_feasible`` its probability of
    respecting every limit, ``p_feasible_current`` that of the current setting, ``gate``
    the required probability. More trials (or a cooler room) are what moves it.
    """

    miner_id: str
    current: Settings
    candidate: Settings | None
    p_feasible: float | None
    p_feasible_current: float
    gate: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "miner_id": self.miner_id,
            "current": self.current.changed_fields(),
            "candidate": None if self.candidate is None else self.candidate.changed_fields(),
            "p_feasible": None if self.p_feasible is None else round(self.p_feasible, 4),
            "p_feasible_current": round(self.p_feasible_current, 4),
            "gate": self.gate,
            "reason": self.reason,
        }


@dataclass(slots=True)
class FleetPlan:
    """The outcome of one round."""

    proposals: list[Proposal] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    budget: BudgetPlan | None = None
    #: Units kept on their current settings by the feasibility gate (see the module doc).
    held: list[Held] = field(default_factory=list)


def resolve_profile(model: str | None) -> HardwareProfile:
    """Return the hardware profile for a profile id or model string, or ``ModelError``."""
    if model:
        profiles = load_profiles()
        if model in profiles:
            return profiles[model]
        prof = find_profile(model)
        if prof is not None:
            return prof
    raise ModelError(f"no hardware profile for model {model!r}: no bounds, so no proposal")


def build_optimizer(
    unit: FleetUnit,
    economics: Economics,
    config: OptimizerConfig,
    prior: ResponsePrior | None = None,
) -> UnitOptimizer:
    """Build an optimiser for one unit with its trials told (raises ``AgentError`` subclasses)."""
    profile = resolve_profile(unit.model)
    caps = unit.capabilities or capabilities_from_profile(profile, unit.firmware)
    space = build_space(unit.miner_id, profile, caps, trust_fraction=config.trust_fraction)
    ctx = PriorContext(
        profile,
        unit.firmware,
        ambient_c=unit.ambient_c,
        features=health_inputs(unit.features, profile, unit.ambient_c),
    )
    current = unit.current if unit.current is not None and space.contains(unit.current) else None
    opt = UnitOptimizer(space, prior or PhysicsPrior(), ctx, economics, config, current)
    for obs in unit.trials:
        opt.tell(obs)
    return opt


def curve_options(
    opt: UnitOptimizer,
    economics: Economics,
    sleep_allowance_w: float = SLEEP_ALLOWANCE_W,
    p_feasible: float | None = None,
) -> list[Option]:
    """List the unit's confidently feasible fitted options, plus sleep, priced by ``economics``."""
    p_min = opt.config.p_feasible if p_feasible is None else p_feasible
    options = [
        Option(b.settings, b.power_w, b.hashrate_ths, b.profit_usd_day, b.power_sd)
        for b in opt.curve(economics)
        if b.p_feasible >= p_min
    ]
    _, c = economics.rates()
    sleep = _sleep_settings(opt)
    options.append(Option(sleep, sleep_allowance_w, 0.0, -c * sleep_allowance_w, sleep=True))
    return options


def plan_fleet(
    units: Sequence[FleetUnit],
    economics: Economics,
    config: OptimizerConfig | None = None,
    *,
    prior: ResponsePrior | None = None,
    prior_note: str = "",
    cap_w: float | None = None,
    optimizers: dict[str, UnitOptimizer] | None = None,
) -> FleetPlan:
    """Propose settings for every unit (and share ``cap_w`` watts, when given)."""
    config = config or OptimizerConfig()
    plan = FleetPlan()
    opts: dict[str, UnitOptimizer] = {}
    for unit in units:
        try:
            opts[unit.miner_id] = (optimizers or {}).get(unit.miner_id) or build_optimizer(
                unit, economics, config, prior
            )
        except (ModelError, ConfigError) as err:
            log.warning("optimize_skip", miner=unit.miner_id, error=type(err).__name__)
            plan.skipped.append(Skipped(unit.miner_id, type(err).__name__, str(err)))
    gate = config.p_feasible
    if cap_w is None:
        for opt in opts.values():
            target = opt.recommend() if opt.trials else opt.predict(opt.first_guess())
            reason = "tuning" if opt.trials else "first trial"
            sleep = opt.sleep_posterior(_sleep_settings(opt), SLEEP_ALLOWANCE_W)
            if opt.trials and target.profit_usd_day + INTERVAL_Z * target.profit_sd < (
                sleep.profit_usd_day
            ):
                target = sleep
                reason = "loses money at current prices even at its best setting"
            now = opt.predict(opt.current)
            if now.p_feasible < gate and target.settings == opt.current:
                target, reason = _safety_retreat(opt, now, sleep, gate)
            _add(plan, opt, target, reason, prior_note, gate, min_gain=reason == "tuning")
        return plan
    curves = []
    for mid, opt in opts.items():
        options = curve_options(opt, economics, p_feasible=gate)
        now = opt.predict(opt.current)
        cur = Option(opt.current, now.power_w, now.hashrate_ths, now.profit_usd_day, now.power_sd)
        curves.append(UnitCurve(mid, tuple(options), cur))
    if not curves:
        return plan
    plan.budget = allocate(curves, cap_w)
    for alloc in plan.budget.allocations:
        opt = opts[alloc.miner_id]
        if alloc.option.sleep:
            target = opt.sleep_posterior(alloc.option.settings, SLEEP_ALLOWANCE_W)
        else:
            target = opt.predict(alloc.option.settings)
        _add(plan, opt, target, f"site budget: {alloc.action}", prior_note, gate)
    return plan


def _sleep_settings(opt: UnitOptimizer) -> Settings:
    """Return how the unit stops hashing: sleep mode where the firmware has one, else mining off."""
    has_sleep = any("sleep" in fk.power_modes for fk in opt.space.profile.firmware.values())
    return Settings(power_mode="sleep") if has_sleep else Settings(mining=False)


def _safety_retreat(
    opt: UnitOptimizer, now: Posterior, sleep: Posterior, gate: float
) -> tuple[Posterior, str]:
    """Target for a unit whose current setting is already below the gate: down, or sleep."""
    safe = opt.safety_target(gate)
    if safe is not None:
        return safe, (
            f"safety: current setting P(feasible) {now.p_feasible:.2f} < {gate:g}; "
            "most profitable confidently feasible setting at no more power"
        )
    return sleep, (
        f"safety: current setting P(feasible) {now.p_feasible:.2f} < {gate:g} and no "
        "setting at lower power is confidently feasible"
    )


def _kind(now: Posterior, target: Posterior, gate: float) -> ProposalKind | None:
    """Classify a move: a gated change, a safety retreat, or ``None`` (must be held)."""
    retreat = (
        now.p_feasible < gate
        and target.p_feasible > now.p_feasible
        and (is_sleep(target.settings) or target.power_w <= now.power_w + POWER_TIE_W)
    )
    if retreat:
        return "safety_retreat"
    return "change" if target.p_feasible >= gate else None


def _add(
    plan: FleetPlan,
    opt: UnitOptimizer,
    target: Posterior,
    reason: str,
    note: str,
    gate: float,
    min_gain: bool = False,
) -> None:
    """Gate, build and record one unit's outcome (the only place a proposal is made)."""
    now = opt.predict(opt.current)
    if target.settings == opt.current:
        if now.p_feasible < gate:
            _hold(plan, opt, now, None, gate, "current setting below the gate; nothing safer found")
        return
    kind = _kind(now, target, gate)
    if kind is None:
        _hold(plan, opt, now, target, gate, f"{reason}: below the gate; needs observation")
        return
    try:
        prop = build_proposal(
            opt,
            target,
            reason=reason,
            prior_note=note,
            sleep_power_w=SLEEP_ALLOWANCE_W,
            kind=kind,
            p_feasible_current=now.p_feasible,
        )
    except AgentError as err:
        plan.skipped.append(Skipped(opt.space.miner_id, type(err).__name__, str(err)))
        return
    if prop is None:
        return
    if min_gain and kind == "change":
        hp, _ = opt.economics.rates()
        floor = MIN_GAIN_FRACTION_OF_REVENUE * hp * now.hashrate_ths
        if prop.expected_delta_usd_day < floor:
            log.debug(
                "optimize_gain_below_noise",
                miner=prop.miner_id,
                gain=prop.expected_delta_usd_day,
                floor=floor,
            )
            return
    plan.proposals.append(prop)


def _hold(
    plan: FleetPlan,
    opt: UnitOptimizer,
    now: Posterior,
    target: Posterior | None,
    gate: float,
    reason: str,
) -> None:
    """Record a "keep current / needs observation" outcome."""
    log.info(
        "optimize_held",
        miner=opt.space.miner_id,
        p_feasible=None if target is None else round(target.p_feasible, 4),
        p_feasible_current=round(now.p_feasible, 4),
        gate=gate,
    )
    plan.held.append(
        Held(
            opt.space.miner_id,
            opt.current,
            None if target is None else target.settings,
            None if target is None else target.p_feasible,
            now.p_feasible,
            gate,
            reason,
        )
    )


def demo_round() -> FleetPlan:
    """Run a tiny self-contained round (no simulator) that exercises the whole optimiser path.

    Used to measure the optimiser's footprint: it fits the residual models, so it imports
    scikit-optimize and scikit-learn exactly as a real round would.
    """
    prof = load_profiles()["m50"]
    unit = FleetUnit("demo", prof.id, "whatsminer_v3", ambient_c=25.0)
    econ = Economics()
    opt = build_optimizer(unit, econ, OptimizerConfig())
    for _ in range(4):
        s = opt.ask()
        r = opt.prior.predict(s, opt.context)
        opt.tell(
            Observation(
                s,
                r.hashrate_ths * 0.97,
                r.power_w,
                r.chip_temp_c,
                r.board_temp_c,
                25.0,
                r.hw_err_share,
            )
        )
    return plan_fleet([unit], econ, optimizers={"demo": opt})
