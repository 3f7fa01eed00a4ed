"""Property: nothing the optimiser proposes ever leaves the hardware profile's bounds."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.optimize.fleet import FleetUnit, plan_fleet
from agent.optimize.objective import Economics
from agent.optimize.optimizer import Observation, OptimizerConfig, UnitOptimizer
from agent.optimize.prior import PhysicsPrior, PriorContext
from agent.optimize.space import build_space, capabilities_from_profile
from agent.optimize.tariff import FlatTariff
from agent.profiles import load_profiles
from tests.optimize.conftest import assert_within_profile

PROFILES = load_profiles()
#: Every (profile, firmware) the shipped profiles offer, with the firmware name a driver uses.
CASES = sorted((pid, key, False) for pid, p in PROFILES.items() for key in p.firmware) + [
    (pid, "braiins", True) for pid, p in sorted(PROFILES.items()) if "braiins" in p.firmware
]  # the last flag: direct frequency/voltage (Braiins only)
FIRMWARE_NAME = {"whatsminer": "whatsminer_v3", "antminer": "antminer", "braiins": "braiins"}


@settings(max_examples=200, deadline=None)
@given(
    case=st.sampled_from(CASES),
    u=st.lists(st.floats(-10, 10, allow_nan=False), min_size=2, max_size=2),
    trust=st.floats(0.01, 1.0),
)
def test_space_points_and_steps_stay_in_bounds(case, u, trust):
    pid, key, clock = case
    prof = PROFILES[pid]
    fw = FIRMWARE_NAME[key]
    caps = capabilities_from_profile(prof, fw, clock=clock)
    space = build_space("u", prof, caps, "clock" if clock else None, trust_fraction=trust)
    point = np.array(u[: space.dim])
    s = space.from_unit(point)
    assert_within_profile(prof, key, s)
    assert space.contains(s)
    step = space.toward(space.to_unit(space.stock()), point)
    assert_within_profile(prof, key, space.from_unit(step))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(CASES),
    hashprice=st.floats(0.01, 0.3),
    price=st.floats(0.0, 0.4),
    ambient=st.floats(-5.0, 45.0),
    p_feasible=st.floats(0.5, 0.99),
    trust=st.floats(0.05, 1.0),
    noise=st.lists(
        st.tuples(st.floats(0.3, 1.7), st.floats(0.7, 1.3), st.floats(-15, 25)),
        min_size=0,
        max_size=4,
    ),
    cap_kw=st.one_of(st.none(), st.floats(0.0, 5.0)),
)
def test_every_proposal_stays_in_bounds(
    case, hashprice, price, ambient, p_feasible, trust, noise, cap_kw
):
    pid, key, clock = case
    prof = PROFILES[pid]
    fw = FIRMWARE_NAME[key]
    econ = Economics(hashprice=hashprice, tariff=FlatTariff(price))
    caps = capabilities_from_profile(prof, fw, clock=clock)
    space = build_space("u", prof, caps, "clock" if clock else None, trust_fraction=trust)
    ctx = PriorContext(prof, fw, ambient_c=ambient)
    cfg = OptimizerConfig(p_feasible=p_feasible)
    opt = UnitOptimizer(space, PhysicsPrior(), ctx, econ, cfg)
    for h_mult, p_mult, dt in noise:
        s = opt.ask()
        assert_within_profile(prof, key, s)
        r = opt.prior.predict(s, ctx)
        opt.tell(
            Observation(
                s,
                r.hashrate_ths * h_mult,
                r.power_w * p_mult,
                r.chip_temp_c + dt,
                (r.board_temp_c or ambient) + dt,
                ambient,
            )
        )
    for s in (opt.ask(), opt.first_guess(), opt.recommend().settings, opt.model_optimum().settings):
        assert_within_profile(prof, key, s)
    plan = plan_fleet(
        [FleetUnit("u", pid, fw, ambient_c=ambient)],
        econ,
        cfg,
        cap_w=None if cap_kw is None else cap_kw * 1000,
        optimizers={"u": opt},
    )
    for prop in plan.proposals:
        assert_within_profile(prof, key, prop.settings)
