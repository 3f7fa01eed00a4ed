"""Site power budget: share a site cap (or survive a price spike) across units for profit.

Each unit brings a fitted curve — a few options (settings, watts, TH/s, profit) from its
surrogate, plus sleep. Allocation is a multiple-choice knapsack: pick one option per unit,
maximise total profit, keep total watts under the cap.

Method (:func:`allocate`): Lagrangian relaxation. For a shadow price λ (USD per W per day)
every unit independently picks ``argmax profit − λ·W``; total watts fall as λ rises, so a
bisection finds the smallest λ that fits the cap. This *is* "throttle where the marginal
$/W is lowest": at the optimum every unit runs where its marginal profit per watt equals
λ, and units whose whole curve earns less than λ per watt go to sleep (least efficient
first). The relaxation is exact on the concave hull of each curve; the leftover capacity
is then filled greedily by the upgrades with the best Δprofit/ΔW; the same repair is also
started from a few lower prices (shedding the overshoot first, cheapest loss per watt),
and the best plan wins, which closes most of the gap that sleep — a jump, not a slope —
leaves. It costs O(units × options × log) — fine for thousands of units, where the
exact DP (:func:`allocate_exact`, kept for benchmarks and tests) is O(units × options ×
cap/resolution) and is not.

Minimum on/off times stop thermal cycling (power cycling causes premature board failures,
landscape.md §8d): a unit woken less than ``min_on_s`` ago is not put back to sleep, and a
unit slept less than ``min_off_s`` ago is not woken — unless the cap cannot be met any
other way, since the cap protects a breaker and wins (logged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import structlog

from agent.errors import ConfigError
from agent.snapshot import Settings

log = structlog.get_logger(__name__)

#: Minimum time a woken unit stays on, and a slept unit stays off, seconds. Several
#: sleep/wake cycles per day shorten board life (Gridless, landscape.md §8d) and Hashman
#: plans power modes on a 48-h schedule to avoid needless transitions (§3); at most one
#: cycle per two hours keeps a unit under a dozen cycles a day even in a volatile market.
#: Engineering choice, not a published figure.
MIN_ON_S = 2 * 3600.0
MIN_OFF_S = 3600.0

#: Bisection steps on the shadow price; 60 halvings of the bracket reach float precision.
LAMBDA_BISECTION_STEPS = 60

#: One-sided z for the site's power uncertainty kept free under the cap (95 %).
POWER_MARGIN_Z = 1.645

#: Correlation assumed between units' power-prediction errors when sizing that margin.
#: Errors are not independent: units of one model share the prior's structural error, and
#: one calibration rule extrapolates every unit's curve the same way. Simulator probe (12
#: units, 3 trials each, seeds 1–3, caps at 50/70/90 % of nameplate; the margin taken on
#: the chosen plan): independent errors (0) overdrew the cap in TRUE power in 5 of 9 cases
#: (up to +0.9 %), 0.25 held with 0.2 % to spare, 0.5 held with 1.3–5.7 %. Engineering
#: choice; ``tests/optimize/test_budget_truth.py`` checks true draw against the cap.
POWER_ERROR_CORRELATION = 0.5

#: Re-solves allowed while shrinking the effective cap until plan + margin fits; each one
#: removes the remaining overshoot, and the margin changes little between them.
MARGIN_ITERATIONS = 12

#: Watt resolution of the exact knapsack DP; options are rounded *up* to it so the exact
#: answer never exceeds the cap.
EXACT_RESOLUTION_W = 10.0


@dataclass(frozen=True, slots=True)
class Option:
    """One way to run a unit: its settings and expected watts, TH/s and profit (USD/day)."""

    settings: Settings
    power_w: float
    hashrate_ths: float
    profit_usd_day: float
    power_sd: float = 0.0
    sleep: bool = False


@dataclass(frozen=True, slots=True)
class UnitCurve:
    """A unit's options (from its fitted curve) and its on/off history."""

    miner_id: str
    options: tuple[Option, ...]
    current: Option
    #: Seconds since the unit last woke (if on) or slept (if asleep); ``None`` = long ago.
    since_switch_s: float | None = None

    @property
    def is_on(self) -> bool:
        """Whether the unit currently mines."""
        return not self.current.sleep


@dataclass(frozen=True, slots=True)
class Allocation:
    """The option chosen for one unit, and why."""

    miner_id: str
    option: Option
    action: str  # keep | throttle | raise | sleep | wake
    locked: bool = False


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """A whole-site allocation."""

    allocations: tuple[Allocation, ...]
    cap_w: float | None
    power_w: float
    profit_usd_day: float
    #: Marginal profit per watt at the cap (USD per W per day); 0 when the cap does not bind.
    shadow_price: float
    #: Whether expected draw plus the margin fits the cap.
    feasible: bool
    overrides: tuple[str, ...] = field(default=())
    #: Watts kept free under the cap for the plan's power uncertainty.
    margin_w: float = 0.0

    def by_id(self) -> dict[str, Allocation]:
        """Allocations keyed by miner id."""
        return {a.miner_id: a for a in self.allocations}


def _allowed(curve: UnitCurve, min_on_s: float, min_off_s: float) -> list[Option]:
    """Options that respect the unit's minimum on/off time."""
    since = curve.since_switch_s
    if since is None or math.isinf(since):
        return list(curve.options)
    if curve.is_on and since < min_on_s:
        return [o for o in curve.options if not o.sleep] or list(curve.options)
    if not curve.is_on and since < min_off_s:
        return [o for o in curve.options if o.sleep] or list(curve.options)
    return list(curve.options)


def _pick(options: Sequence[Option], lam: float) -> Option:
    return max(options, key=lambda o: (o.profit_usd_day - lam * o.power_w, -o.power_w))


def _action(curve: UnitCurve, chosen: Option) -> str:
    if chosen.sleep and curve.is_on:
        return "sleep"
    if not chosen.sleep and not curve.is_on:
        return "wake"
    if chosen.settings == curve.current.settings:
        return "keep"
    return "throttle" if chosen.power_w < curve.current.power_w else "raise"


def _fill(option_sets: list[list[Option]], choice: list[Option], cap: float) -> None:
    """Greedy fill of spare capacity: best Δprofit/ΔW upgrade first, while one fits."""
    spare = cap - sum(o.power_w for o in choice)
    while True:
        best: tuple[float, int, Option] | None = None
        for i, opts in enumerate(option_sets):
            cur = choice[i]
            for o in opts:
                dw = o.power_w - cur.power_w
                dp = o.profit_usd_day - cur.profit_usd_day
                if dp <= 0 or dw > spare:
                    continue
                ratio = dp / dw if dw > 0 else math.inf
                if best is None or ratio > best[0]:
                    best = (ratio, i, o)
        if best is None:
            return
        _, i, o = best
        spare -= o.power_w - choice[i].power_w
        choice[i] = o


def _shed(option_sets: list[list[Option]], choice: list[Option], cap: float) -> None:
    """Greedy shedding down to the cap: cheapest Δprofit per watt saved first."""
    over = sum(o.power_w for o in choice) - cap
    while over > 0:
        best: tuple[float, int, Option] | None = None
        for i, opts in enumerate(option_sets):
            cur = choice[i]
            for o in opts:
                dw = cur.power_w - o.power_w
                if dw <= 0:
                    continue
                loss = max(cur.profit_usd_day - o.profit_usd_day, 0.0) / min(dw, over)
                if best is None or loss < best[0]:
                    best = (loss, i, o)
        if best is None:
            return
        _, i, o = best
        over -= choice[i].power_w - o.power_w
        choice[i] = o


#: Fractions of the bisected shadow price from which the greedy repair is also started; a
#: lower price overshoots the cap and is shed back, which closes most of the duality gap
#: that sleeping (a jump, not a slope) leaves.
LAMBDA_RESTARTS = (1.0, 0.9, 0.75, 0.5, 0.25, 0.0)


def _solve(option_sets: list[list[Option]], cap: float | None) -> tuple[list[Option], float]:
    """Lagrangian bisection, then shed/fill repairs from a few prices; best plan wins."""
    choice = [_pick(opts, 0.0) for opts in option_sets]
    if cap is None or sum(o.power_w for o in choice) <= cap:
        return choice, 0.0
    lo, hi = 0.0, 1.0
    while sum(o.power_w for o in (_pick(s, hi) for s in option_sets)) > cap and hi < 1e6:
        hi *= 2.0
    for _ in range(LAMBDA_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if sum(o.power_w for o in (_pick(s, mid) for s in option_sets)) > cap:
            lo = mid
        else:
            hi = mid
    best: list[Option] | None = None
    for frac in LAMBDA_RESTARTS:
        cand = [_pick(s, hi * frac) for s in option_sets]
        _shed(option_sets, cand, cap)
        _fill(option_sets, cand, cap)
        if sum(o.power_w for o in cand) > cap:
            continue
        if best is None or sum(o.profit_usd_day for o in cand) > sum(
            o.profit_usd_day for o in best
        ):
            best = cand
    return (best if best is not None else [_pick(s, hi) for s in option_sets]), hi


def allocate(
    curves: Sequence[UnitCurve],
    cap_w: float | None,
    *,
    min_on_s: float = MIN_ON_S,
    min_off_s: float = MIN_OFF_S,
    margin_z: float = POWER_MARGIN_Z,
    correlation: float = POWER_ERROR_CORRELATION,
) -> BudgetPlan:
    """Choose one option per unit to maximise site profit with total watts under ``cap_w``.

    ``cap_w=None`` means no cap: each unit takes its own best option (which is sleep when
    every running option loses money, e.g. during a price spike). With a cap, the plan's
    expected draw plus ``margin_z`` σ of its uncertainty (``site_power_sd``) stays under
    it: the cap protects a breaker, which trips on true power, not on a forecast.
    """
    if cap_w is not None and cap_w < 0:
        raise ConfigError("site cap must be non-negative")
    for c in curves:
        if not c.options:
            raise ConfigError(f"{c.miner_id}: no options to allocate from")
    option_sets = [_allowed(c, min_on_s, min_off_s) for c in curves]
    overrides: list[str] = []
    margin = 0.0
    if cap_w is None:
        choice, lam = _solve(option_sets, None)
    else:
        lowest = [min(s, key=lambda o: o.power_w) for s in option_sets]
        floor = sum(o.power_w for o in lowest)
        if floor + margin_z * site_power_sd(lowest, correlation) > cap_w:
            # Locked-on units make the cap unreachable: the cap (a breaker) wins.
            for i, c in enumerate(curves):
                if len(option_sets[i]) < len(c.options):
                    option_sets[i] = list(c.options)
                    overrides.append(c.miner_id)
            log.warning("budget_min_time_override", units=len(overrides), cap_w=cap_w)
        # the margin belongs to the plan actually chosen (its options' own uncertainty):
        # shrink the effective cap by the overshoot until plan + margin fits
        eff_cap = cap_w
        for _ in range(MARGIN_ITERATIONS):
            choice, lam = _solve(option_sets, eff_cap)
            margin = margin_z * site_power_sd(choice, correlation)
            over = sum(o.power_w for o in choice) + margin - cap_w
            if over <= 0:
                break
            eff_cap -= over
    power = sum(o.power_w for o in choice)
    allocs = tuple(
        Allocation(
            c.miner_id,
            o,
            _action(c, o),
            locked=len(option_sets[i]) < len(c.options),
        )
        for i, (c, o) in enumerate(zip(curves, choice, strict=True))
    )
    return BudgetPlan(
        allocations=allocs,
        cap_w=cap_w,
        power_w=power,
        profit_usd_day=sum(o.profit_usd_day for o in choice),
        shadow_price=lam,
        feasible=cap_w is None or power + margin <= cap_w + 1e-6,
        overrides=tuple(overrides),
        margin_w=margin,
    )


def site_power_sd(choice: Sequence[Option], correlation: float) -> float:
    """1-σ of the site's total draw for ``choice``, errors correlated by ``correlation``."""
    sds = [o.power_sd for o in choice]
    var = (1.0 - correlation) * sum(x * x for x in sds) + correlation * sum(sds) ** 2
    return math.sqrt(max(var, 0.0))


def _bins(power_w: float, resolution_w: float) -> int:
    """Watts rounded up to whole DP bins."""
    return math.ceil(max(power_w, 0.0) / resolution_w - 1e-9)


def allocate_exact(
    option_sets: Sequence[Sequence[Option]],
    cap_w: float,
    resolution_w: float = EXACT_RESOLUTION_W,
) -> tuple[list[Option], float]:
    """Exact multiple-choice knapsack by dynamic programming (benchmarks, tests).

    Weights are rounded up to ``resolution_w``, so the result never exceeds the cap; it is
    optimal for the rounded weights. Returns the choice and its total profit.
    """
    n_bins = int(cap_w // resolution_w)
    if n_bins < 0:
        raise ConfigError("cap must be non-negative")
    neg = -np.inf
    best = np.full(n_bins + 1, neg)
    best[0] = 0.0
    back: list[np.ndarray] = []
    for opts in option_sets:
        new = np.full(n_bins + 1, neg)
        arg = np.full(n_bins + 1, -1, dtype=np.int32)
        for k, o in enumerate(opts):
            w = _bins(o.power_w, resolution_w)
            if w > n_bins:
                continue
            cand = np.full(n_bins + 1, neg)
            cand[w:] = best[: n_bins + 1 - w] + o.profit_usd_day
            better = cand > new
            new[better] = cand[better]
            arg[better] = k
        best = new
        back.append(arg)
    end = int(np.argmax(best))
    if not np.isfinite(best[end]):
        raise ConfigError("no allocation fits under the cap")
    total = float(best[end])
    choice: list[Option] = []
    b = end
    for opts, arg in zip(reversed(option_sets), reversed(back), strict=True):
        k = int(arg[b])
        o = opts[k]
        choice.append(o)
        b -= _bins(o.power_w, resolution_w)
    choice.reverse()
    return choice, total
