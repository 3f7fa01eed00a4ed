"""Benchmark: constrained surrogate optimiser vs random search vs grid search vs stock.

Every method runs on identical simulated units (same hidden per-unit parameters, same
simulated start time) and is scored by regret against the unit's brute-force optimum on
the TRUE physics (``agent.simulator.truth.true_optimum``), in profit per day:

    regret = (profit(optimum) − profit(recommended)) / profit(optimum)

both evaluated at the instant the trial budget ran out. A recommendation the TRUE physics
finds infeasible (throttled, over a thermal limit or the hardware-error limit) is counted
as such for every method, and its regret is what it truly earns there. Also measured:
thermal-limit crossings during all trials, J/TH vs stock at equal or better profit, the
site budget at 70 % of nameplate power in TRUE watts vs uniform throttling (scaled down
until its true draw fits the cap) and vs the exact (DP) optimum on true curves, and the
daemon's RSS with and without the optimiser imported (subprocesses).

Robustness sections (full runs): ``perturbed`` re-runs every method on a simulator whose
hidden physics is drawn wider than the prior assumes (dynamic power, leakage, thermal
resistance and chip-over-board offset each scaled by a seeded factor in ±``--perturb``);
``bundle_prior`` uses a real model bundle's response model as the prior
(``--prior-bundle DIR``; build one with ``hashpilot-central train --out DIR --quick``).

Run:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/optimizer.py [--quick] [--compare]
      [--clock] [--perturb 0.15] [--prior-bundle /tmp/b/bundle]
The last line printed is one JSON object; the exit status is 1 when a target is missed
(``targets`` in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import structlog  # noqa: E402

from agent.optimize.baselines import GridSearch, RandomSearch  # noqa: E402
from agent.optimize.budget import Option, UnitCurve, allocate, allocate_exact  # noqa: E402
from agent.optimize.fleet import SLEEP_ALLOWANCE_W, curve_options  # noqa: E402
from agent.optimize.objective import DEFAULT_HASHPRICE_USD_PER_TH_DAY, Economics  # noqa: E402
from agent.optimize.optimizer import (  # noqa: E402
    DEFAULT_HW_ERR_MAX_SHARE,
    OptimizerConfig,
    Strategy,
    UnitOptimizer,
)
from agent.optimize.prior import (  # noqa: E402
    PhysicsPrior,
    PriorContext,
    ResponsePrior,
    select_prior,
)
from agent.optimize.simfleet import SimUnitSpec, fleet_specs, make_unit  # noqa: E402
from agent.optimize.space import SearchSpace, build_space, capabilities_from_profile  # noqa: E402
from agent.optimize.tariff import DEFAULT_PRICE_USD_PER_KWH, FlatTariff  # noqa: E402
from agent.optimize.trials import run_trials  # noqa: E402
from agent.profiles import load_profiles  # noqa: E402
from agent.simulator import unit as sim_unit  # noqa: E402
from agent.simulator.clock import DEFAULT_MANUAL_START, SimClock  # noqa: E402
from agent.simulator.truth import (  # noqa: E402
    profit_usd_per_day,
    true_operating_point,
    true_optimum,
)
from agent.snapshot import Settings  # noqa: E402

#: Trial budgets per unit, all scored from one run (a budget's recommendation is taken when
#: that many trials are done; grid search needs its own run per budget).
BUDGETS = (5, 10, 20)

#: Simulated start: 08:00 UTC on the simulator's fixed day, so trial campaigns run into the
#: afternoon ambient peak (simulator physics: peak near 15:00).
START = DEFAULT_MANUAL_START + 8 * 3600.0

#: Electricity for the site-budget scenario, USD/kWh: ERCOT LZ_WEST day-ahead mean on
#: 2024-01-20 ($45.28/MWh, shared/data/ercot_dam_spp_hubs_zones_2024-01-20.csv). At this
#: price most units want full power, so a 70 % cap binds hard.
BUDGET_PRICE_USD_PER_KWH = 0.04528

#: Site cap as a fraction of summed nameplate power (the issue's scenario).
BUDGET_CAP_FRACTION = 0.7

#: Power-limit step of the true curves fed to the exact DP optimum, W.
TRUE_CURVE_STEP_W = 25.0

#: Bisection steps on the uniform-throttling scale until its TRUE draw fits the cap
#: (2^-30 of the range: far below a watt).
UNIFORM_FIT_STEPS = 30

#: Default half-width of the perturbed-physics section's multiplicative factors. The
#: simulator's own per-unit spreads are 2.5 % (dynamic power) and 5 % (thermal resistance,
#: agent/simulator/params.py); ±15 % is several times wider, and moves the Antminers'
#: full-fan rise past the vendor rating the prior leans on.
DEFAULT_PERTURB = 0.15

#: Targets from issue 6 checked on the main (unperturbed) run; the exit status says if one
#: was missed.
TARGET_MEDIAN_REGRET_20 = 0.02


@contextlib.contextmanager
def perturbed_physics(rel: float) -> Iterator[None]:
    """Build every simulated unit with hidden physics scaled by seeded factors in ±``rel``.

    Dynamic power (k and a together), leakage, each board's thermal resistance (one factor
    per unit) and the chip-over-board offset each get their own factor, drawn from the
    unit's seed, so every rebuild of a unit (each method, the truth, stock) is the same.
    """
    original = sim_unit.draw_params

    def draw(profile: Any, seed: int) -> Any:
        p = original(profile, seed)
        import numpy as np

        f_k, f_leak, f_r, f_chip = np.random.default_rng([seed & 0xFFFFFFFF, 0x9E77]).uniform(
            1.0 - rel, 1.0 + rel, 4
        )
        coeffs = p.coeffs._replace(chip_over_board_c=p.coeffs.chip_over_board_c * f_chip)
        return dataclasses.replace(
            p,
            k_w=p.k_w * f_k,
            a_w=p.a_w * f_k,
            leak_w=p.leak_w * f_leak,
            r_th=tuple(r * f_r for r in p.r_th),
            coeffs=coeffs,
        )

    sim_unit.draw_params = draw
    try:
        yield
    finally:
        sim_unit.draw_params = original


def _quiet() -> None:
    import logging

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@dataclass
class UnitResult:
    """Everything measured on one unit."""

    spec: SimUnitSpec
    kind: str
    #: USD/day lost against the true optimum, per method and budget
    loss: dict[str, dict[int, float]] = field(default_factory=dict)
    violations: dict[str, int] = field(default_factory=dict)
    #: recommendations the TRUE physics finds infeasible, per method (over all budgets)
    infeasible: dict[str, int] = field(default_factory=dict)
    opt_profit: dict[int, float] = field(default_factory=dict)
    opt_revenue: dict[int, float] = field(default_factory=dict)
    jth_ours: float | None = None
    jth_stock: float | None = None
    profit_ours: float | None = None
    profit_stock: float | None = None
    ms_per_trial: float = 0.0


class _Timed:
    """Wrap an optimiser and add up the wall time its ask/tell take."""

    def __init__(self, opt: UnitOptimizer) -> None:
        self.opt = opt
        self.spent = 0.0

    def ask(self) -> Settings:
        t0 = time.perf_counter()
        s = self.opt.ask()
        self.spent += time.perf_counter() - t0
        return s

    def tell(self, obs: Any) -> None:
        t0 = time.perf_counter()
        self.opt.tell(obs)
        self.spent += time.perf_counter() - t0


def _space(spec: SimUnitSpec) -> SearchSpace:
    prof = load_profiles()[spec.profile_id]
    return build_space(spec.unit_id, prof, capabilities_from_profile(prof, spec.firmware))


def _knob(space: SearchSpace) -> str:
    return "power_mode" if space.kind == "power_mode" else "power_limit"


def _true_profit(unit: Any, settings: Settings, t: float, hp: float, price: float) -> float:
    return profit_usd_per_day(true_operating_point(unit, settings.changed_fields(), t), hp, price)


def truly_feasible(unit: Any, settings: Settings, t: float) -> bool:
    """Whether the true steady state at ``settings`` respects every limit the optimiser keeps.

    Throttled by the firmware, a board over "hot", a chip over its maximum, or a hardware-
    error share over the limit all count against it (sleep and idle are feasible).
    """
    op = true_operating_point(unit, settings.changed_fields(), t)
    if op.idle:
        return True
    th = unit.profile.thermal
    return not (
        op.throttled
        or max(op.board_temp_c) > th.board_temp_hot_c
        or max(op.chip_temp_c) > th.chip_temp_max_c
        or op.hw_error_rate > DEFAULT_HW_ERR_MAX_SHARE
    )


def run_unit(
    spec: SimUnitSpec,
    econ: Economics,
    strategies: list[str],
    budgets: tuple[int, ...],
    prior: ResponsePrior | None = None,
    baselines: bool = True,
) -> tuple[UnitResult, dict[str, Any]]:
    """Run every method on one unit; returns scores and the default optimiser's state.

    ``baselines=False`` skips random and grid search (they do not use the prior, so a
    section that only changes the prior shares them with the main run).
    """
    hp, _ = econ.rates()
    price = econ.electricity_usd_per_kwh()
    space = _space(spec)
    res = UnitResult(spec, space.kind)
    nmax = max(budgets)
    kept: dict[str, Any] = {}
    times: dict[int, float] = {}

    def optimum(unit: Any, b: int, t: float) -> float:
        if b not in res.opt_profit:
            best, val = true_optimum(unit, hp, price, _knob(space), t)
            res.opt_profit[b] = val
            res.opt_revenue[b] = true_operating_point(unit, best, t).hashrate_ths * hp
            times[b] = t
        return res.opt_profit[b]

    def score(method: str, unit: Any, recs: dict[int, tuple[Settings, float]]) -> None:
        res.loss.setdefault(method, {})
        res.infeasible.setdefault(method, 0)
        for b, (st, t) in recs.items():
            # what the recommendation truly earns, throttled or not: honest regret
            res.loss[method][b] = optimum(unit, b, t) - _true_profit(unit, st, t, hp, price)
            res.infeasible[method] += not truly_feasible(unit, st, t)

    # --- surrogate optimiser strategies ---------------------------------------------------
    for k, strategy in enumerate(strategies):
        clock = SimClock(speed=0, start=START)
        unit = make_unit(spec, clock)
        ctx = PriorContext(space.profile, spec.firmware, ambient_c=unit.reading().env_temp_c)
        opt = UnitOptimizer(
            space,
            prior or PhysicsPrior(),
            ctx,
            econ,
            OptimizerConfig(strategy=cast(Strategy, strategy), seed=spec.seed),
        )
        recs: dict[int, tuple[Settings, float]] = {}
        timed = _Timed(opt)

        def cb(
            rec: Any, _opt: UnitOptimizer = opt, _recs: dict = recs, _c: SimClock = clock
        ) -> None:
            if rec.index + 1 in budgets:
                _recs[rec.index + 1] = (_opt.recommend().settings, _c.now())

        log = run_trials(unit, space, timed, nmax, on_trial=cb)
        score(strategy, unit, recs)
        res.violations[strategy] = log.violations
        if k == 0:
            res.ms_per_trial = 1000 * timed.spent / nmax
            kept = {"unit": unit, "opt": opt, "t": clock.now()}
            st, t = recs[nmax]
            stock_unit = make_unit(spec, SimClock(speed=0, start=t))
            op_ours = true_operating_point(unit, st.changed_fields(), t)
            op_stock = true_operating_point(stock_unit, {}, t)
            res.jth_ours, res.jth_stock = op_ours.j_per_th, op_stock.j_per_th
            res.profit_ours = profit_usd_per_day(op_ours, hp, price)
            res.profit_stock = profit_usd_per_day(op_stock, hp, price)
            res.loss["stock"] = {
                b: res.opt_profit[b]
                - profit_usd_per_day(
                    true_operating_point(make_unit(spec, SimClock(speed=0, start=tb)), {}, tb),
                    hp,
                    price,
                )
                for b, tb in times.items()
            }
            res.infeasible["stock"] = sum(
                not truly_feasible(make_unit(spec, SimClock(speed=0, start=tb)), Settings(), tb)
                for tb in times.values()
            )

    if not baselines:
        return res, kept

    # --- random search (one run, prefixes) ------------------------------------------------
    clock = SimClock(speed=0, start=START)
    unit = make_unit(spec, clock)
    rnd = RandomSearch(space, econ, seed=spec.seed)
    recs = {}

    def rcb(rec: Any) -> None:
        if rec.index + 1 in budgets:
            recs[rec.index + 1] = (rnd.recommend_settings(), clock.now())

    log = run_trials(unit, space, rnd, nmax, on_trial=rcb)
    score("random", unit, recs)
    res.violations["random"] = log.violations

    # --- grid search (a run per budget) ---------------------------------------------------
    res.loss["grid"] = {}
    res.violations["grid"] = 0
    res.infeasible["grid"] = 0
    for b in budgets:
        clock = SimClock(speed=0, start=START)
        unit = make_unit(spec, clock)
        grid = GridSearch(space, econ, b)
        log = run_trials(unit, space, grid, b)
        t = clock.now()
        opt_b = true_optimum(unit, hp, price, _knob(space), t)[1]
        rec = grid.recommend_settings()
        res.loss["grid"][b] = opt_b - _true_profit(unit, rec, t, hp, price)
        res.infeasible["grid"] += not truly_feasible(unit, rec, t)
        res.violations["grid"] += log.violations
    return res, kept


# ----------------------------------------------------------------------------------------
#: Braiins units in the optional direct-V/f section (one per Braiins model in the mix).
CLOCK_UNITS = 6


def run_clock(specs: list[SimUnitSpec], econ: Economics, budgets: tuple[int, ...]) -> dict:
    """Direct frequency/voltage tuning on Braiins units vs random search, against truth."""
    hp, _ = econ.rates()
    price = econ.electricity_usd_per_kwh()
    picked = [s for s in specs if s.firmware == "braiins"][:CLOCK_UNITS]
    loss: dict[str, dict[int, list[float]]] = {"prior_gp": {}, "random": {}}
    viol = {"prior_gp": 0, "random": 0}
    err_viol = {"prior_gp": 0, "random": 0}
    infeasible = {"prior_gp": 0, "random": 0}
    gain_vs_limit: list[float] = []
    for spec in picked:
        prof = load_profiles()[spec.profile_id]
        caps = capabilities_from_profile(prof, spec.firmware, clock=True)
        space = build_space(spec.unit_id, prof, caps, kind="clock")
        for method in ("prior_gp", "random"):
            clock = SimClock(speed=0, start=START)
            unit = make_unit(spec, clock)
            if method == "prior_gp":
                ctx = PriorContext(prof, spec.firmware, ambient_c=unit.reading().env_temp_c)
                asker: Any = UnitOptimizer(
                    space, PhysicsPrior(), ctx, econ, OptimizerConfig(seed=spec.seed)
                )
            else:
                asker = RandomSearch(space, econ, seed=spec.seed)
            recs: dict[int, tuple[Settings, float]] = {}

            def cb(rec: Any, _a: Any = asker, _r: dict = recs, _c: SimClock = clock) -> None:
                if rec.index + 1 in budgets:
                    st = (
                        _a.recommend().settings
                        if isinstance(_a, UnitOptimizer)
                        else _a.recommend_settings()
                    )
                    _r[rec.index + 1] = (st, _c.now())

            log = run_trials(unit, space, asker, max(budgets), on_trial=cb)
            viol[method] += log.violations
            err_viol[method] += sum(
                1
                for r in log.records
                if r.obs.hw_err_share is not None and r.obs.hw_err_share > DEFAULT_HW_ERR_MAX_SHARE
            )
            for b, (st, t) in recs.items():
                best = true_optimum(unit, hp, price, "clock", t)[1]
                got = _true_profit(unit, st, t, hp, price)
                loss[method].setdefault(b, []).append((best - got) / best)
                infeasible[method] += not truly_feasible(unit, st, t)
                if method == "prior_gp" and b == max(budgets):
                    lim = true_optimum(unit, hp, price, "power_limit", t)[1]
                    gain_vs_limit.append((got - lim) / lim)
    return {
        "units": len(picked),
        "median_regret": {
            str(b): round(statistics.median(v), 4) for b, v in sorted(loss["prior_gp"].items())
        },
        "random_median_regret": {
            str(b): round(statistics.median(v), 4) for b, v in sorted(loss["random"].items())
        },
        "thermal_violations": viol["prior_gp"],
        "random_thermal_violations": viol["random"],
        "hw_error_violations": err_viol["prior_gp"],
        "random_hw_error_violations": err_viol["random"],
        "infeasible_recommendations": infeasible["prior_gp"],
        "random_infeasible_recommendations": infeasible["random"],
        "median_profit_vs_best_power_limit": round(statistics.median(gain_vs_limit), 4),
    }


def _true_options(unit: Any, t: float, hp: float, price: float) -> list[Option]:
    """The unit's true curve on a power-limit grid, plus sleep (for the exact optimum)."""
    import numpy as np

    prof = unit.profile
    opts: list[Option] = []
    th = prof.thermal
    for lim in np.arange(prof.power.min_w, prof.power.max_w + 1e-9, TRUE_CURVE_STEP_W):
        op = true_operating_point(unit, {"power_limit_w": float(lim)}, t)
        if op.hashrate_ths <= 0:
            continue
        if max(op.board_temp_c) > th.board_temp_max_c or max(op.chip_temp_c) > th.chip_temp_max_c:
            continue
        opts.append(
            Option(
                Settings(power_limit_w=float(lim)),
                op.power_w,
                op.hashrate_ths,
                profit_usd_per_day(op, hp, price),
            )
        )
    idle = true_operating_point(unit, {"power_mode": "sleep"}, t)
    opts.append(
        Option(
            Settings(power_mode="sleep"),
            idle.power_w,
            0.0,
            profit_usd_per_day(idle, hp, price),
            sleep=True,
        )
    )
    return opts


def _uniform(units: list[dict[str, Any]], scale: float, hp: float, price: float) -> tuple:
    """Every power-limit unit at ``scale`` × nameplate (clipped to its range): (profit, W)."""
    profit = power = 0.0
    for k in units:
        p = k["unit"].profile
        lim = min(max(scale * p.rated.power_w, p.power.min_w), p.power.max_w)
        op = true_operating_point(k["unit"], {"power_limit_w": lim}, k["t"])
        profit += profit_usd_per_day(op, hp, price)
        power += op.power_w
    return profit, power


def fit_uniform(
    units: list[dict[str, Any]], cap_w: float, hp: float, price: float
) -> tuple[float, float, float]:
    """Largest uniform fraction of nameplate (≤ 70 %) whose TRUE draw fits: (fraction, $, W)."""
    lo, hi = 0.0, BUDGET_CAP_FRACTION
    if _uniform(units, hi, hp, price)[1] <= cap_w:
        lo = hi
    else:
        for _ in range(UNIFORM_FIT_STEPS):
            mid = 0.5 * (lo + hi)
            if _uniform(units, mid, hp, price)[1] <= cap_w:
                lo = mid
            else:
                hi = mid
    profit, power = _uniform(units, lo, hp, price)
    return lo, profit, power


def run_budget(kept: list[dict[str, Any]], econ_budget: Economics) -> dict[str, Any]:
    """Site cap at 70 % of nameplate, in TRUE watts: ours vs uniform vs the exact optimum.

    Uniform throttling sets every unit to the same fraction of nameplate; firmware limits
    act on *reported* power, so at 70 % it can draw more than the cap. The fair baseline is
    the largest uniform fraction whose TRUE draw fits (bisection), and every method's true
    draw is reported next to the cap.
    """
    hp, _ = econ_budget.rates()
    price = econ_budget.electricity_usd_per_kwh()
    units = [k for k in kept if k["opt"].space.kind == "power_limit"]
    cap = BUDGET_CAP_FRACTION * sum(k["unit"].profile.rated.power_w for k in units)
    curves = []
    for k in units:
        opt: UnitOptimizer = k["opt"]
        options = curve_options(opt, econ_budget, sleep_allowance_w=SLEEP_ALLOWANCE_W)
        cur = min(options, key=lambda o: abs(o.power_w - opt.predict(opt.current).power_w))
        curves.append(UnitCurve(opt.space.miner_id, tuple(options), cur))
    plan = allocate(curves, cap)
    ours_profit = ours_power = 0.0
    slept = 0
    for k, a in zip(units, plan.allocations, strict=True):
        op = true_operating_point(k["unit"], a.option.settings.changed_fields(), k["t"])
        ours_profit += profit_usd_per_day(op, hp, price)
        ours_power += op.power_w
        slept += a.option.sleep
    naive_profit, naive_power = _uniform(units, BUDGET_CAP_FRACTION, hp, price)
    frac, uni_profit, uni_power = fit_uniform(units, cap, hp, price)
    true_sets = [_true_options(k["unit"], k["t"], hp, price) for k in units]
    exact, exact_profit = allocate_exact(true_sets, cap)
    exact_power = sum(o.power_w for o in exact)
    return {
        "units": len(units),
        "cap_kw": round(cap / 1000, 2),
        "price_usd_per_kwh": price,
        "ours_profit_usd_day": round(ours_profit, 3),
        "ours_true_kw": round(ours_power / 1000, 2),
        "ours_planned_kw": round(plan.power_w / 1000, 2),
        "ours_margin_kw": round(plan.margin_w / 1000, 2),
        "ours_slept": slept,
        "uniform_fraction_of_nameplate": round(frac, 4),
        "uniform_profit_usd_day": round(uni_profit, 3),
        "uniform_true_kw": round(uni_power / 1000, 2),
        "uniform_at_70pct_true_kw": round(naive_power / 1000, 2),
        "uniform_at_70pct_profit_usd_day": round(naive_profit, 3),
        "optimum_profit_usd_day": round(exact_profit, 3),
        "optimum_true_kw": round(exact_power / 1000, 2),
        "cap_respected": ours_power <= cap,
        "uniform_cap_respected": uni_power <= cap,
        "ratio_vs_uniform": round(ours_profit / uni_profit, 4) if uni_profit else None,
        "ratio_vs_uniform_at_70pct_over_cap": (
            round(ours_profit / naive_profit, 4) if naive_profit else None
        ),
        "ratio_vs_optimum": round(ours_profit / exact_profit, 4) if exact_profit else None,
    }


# ----------------------------------------------------------------------------------------
_RSS_SNIPPET = """
import logging, sys, time


def hwm():
    # peak RSS of this process image in MB; /proc's VmHWM resets at exec, unlike
    # getrusage's ru_maxrss, which inherits the forking parent's peak
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) for x in fh if x.startswith("VmHWM")) / 1024


t0 = time.perf_counter()
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
import numpy
import agent.optimize.budget, agent.optimize.space, agent.optimize.tariff
import agent.optimize.objective, agent.optimize.prior, agent.optimize.optimizer
import agent.optimize.fleet, agent.optimize.worker, agent.commands.optimize
MODE = "{mode}"
if MODE == "inproc":
    from agent.optimize.fleet import demo_round
    demo_round()
elif MODE == "worker":
    from agent.optimize.worker import run_round_in_worker
    run_round_in_worker({{"units": [{{"miner_id": "d", "model": "m50",
                                     "firmware": "whatsminer_v3", "ambient_c": 25.0,
                                     "trials": [{{"settings": {{"power_limit_w": w}},
                                                 "hashrate_ths": w / 29, "power_w": w,
                                                 "chip_temp_c": 75.0, "board_temp_c": 50.0,
                                                 "env_temp_c": 25.0}}
                                                for w in (3400.0, 2800.0, 2300.0, 1900.0)]}}]}})
heavy = [m for m in ("sklearn", "skopt", "scipy") if m in sys.modules]
print(f"{{hwm():.1f}} {{time.perf_counter() - t0:.3f}} {{','.join(heavy) or '-'}}")
"""


def measure_rss() -> dict[str, Any]:
    """Peak RSS (MB) of a fresh interpreter: optimiser imported / round in-process / worker."""
    out: dict[str, Any] = {}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for label, mode in (
        ("idle", "idle"),
        ("inprocess_round", "inproc"),
        ("worker_round", "worker"),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", _RSS_SNIPPET.format(mode=mode)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env=env,
        )
        rss, secs, heavy = proc.stdout.strip().splitlines()[-1].split()
        out[f"daemon_rss_mb_{label}"] = float(rss)
        out[f"daemon_seconds_{label}"] = float(secs)
        out[f"daemon_heavy_modules_{label}"] = heavy
    out["rss_mb_added_by_inprocess_round"] = round(
        out["daemon_rss_mb_inprocess_round"] - out["daemon_rss_mb_idle"], 1
    )
    return out


def _regrets(results: list[UnitResult], method: str, b: int, of: str = "profit") -> list[float]:
    """Regret fractions: of optimum profit (units whose optimum earns money) or of revenue."""
    if of == "profit":
        return [r.loss[method][b] / r.opt_profit[b] for r in results if r.opt_profit[b] > 0]
    return [r.loss[method][b] / r.opt_revenue[b] for r in results if r.opt_revenue[b] > 0]


def _median_map(
    results: list[UnitResult], method: str, budgets: tuple[int, ...], of: str = "profit"
) -> dict[str, float]:
    return {str(b): round(statistics.median(_regrets(results, method, b, of)), 4) for b in budgets}


def _quantile_map(
    results: list[UnitResult], method: str, budgets: tuple[int, ...], q: float
) -> dict[str, float]:
    out = {}
    for b in budgets:
        vals = sorted(_regrets(results, method, b))
        out[str(b)] = round(vals[min(len(vals) - 1, int(q * len(vals)))], 4)
    return out


def run_section(
    specs: list[SimUnitSpec],
    econ: Economics,
    strategies: list[str],
    prior: ResponsePrior | None,
    label: str,
    baselines: bool = True,
) -> tuple[list[UnitResult], list[dict[str, Any]]]:
    """Run every method on every unit (one line of progress per unit)."""
    results: list[UnitResult] = []
    kept: list[dict[str, Any]] = []
    for spec in specs:
        r, k = run_unit(spec, econ, strategies, BUDGETS, prior, baselines)
        results.append(r)
        kept.append(k)
        print(
            f"[{label}] {spec.unit_id:22s} {r.kind:11s} opt20=${r.opt_profit[20]:6.2f}/d "
            + " ".join(f"{m}={r.loss[m][20]:+.3f}$" for m in r.loss)
            + f" viol={r.violations[strategies[0]]} {r.ms_per_trial:.0f}ms/trial",
            flush=True,
        )
    return results, kept


def section_summary(results: list[UnitResult], strategies: list[str]) -> dict[str, Any]:
    """Regret, violations and true infeasibility of every method run in one section."""
    ours = strategies[0]
    methods = [m for m in (*strategies, "random", "grid", "stock") if m in results[0].loss]
    out: dict[str, Any] = {"median_regret": _median_map(results, ours, BUDGETS)}
    for m in methods[1:]:
        out[f"{m}_median_regret"] = _median_map(results, m, BUDGETS)
    out["p90_regret"] = _quantile_map(results, ours, BUDGETS, 0.9)
    for m in methods[1:]:
        if m != "stock":
            out[f"{m}_p90_regret"] = _quantile_map(results, m, BUDGETS, 0.9)
    out["units_scored"] = sum(1 for r in results if r.opt_profit[max(BUDGETS)] > 0)
    out["thermal_violations"] = sum(r.violations[ours] for r in results)
    for m in methods[1:]:
        if m in results[0].violations:
            out[f"{m}_thermal_violations"] = sum(r.violations[m] for r in results)
    out["infeasible_recommendations"] = {
        m: sum(r.infeasible.get(m, 0) for r in results) for m in methods
    }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a report; the last line is JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer units (under a minute)")
    ap.add_argument("--units", type=int, default=None, help="units (default 36, quick 5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--compare", action="store_true", help="also run prior_et, prior_only and skopt_gp"
    )
    ap.add_argument("--electricity", type=float, default=DEFAULT_PRICE_USD_PER_KWH)
    ap.add_argument("--hashprice", type=float, default=DEFAULT_HASHPRICE_USD_PER_TH_DAY)
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument(
        "--clock", action="store_true", help="also tune direct frequency/voltage on Braiins units"
    )
    ap.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="use this model bundle's response model as the prior of the main run",
    )
    ap.add_argument(
        "--perturb",
        type=float,
        default=None,
        help=f"perturbed-physics section half-width (default {DEFAULT_PERTURB}; "
        "0 = skip; --quick skips it unless given)",
    )
    ap.add_argument(
        "--prior-bundle",
        type=Path,
        default=None,
        help="also run a section with this bundle's response model as the prior",
    )
    args = ap.parse_args(argv)
    _quiet()
    n = args.units or (5 if args.quick else 36)
    perturb = args.perturb if args.perturb is not None else (0.0 if args.quick else DEFAULT_PERTURB)
    strategies = ["prior_gp"] + (["prior_et", "prior_only", "skopt_gp"] if args.compare else [])
    econ = Economics(hashprice=args.hashprice, tariff=FlatTariff(args.electricity))
    t_start = time.perf_counter()
    prior, prior_note = select_prior(args.bundle)
    specs = fleet_specs(n, args.seed)
    results, kept = run_section(specs, econ, strategies, prior, "main")
    budget = run_budget(kept, econ.with_price(BUDGET_PRICE_USD_PER_KWH))
    budget_default = run_budget(kept, econ)
    gains = [
        (r.jth_stock - r.jth_ours) / r.jth_stock
        for r in results
        if r.jth_ours
        and r.jth_stock
        and r.profit_ours is not None
        and r.profit_stock is not None
        and r.profit_ours >= r.profit_stock - 1e-9
    ]
    main_sec = section_summary(results, strategies)
    summary: dict[str, Any] = {
        "benchmark": "optimizer",
        "quick": args.quick,
        "units": n,
        "models": sorted({r.spec.profile_id for r in results}),
        "budgets": list(BUDGETS),
        "hashprice_usd_per_th_day": args.hashprice,
        "electricity_usd_per_kwh": args.electricity,
        "prior": prior_note,
        **{k: v for k, v in main_sec.items() if k != "infeasible_recommendations"},
        "regret_basis": "fraction of the unit's true optimum profit/day, over units whose "
        "optimum earns money; units losing money at every setting are counted apart",
        "units_unprofitable_at_optimum": sum(1 for r in results if r.opt_profit[max(BUDGETS)] <= 0),
        "median_regret_of_revenue_all_units": _median_map(
            results, strategies[0], BUDGETS, of="revenue"
        ),
        "mean_loss_usd_day": {
            str(b): round(statistics.fmean(r.loss[strategies[0]][b] for r in results), 4)
            for b in BUDGETS
        },
        "random_mean_loss_usd_day": {
            str(b): round(statistics.fmean(r.loss["random"][b] for r in results), 4)
            for b in BUDGETS
        },
        "infeasible_recommendations": main_sec["infeasible_recommendations"],
        "infeasible_basis": "recommendations (units x budgets) whose TRUE steady state is "
        "throttled, over a thermal limit or over the hardware-error limit; their regret is "
        "what they truly earn. Every method keeps the same limits (baselines.py)",
        "jth_gain_vs_stock": round(statistics.median(gains), 4) if gains else None,
        "units_profit_ge_stock": round(len(gains) / n, 3),
        "budget_profit_ratio_vs_uniform": budget["ratio_vs_uniform"],
        "budget_profit_ratio_vs_optimum": budget["ratio_vs_optimum"],
        "budget_basis": "TRUE draw and profit; uniform throttling scaled down until its true "
        "draw fits the cap",
        "budget": budget,
        "budget_at_default_price": budget_default,
        "optimizer_ms_per_trial": round(statistics.fmean(r.ms_per_trial for r in results), 1),
    }
    if args.compare:
        summary["strategy_median_regret"] = {
            s: _median_map(results, s, BUDGETS) for s in strategies
        }
        summary["strategy_thermal_violations"] = {
            s: sum(r.violations[s] for r in results) for s in strategies
        }
    if perturb > 0:
        with perturbed_physics(perturb):
            res_p, _ = run_section(specs, econ, strategies[:1], PhysicsPrior(), "perturbed")
        summary["perturbed"] = {"perturb": perturb, **section_summary(res_p, strategies[:1])}
    if args.prior_bundle is not None:
        b_prior, b_note = select_prior(args.prior_bundle)
        if isinstance(b_prior, PhysicsPrior):
            summary["bundle_prior"] = {"error": b_note}
        else:
            res_b, _ = run_section(specs, econ, strategies[:1], b_prior, "bundle", baselines=False)
            summary["bundle_prior"] = {
                "prior": b_note,
                "health_features": "unknown (none in the trials loop): the bundle runs "
                "with every health_* input missing",
                "baselines": "random and grid search do not use the prior: see the main run",
                **section_summary(res_b, strategies[:1]),
            }
    if args.clock:
        summary["clock"] = run_clock(specs, econ, BUDGETS)
    if not args.no_rss:
        summary.update(measure_rss())
    targets = {
        "median_regret_20_le_2pct": summary["median_regret"]["20"] <= TARGET_MEDIAN_REGRET_20,
        "thermal_violations_0": summary["thermal_violations"] == 0,
        "infeasible_recommendations_0": main_sec["infeasible_recommendations"][strategies[0]] == 0,
        "budget_cap_respected_true_power": bool(
            budget["cap_respected"] and budget_default["cap_respected"]
        ),
    }
    summary["targets"] = targets
    summary["wall_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(summary))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
