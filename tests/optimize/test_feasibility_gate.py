"""The P(feasible) gate: no settings change below ``p_feasible`` ever leaves ``plan_fleet``.

The one documented exception is a *safety retreat*: a unit whose current setting is itself
below the gate may be moved to a setting that draws no more power (or sleeps) and raises
P(feasible). Everything else the gate stops is listed as held ("needs observation").
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.optimize.fleet import FleetPlan, FleetUnit, build_optimizer, plan_fleet
from agent.optimize.objective import Economics
from agent.optimize.optimizer import Observation, OptimizerConfig, UnitOptimizer
from agent.optimize.prior import PhysicsPrior, PriorContext
from agent.optimize.proposals import is_sleep
from agent.optimize.space import build_space, capabilities_from_profile
from agent.optimize.tariff import FlatTariff
from agent.profiles import load_profiles
from agent.snapshot import Settings

PROFILES = load_profiles()
FIRMWARE_NAME = {"whatsminer": "whatsminer_v3", "antminer": "antminer", "braiins": "braiins"}
#: Every (profile, firmware key) the shipped profiles offer.
CASES = sorted((pid, key) for pid, p in PROFILES.items() for key in p.firmware)
#: Electricity prices: EIA 2024 industrial mean and the ERCOT LZ_WEST day (benchmarks).
PRICES = (0.0816, 0.04528)
GATE = 0.95
#: Watts of slack when checking that a safety retreat does not raise power.
TIE_W = 1.0


def assert_gated(plan: FleetPlan, opts: dict[str, UnitOptimizer], gate: float) -> None:
    """Every emitted change meets the gate or is a safety retreat that raises P(feasible)."""
    for prop in plan.proposals:
        p = prop.constraint_margins["p_feasible"]
        kind = getattr(prop, "kind", "change")
        if is_sleep(prop.settings):
            assert p == 1.0, prop  # nothing hashes, nothing can overheat
        if kind == "safety_retreat":
            p_now = opts[prop.miner_id].predict(prop.current).p_feasible
            assert p_now < gate, prop
            assert p > p_now, prop
            assert is_sleep(prop.settings) or prop.expected_delta_w <= TIE_W, prop
        else:
            assert p >= gate, (prop.settings, p, prop.reason)
    for held in plan.held:
        assert held.p_feasible is None or held.p_feasible < gate
        assert held.gate == gate
    # a unit that is already unsafe is never silently left alone
    answered = {p.miner_id for p in plan.proposals} | {h.miner_id for h in plan.held}
    for mid, opt in opts.items():
        if opt.predict(opt.current).p_feasible < gate:
            assert mid in answered, mid


def _unit(pid: str, key: str, ambient: float, current: Settings | None = None) -> FleetUnit:
    return FleetUnit("u", pid, FIRMWARE_NAME[key], current=current, ambient_c=ambient)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(CASES),
    ambient=st.floats(25.0, 50.0),
    price=st.sampled_from(PRICES),
    cap_fraction=st.one_of(st.none(), st.floats(0.0, 1.2)),
    current_u=st.one_of(st.none(), st.floats(0.0, 1.0)),
    opt_gate=st.sampled_from((0.5, 0.8, GATE)),
    trials=st.lists(
        st.tuples(st.floats(0.8, 1.2), st.floats(0.85, 1.15), st.floats(-8, 15)),
        max_size=3,
    ),
)
def test_no_change_below_the_gate_leaves_plan_fleet(
    case, ambient, price, cap_fraction, current_u, opt_gate, trials
):
    """Profiles × firmware × ambients × prices × caps, with or without trials.

    The optimiser may even be built with a laxer gate than the round's (a caller's own
    optimisers): the round's gate still decides.
    """
    pid, key = case
    prof = PROFILES[pid]
    econ = Economics(tariff=FlatTariff(price))
    current = None
    if current_u is not None:
        space = build_space("u", prof, capabilities_from_profile(prof, FIRMWARE_NAME[key]))
        current = space.from_unit(np.full(space.dim, current_u))
    unit = _unit(pid, key, ambient, current)
    opt = build_optimizer(unit, econ, OptimizerConfig(p_feasible=opt_gate))
    for h_mult, p_mult, dt in trials:
        s = opt.ask()
        r = opt.prior.predict(s, opt.context)
        board = (r.board_temp_c or ambient) + dt
        opt.tell(
            Observation(s, r.hashrate_ths * h_mult, r.power_w * p_mult, board + 15, board, ambient)
        )
    cap = None if cap_fraction is None else cap_fraction * prof.rated.power_w
    plan = plan_fleet(
        [unit], econ, OptimizerConfig(p_feasible=GATE), cap_w=cap, optimizers={"u": opt}
    )
    assert_gated(plan, {"u": opt}, GATE)


@pytest.mark.parametrize(("pid", "key"), CASES)
@pytest.mark.parametrize("ambient", [25.0, 35.0, 45.0, 50.0])
def test_reviewer_probe_every_profile_ambient_price_and_cap(pid, key, ambient):
    """The review's probe, exhaustively: fresh units, two prices, with and without a cap."""
    for price in PRICES:
        econ = Economics(tariff=FlatTariff(price))
        for cap in (None, 0.7 * PROFILES[pid].rated.power_w):
            unit = _unit(pid, key, ambient)
            opt = build_optimizer(unit, econ, OptimizerConfig())
            plan = plan_fleet([unit], econ, cap_w=cap, optimizers={"u": opt})
            assert_gated(plan, {"u": opt}, GATE)


def _opt(pid: str, fw: str, ambient: float, trust: float = 0.25, price: float = 0.0816):
    prof = PROFILES[pid]
    space = build_space("u", prof, capabilities_from_profile(prof, fw), trust_fraction=trust)
    ctx = PriorContext(prof, fw, ambient_c=ambient)
    econ = Economics(tariff=FlatTariff(price))
    return UnitOptimizer(space, PhysicsPrior(), ctx, econ, OptimizerConfig())


@pytest.mark.parametrize("trust", [0.1, 0.25])
@pytest.mark.parametrize("ambient", [25.0, 34.0, 40.0, 46.0])
def test_first_guess_lands_only_on_a_confidently_feasible_point(ambient, trust):
    """Stock M30S with a short step toward a cooler optimum: the step's own grid point
    may still be too hot (the review's M30S example: 2640.8 W at p = 0.81)."""
    opt = _opt("m30s", "whatsminer_v3", ambient=ambient, trust=trust)
    guess = opt.first_guess()
    p = opt.predict(guess).p_feasible
    assert guess == opt.current or p >= GATE, (guess, p)


def test_safe_retreat_never_steps_somewhere_riskier():
    """Measured fine when cool; the room overheats: the retreat must not go back up in power."""
    opt = _opt("m50", "whatsminer_v3", ambient=25.0, trust=1.0)
    full = opt.space.from_unit(np.array([1.0]))
    low = opt.space.from_unit(np.array([0.55]))
    for s, amb in ((full, 25.0), (low, 56.0)):
        r = opt.prior.predict(s, opt.context)
        board = max(opt.context.profile.thermal.board_temp_target_c, amb + 0.006 * r.power_w)
        opt.tell(Observation(s, r.hashrate_ths, r.power_w, board + 20, board, amb))
    now = opt.predict(opt.current)
    assert now.p_feasible < GATE
    assert not any(b.p_feasible >= GATE for b in opt.curve())  # the retreat case
    nxt = opt.ask()
    b = opt.predict(nxt)
    assert nxt == opt.current or (
        b.p_feasible > now.p_feasible and b.power_w <= now.power_w + TIE_W
    ), (nxt, b.p_feasible, now.p_feasible)


def test_recommend_keeps_to_the_gate_after_the_room_warms():
    """The most profitable measured setting became unsafe: recommend() must not name it."""
    opt = _opt("s19kpro", "braiins", ambient=25.0, trust=1.0, price=0.03)  # wants full power
    for u in (1.0, 0.6, 0.3):
        s = opt.space.from_unit(np.array([u]))
        r = opt.prior.predict(s, opt.context)
        board = max(55.0, 25.0 + 0.0087 * r.power_w)
        opt.tell(Observation(s, r.hashrate_ths, r.power_w, board + 15, board, 25.0))
    best_measured = max(
        opt.predict_many([t.obs.settings for t in opt.trials]), key=lambda b: b.profit_usd_day
    )
    opt.update_context(PriorContext(opt.context.profile, "braiins", ambient_c=44.0))
    assert opt.predict(best_measured.settings).p_feasible < GATE  # now too hot
    rec = opt.recommend()
    assert rec.settings != best_measured.settings
    assert rec.p_feasible >= GATE or rec.settings == opt.current


def test_budget_sleep_is_reported_as_feasible():
    """A unit slept by the site budget: P(feasible) 1, not the running setting's."""
    econ = Economics(tariff=FlatTariff(0.0816))
    units = [_unit("m30s", "whatsminer", 30.0)]
    opt = build_optimizer(units[0], econ, OptimizerConfig())
    plan = plan_fleet(units, econ, cap_w=100.0, optimizers={"u": opt})
    (prop,) = plan.proposals
    assert is_sleep(prop.settings)
    assert prop.constraint_margins["p_feasible"] == 1.0


def test_an_already_unsafe_unit_gets_a_safety_retreat():
    """Stock in a 48 °C aisle, one short step per trial: the round still moves it down."""
    econ = Economics(tariff=FlatTariff(0.0816))
    unit = _unit("m60s", "whatsminer", 48.0)
    opt = build_optimizer(unit, econ, OptimizerConfig(trust_fraction=0.05))
    assert opt.predict(opt.current).p_feasible < GATE
    plan = plan_fleet([unit], econ, optimizers={"u": opt})
    (prop,) = plan.proposals
    assert prop.kind == "safety_retreat"
    assert prop.expected_delta_w < 0
    assert prop.constraint_margins["p_feasible"] > prop.constraint_margins["p_feasible_current"]
    assert_gated(plan, {"u": opt}, GATE)


def test_a_laxer_optimiser_is_held_by_the_rounds_gate():
    """Optimiser built at 0.5, round at 0.95: its 0.5–0.95 first trial is held, not proposed."""
    econ = Economics(tariff=FlatTariff(0.04528))
    unit = _unit("s21", "braiins", 38.0)
    opt = build_optimizer(unit, econ, OptimizerConfig(p_feasible=0.5))
    guess = opt.predict(opt.first_guess())
    assert 0.5 <= guess.p_feasible < GATE  # the scenario: a candidate between the gates
    plan = plan_fleet([unit], econ, OptimizerConfig(p_feasible=GATE), optimizers={"u": opt})
    assert plan.proposals == [] or all(
        p.constraint_margins["p_feasible"] >= GATE for p in plan.proposals
    )
    (held,) = plan.held
    assert held.candidate == guess.settings
    assert held.p_feasible == pytest.approx(guess.p_feasible)
    assert "needs observation" in held.reason
    assert held.to_dict()["gate"] == GATE
