"""Constrained ask/tell optimiser for one unit.

``ask()`` returns the next setting to try: the candidate that maximises expected
improvement in profit among those (a) inside the profile ∩ driver bounds, (b) within one
trial's step of the current setting (trust region), and (c) feasible with probability at
least ``p_feasible`` under the thermal (board + chip temperature) and hardware-error
models. When the most promising feasible point lies beyond the trust region, the step
goes toward it. When no candidate in reach is confidently feasible, the step goes to the
reachable candidate most likely to be feasible (the safe retreat). ``tell()`` adds a
measured trial; ``recommend()`` names the best *measured* setting still believed feasible.

Strategies (compared in benchmarks/optimizer.py):

* ``prior_gp`` / ``prior_et`` — calibrated prior + scikit-optimize GP / extra-trees residual
  on hashrate, power and hardware errors, our own constrained EI over the candidate grid;
* ``prior_only`` — calibration without a residual model;
* ``skopt_gp`` — scikit-optimize ``Optimizer("GP")`` ask/tell directly on measured profit
  (penalised by the size of any violation), seeded with the prior's best setting; its asks
  pass through the same trust region and chance constraint.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import structlog

from agent.errors import ConfigError, ModelError
from agent.optimize.objective import Economics, switching_cost_per_day, violation_size
from agent.optimize.prior import (
    HW_ERR_SD_SHARE,
    POWER_LIMIT_REL_SD,
    POWER_REL_SD,
    PhysicsPrior,
    PriorContext,
    ResponsePrior,
)
from agent.optimize.space import DEFAULT_TRUST_FRACTION, SearchSpace
from agent.optimize.surrogate import (
    Estimator,
    OutputModel,
    OutputSpec,
    ThermalModel,
    expected_improvement,
    prob_below,
)
from agent.snapshot import Settings

log = structlog.get_logger(__name__)

#: Default probability a proposed setting must have of respecting every constraint.
DEFAULT_P_FEASIBLE = 0.95

#: Largest tolerated hardware-error share of work. Engineering choice: 1e-3 is ~2,300× the
#: real S19 Pro baseline (4.3e-7, see prior.HW_ERR_PRIOR_SHARE) yet costs only 0.1 % of
#: hashrate, so it flags undervolted chips long before they cost real money.
DEFAULT_HW_ERR_MAX_SHARE = 1e-3

#: Measurement noise of a settled trial (1-σ). The 5-second hashrate reads within ~1.5 % of
#: the average on real units (S19 Pro −1.1 %, S19k Pro −1.8 %: fixtures cited in
#: simulator/unit.py); a trial averages five minutes of them (trials.MEASURE_WINDOW_S) and
#: ambient drifts between trials, so 0.5 % is kept. Wall power: 0.5 %. Sensors: ~1 °C.
HASHRATE_NOISE_REL = 0.005
POWER_NOISE_REL = 0.005
TEMP_NOISE_C = 1.0
HW_ERR_NOISE_SHARE = 1e-6

#: Prior 1-σ of the additive calibration term of hashrate and power, as a fraction of the
#: nameplate figure. With it the calibration is affine, so two trials at different settings
#: already pin the local slope (marginal TH per W), which is what decides the optimum.
CALIBRATION_OFFSET_FRACTION = 0.1

#: Prior 1-σ of the hashrate calibration scale: per-unit spread beyond the prior's own
#: (board bins ±3 % at 2σ and chip quality averaging, landscape.md §8a–b) plus model error.
HASHRATE_SCALE_SD = 0.08

#: USD/day of penalty per unit of violation size (a violation of one "scale" — 1 °C or one
#: error-share limit — costs this much) for the ``skopt_gp`` strategy's penalised objective.
#: Scaled per unit to its stock revenue at run time; this is the fraction of revenue.
PENALTY_REVENUE_FRACTION = 0.05

#: Ambient change (°C) after which a prior that reads ambient is re-evaluated on the grid.
AMBIENT_REPRIOR_C = 1.0

#: Watts within which two settings count as drawing the same power when checking that a
#: safe retreat does not raise power (below the 0.5 % trial noise of any unit).
POWER_TIE_W = 1.0

#: z of the two-sided 90 % interval reported around expected profit changes.
INTERVAL_Z = 1.645

Strategy = Literal["prior_gp", "prior_et", "prior_only", "skopt_gp"]


@dataclass(frozen=True, slots=True)
class Observation:
    """One settled trial: what the unit did at ``settings``."""

    settings: Settings
    hashrate_ths: float
    power_w: float
    chip_temp_c: float | None
    board_temp_c: float | None = None
    env_temp_c: float | None = None
    hw_err_share: float | None = None
    throttled: bool = False


@dataclass(frozen=True, slots=True)
class OptimizerConfig:
    """Tuning of the constrained optimiser."""

    p_feasible: float = DEFAULT_P_FEASIBLE
    strategy: Strategy = "prior_gp"
    #: Degrees kept below the profile's limits on top of the probability requirement.
    temp_margin_c: float = 0.0
    hw_err_max_share: float = DEFAULT_HW_ERR_MAX_SHARE
    #: Largest change per trial as a fraction of each knob's range (see space.py).
    trust_fraction: float = DEFAULT_TRUST_FRACTION
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.p_feasible < 1.0:
            raise ConfigError("p_feasible must lie in [0.5, 1)")
        if self.strategy not in ("prior_gp", "prior_et", "prior_only", "skopt_gp"):
            raise ConfigError(f"unknown optimiser strategy {self.strategy!r}")
        if not 0 < self.trust_fraction <= 1:
            raise ConfigError("trust_fraction must lie in (0, 1]")


@dataclass(frozen=True, slots=True)
class Posterior:
    """The surrogate's belief at one setting."""

    settings: Settings
    hashrate_ths: float
    hashrate_sd: float
    power_w: float
    power_sd: float
    chip_temp_c: float
    chip_temp_sd: float
    board_temp_c: float
    board_temp_sd: float
    hw_err_share: float
    hw_err_sd: float
    profit_usd_day: float
    profit_sd: float
    p_feasible: float
    chip_limit_c: float
    board_limit_c: float
    hw_err_limit: float
    observed: int = 0


@dataclass(slots=True)
class _Trial:
    u: np.ndarray
    obs: Observation
    violated: bool


class UnitOptimizer:
    """Prior-calibrated, residual-corrected, chance-constrained optimiser for one unit."""

    def __init__(
        self,
        space: SearchSpace,
        prior: ResponsePrior,
        context: PriorContext,
        economics: Economics,
        config: OptimizerConfig | None = None,
        current: Settings | None = None,
    ) -> None:
        self.space = space
        self.prior = prior
        self.context = context
        self.economics = economics
        self.config = cfg = config or OptimizerConfig()
        est: Estimator = "ET" if cfg.strategy == "prior_et" else "GP"
        if cfg.strategy == "prior_only":
            est = "none"
        s = cfg.seed
        rated = context.profile.rated
        self.models = {
            "hashrate": OutputModel(
                OutputSpec(
                    "hashrate_ths",
                    HASHRATE_SCALE_SD,
                    CALIBRATION_OFFSET_FRACTION * rated.hashrate_ths,
                    0.0,
                    HASHRATE_NOISE_REL,
                ),
                est,
                s,
            ),
            "power": OutputModel(
                OutputSpec(
                    "power_w",
                    # a firmware limit is held on the firmware's own (biased) power estimate
                    POWER_LIMIT_REL_SD
                    if space.kind in ("power_limit", "power_percent")
                    else POWER_REL_SD,
                    CALIBRATION_OFFSET_FRACTION * rated.power_w,
                    0.0,
                    POWER_NOISE_REL,
                ),
                est,
                s + 1,
            ),
            "hw_err": OutputModel(
                OutputSpec(
                    "hw_err_share",
                    0.5,
                    HW_ERR_SD_SHARE,
                    HW_ERR_NOISE_SHARE,
                    0.0,
                    resid_rel=0.5,
                    resid_abs=HW_ERR_SD_SHARE,
                ),
                est,
                s + 2,
            ),
        }
        physics = prior if isinstance(prior, PhysicsPrior) else PhysicsPrior()
        tp = physics.thermal_prior(context.profile)
        m = cfg.temp_margin_c
        self.thermal = ThermalModel(
            dataclasses.replace(tp, board_max_c=tp.board_max_c - m, chip_max_c=tp.chip_max_c - m),
            seed=s + 3,
        )
        self.trials: list[_Trial] = []
        self.current = space.check(current) if current is not None else space.stock()
        self._grid_u = space.grid()
        self._grid_settings = [space.from_unit(x) for x in self._grid_u]
        self._grid_mu = self._prior_arrays(self._grid_settings)
        self._skopt: Any = None

    # ----- prior ----------------------------------------------------------------------------

    def _prior_arrays(self, settings: list[Settings]) -> np.ndarray:
        """Prior (hashrate, power, hw-error share) per setting, shape (n, 3)."""
        rows = []
        for st in settings:
            r = self.prior.predict(st, self.context)
            rows.append((r.hashrate_ths, r.power_w, r.hw_err_share))
        arr = np.array(rows, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ModelError(f"{self.space.miner_id}: prior gave non-finite predictions")
        return arr

    def _set_ambient(self, ambient_c: float) -> None:
        """Track the unit's latest ambient; re-run the prior only if it depends on ambient."""
        old = self.context.ambient
        self.context = dataclasses.replace(self.context, ambient_c=ambient_c)
        if not isinstance(self.prior, PhysicsPrior) and abs(ambient_c - old) > AMBIENT_REPRIOR_C:
            self._grid_mu = self._prior_arrays(self._grid_settings)

    def update_context(self, context: PriorContext) -> None:
        """Take a new ambient or features: re-evaluate the prior on the grid (trials are kept)."""
        self.context = context
        self._grid_mu = self._prior_arrays(self._grid_settings)

    # ----- posterior ------------------------------------------------------------------------

    def _posterior(
        self, u: np.ndarray, mu: np.ndarray, economics: Economics | None = None
    ) -> dict[str, np.ndarray]:
        hp, c = (economics or self.economics).rates()
        h, hs = self.models["hashrate"].predict(u, mu[:, 0])
        p, ps = self.models["power"].predict(u, mu[:, 1])
        e, es = self.models["hw_err"].predict(u, mu[:, 2])
        th = self.thermal.predict(p, ps, self.context.ambient)
        p_feas = th["p_ok"] * prob_below(e, es, self.config.hw_err_max_share)
        return {
            "h": np.maximum(h, 0.0),
            "hs": hs,
            "p": np.maximum(p, 0.0),
            "ps": ps,
            "e": e,
            "es": es,
            "chip": th["chip"],
            "chip_sd": th["chip_sd"],
            "board": th["board"],
            "board_sd": th["board_sd"],
            "profit": hp * np.maximum(h, 0.0) - c * np.maximum(p, 0.0),
            "profit_sd": np.sqrt((hp * hs) ** 2 + (c * ps) ** 2),
            "p_feas": p_feas,
        }

    def _grid_posterior(self, economics: Economics | None = None) -> dict[str, np.ndarray]:
        return self._posterior(self._grid_u, self._grid_mu, economics)

    def _as_posterior(self, a: dict[str, np.ndarray], i: int, settings: Settings) -> Posterior:
        seen = sum(1 for t in self.trials if t.obs.settings == settings)
        tp = self.thermal.prior
        return Posterior(
            settings=settings,
            hashrate_ths=float(a["h"][i]),
            hashrate_sd=float(a["hs"][i]),
            power_w=float(a["p"][i]),
            power_sd=float(a["ps"][i]),
            chip_temp_c=float(a["chip"][i]),
            chip_temp_sd=float(a["chip_sd"][i]),
            board_temp_c=float(a["board"][i]),
            board_temp_sd=float(a["board_sd"][i]),
            hw_err_share=float(a["e"][i]),
            hw_err_sd=float(a["es"][i]),
            profit_usd_day=float(a["profit"][i]),
            profit_sd=float(a["profit_sd"][i]),
            p_feasible=float(a["p_feas"][i]),
            chip_limit_c=tp.chip_max_c,
            board_limit_c=tp.board_max_c,
            hw_err_limit=self.config.hw_err_max_share,
            observed=seen,
        )

    def predict_many(self, settings: list[Settings]) -> list[Posterior]:
        """Return the surrogate's belief at each of ``settings`` (all must lie in the space)."""
        for st in settings:
            self.space.check(st)
        u = np.array([self.space.to_unit(st) for st in settings])
        a = self._posterior(u, self._prior_arrays(settings))
        return [self._as_posterior(a, i, st) for i, st in enumerate(settings)]

    def predict(self, settings: Settings) -> Posterior:
        """Return the surrogate's belief at ``settings`` (which must lie in the space)."""
        return self.predict_many([settings])[0]

    # ----- ask / tell -----------------------------------------------------------------------

    def _measured_feasible(self) -> list[Settings]:
        out: list[Settings] = []
        for t in self.trials:
            if not t.violated and t.obs.settings not in out:
                out.append(t.obs.settings)
        return out

    def _incumbent(self) -> float:
        """Best posterior-mean profit among measured feasible settings (else the current)."""
        cands = self._measured_feasible()
        posts = self.predict_many(cands) if cands else []
        ok = [b.profit_usd_day for b in posts if b.p_feasible >= self.config.p_feasible]
        return max(ok) if ok else self.predict(self.current).profit_usd_day

    def _nearest(self, target: np.ndarray) -> int:
        return int(np.argmin(np.sum((self._grid_u - target.reshape(1, -1)) ** 2, axis=1)))

    def ask(self) -> Settings:
        """Return the next setting to try (bounded, trust-limited, chance-constrained)."""
        post = self._grid_posterior()
        cur_u = self.space.to_unit(self.current)
        feasible = post["p_feas"] >= self.config.p_feasible
        reach = self.space.in_trust(cur_u, self._grid_u)
        local = feasible & reach
        if not local.any():
            return self._retreat(cur_u, post, reach)
        if self.config.strategy == "skopt_gp" and self.trials:
            return self._ask_skopt(post, cur_u, local)
        acq = expected_improvement(post["profit"], post["profit_sd"], self._incumbent())
        i_local = int(np.argmax(np.where(local, acq, -np.inf)))
        i_glob = int(np.argmax(np.where(feasible, acq, -np.inf)))
        if not reach[i_glob] and acq[i_glob] > acq[i_local]:
            j = self._nearest(self.space.toward(cur_u, self._grid_u[i_glob]))
            if local[j]:
                return self._grid_settings[j]
        return self._grid_settings[i_local]

    def _retreat(
        self, cur_u: np.ndarray, post: dict[str, np.ndarray], reach: np.ndarray
    ) -> Settings:
        """Nothing in reach is confidently feasible: move only if that is measurably safer.

        Candidates are the reachable grid points and the measured settings that crossed no
        limit and are one step away. First choice: one of them that *is* confidently
        feasible (a measured setting can be, off the grid), the most profitable. Else the
        safe retreat: the candidate with the highest P(feasible), provided it beats the
        current setting's and draws no more power (ties go to profit). Else stay and
        measure the current setting again ("needs observation") — never a step to a
        setting the models think riskier than where the unit already is.
        """
        gate = self.config.p_feasible
        now = self.predict(self.current)
        known = [
            st
            for st in self._measured_feasible()
            if self.space.in_trust(cur_u, self.space.to_unit(st).reshape(1, -1))[0]
        ]
        # (p_feasible, profit, power, settings) of every candidate
        cands = [
            (b.p_feasible, b.profit_usd_day, b.power_w, b.settings)
            for b in (self.predict_many(known) if known else [])
        ]
        cands += [
            (
                float(post["p_feas"][i]),
                float(post["profit"][i]),
                float(post["p"][i]),
                self._grid_settings[int(i)],
            )
            for i in np.flatnonzero(reach)
        ]
        ok = [c for c in cands if c[0] >= gate]
        if ok:
            target = max(ok, key=lambda c: c[1])[3]
            log.info(
                "optimizer_known_good", miner=self.space.miner_id, target=target.changed_fields()
            )
            return target
        safer = [c for c in cands if c[0] > now.p_feasible and c[2] <= now.power_w + POWER_TIE_W]
        if not safer:
            log.info("optimizer_hold", miner=self.space.miner_id, p_feasible=now.p_feasible)
            return self.current
        p_best, _, _, target = max(safer, key=lambda c: (round(c[0], 3), c[1]))
        log.info(
            "optimizer_safe_retreat",
            miner=self.space.miner_id,
            target=target.changed_fields(),
            p_feasible=p_best,
            p_feasible_current=now.p_feasible,
        )
        return target

    def safety_target(self, gate: float | None = None) -> Posterior | None:
        """For a unit whose current setting is below the gate: the best safe way down.

        The most profitable grid setting that is confidently feasible and draws no more
        power than the current one (any distance: lowering power only cools the unit), or
        ``None`` when there is none (the caller may then propose sleep).
        """
        gate = self.config.p_feasible if gate is None else gate
        now = self.predict(self.current)
        post = self._grid_posterior()
        ok = (post["p_feas"] >= gate) & (post["p"] <= now.power_w + POWER_TIE_W)
        if not ok.any():
            return None
        i = int(np.argmax(np.where(ok, post["profit"], -np.inf)))
        return self._as_posterior(post, i, self._grid_settings[i])

    def sleep_posterior(self, settings: Settings, sleep_power_w: float) -> Posterior:
        """Belief for a sleeping unit: no work, idle draw, always feasible (nothing hashes)."""
        _, c = self.economics.rates()
        amb = self.context.ambient
        tp = self.thermal.prior
        return Posterior(
            settings=settings,
            hashrate_ths=0.0,
            hashrate_sd=0.0,
            power_w=sleep_power_w,
            power_sd=0.0,
            chip_temp_c=amb,
            chip_temp_sd=0.0,
            board_temp_c=amb,
            board_temp_sd=0.0,
            hw_err_share=0.0,
            hw_err_sd=0.0,
            profit_usd_day=-c * sleep_power_w,
            profit_sd=0.0,
            p_feasible=1.0,
            chip_limit_c=tp.chip_max_c,
            board_limit_c=tp.board_max_c,
            hw_err_limit=self.config.hw_err_max_share,
        )

    def _ask_skopt(
        self, post: dict[str, np.ndarray], cur_u: np.ndarray, local: np.ndarray
    ) -> Settings:
        """Take scikit-optimize's own ask, moved into the trust region and the feasible set."""
        with warnings.catch_warnings():
            # skopt warns when its acquisition repeats a told point and substitutes a random
            # one; that is its documented behaviour, not a fault worth a log line per trial
            warnings.simplefilter("ignore", UserWarning)
            x = np.asarray(self._skopt.ask(), dtype=float)
        j = self._nearest(self.space.toward(cur_u, x))
        if local[j]:
            return self._grid_settings[j]
        cand = np.where(local)[0]
        k = cand[int(np.argmin(np.sum((self._grid_u[cand] - x) ** 2, axis=1)))]
        return self._grid_settings[int(k)]

    def first_guess(self) -> Settings:
        """Return the prior's best confidently feasible setting, one trust step from the current.

        The step lands on the reachable, confidently feasible grid point nearest the
        straight step toward the best one (the step's own grid point may not be feasible);
        with none reachable, the current setting.
        """
        post = self._grid_posterior()
        feasible = post["p_feas"] >= self.config.p_feasible
        cur_u = self.space.to_unit(self.current)
        local = feasible & self.space.in_trust(cur_u, self._grid_u)
        if not local.any():
            return self.current
        i = int(np.argmax(np.where(feasible, post["profit"], -np.inf)))
        step = self.space.toward(cur_u, self._grid_u[i]).reshape(1, -1)
        dist = np.sum((self._grid_u - step) ** 2, axis=1)
        return self._grid_settings[int(np.argmin(np.where(local, dist, np.inf)))]

    def set_current(self, settings: Settings) -> None:
        """Record that the unit now runs ``settings`` (e.g. put back after a trial campaign)."""
        self.current = self.space.check(settings)

    def tell(self, obs: Observation) -> None:
        """Add one settled trial; the unit now runs ``obs.settings``."""
        settings = self.space.check(obs.settings)
        u = self.space.to_unit(settings)
        mu = self._prior_arrays([settings])[0]
        amb = obs.env_temp_c if obs.env_temp_c is not None else self.context.ambient
        self.models["hashrate"].tell(u, mu[0], obs.hashrate_ths)
        self.models["power"].tell(u, mu[1], obs.power_w)
        if obs.hw_err_share is not None:
            self.models["hw_err"].tell(u, mu[2], obs.hw_err_share)
        self.thermal.tell(obs.power_w, amb, obs.board_temp_c, obs.chip_temp_c, TEMP_NOISE_C)
        violations = self.violations(obs)
        violated = obs.throttled or any(v > 0 for v in violations.values())
        self.trials.append(_Trial(u, obs, violated))
        self.current = settings
        if obs.env_temp_c is not None and obs.env_temp_c != self.context.ambient_c:
            self._set_ambient(obs.env_temp_c)
        if self.config.strategy == "skopt_gp":
            self._tell_skopt(u, obs, violations)

    def violations(self, obs: Observation) -> dict[str, float]:
        """Size of each constraint violation in ``obs`` (°C, or multiples of the error limit)."""
        tp = self.thermal.prior
        out: dict[str, float] = {}
        if obs.chip_temp_c is not None:
            out["chip_temp"] = violation_size(obs.chip_temp_c, tp.chip_max_c, 1.0)
        if obs.board_temp_c is not None:
            out["board_temp"] = violation_size(obs.board_temp_c, tp.board_max_c, 1.0)
        if obs.hw_err_share is not None:
            lim = self.config.hw_err_max_share
            out["hw_err"] = violation_size(obs.hw_err_share, lim, lim)
        return out

    def _tell_skopt(self, u: np.ndarray, obs: Observation, violations: dict[str, float]) -> None:
        from skopt import Optimizer  # lazy: see surrogate.py
        from skopt.space import Categorical, Real

        if self._skopt is None:
            if self.space.kind == "power_mode":
                dims = [Categorical(sorted({float(x) for x in self._grid_u[:, 0]}))]
            else:
                dims = [Real(0.0, 1.0) for _ in range(self.space.dim)]
            self._skopt = Optimizer(
                dims,
                base_estimator="GP",
                n_initial_points=1,
                acq_optimizer="sampling",
                random_state=self.config.seed,
            )
        hp, c = self.economics.rates()
        profit = hp * obs.hashrate_ths - c * obs.power_w
        stock_rev = hp * self.context.profile.rated.hashrate_ths
        y = -(profit - PENALTY_REVENUE_FRACTION * stock_rev * sum(violations.values()))
        self._skopt.tell([float(v) for v in u], float(y))

    # ----- answers --------------------------------------------------------------------------

    def recommend(self) -> Posterior:
        """Best measured setting still confidently feasible (else the current one)."""
        cands = self._measured_feasible()
        posts = [
            b
            for b in (self.predict_many(cands) if cands else [])
            if b.p_feasible >= self.config.p_feasible
        ]
        if not posts:
            return self.predict(self.current)
        return max(posts, key=lambda b: b.profit_usd_day)

    def model_optimum(self) -> Posterior:
        """Best confidently feasible setting by the model alone (may be untried)."""
        post = self._grid_posterior()
        feasible = post["p_feas"] >= self.config.p_feasible
        if not feasible.any():
            return self.predict(self.current)
        i = int(np.argmax(np.where(feasible, post["profit"], -np.inf)))
        return self._as_posterior(post, i, self._grid_settings[i])

    def curve(self, economics: Economics | None = None) -> list[Posterior]:
        """Return the fitted response over the whole candidate grid (for the site budget)."""
        post = self._grid_posterior(economics)
        return [self._as_posterior(post, i, st) for i, st in enumerate(self._grid_settings)]

    def switching_cost_per_day(self, target: Settings) -> float:
        """Restart cost of moving from the current setting to ``target``, USD/day."""
        if target == self.current or self.space.restart_s <= 0:
            return 0.0
        now = self.predict(self.current)
        return switching_cost_per_day(
            self.space.restart_s,
            now.hashrate_ths,
            self.economics.hashprice_usd_per_th_day(),
            self.economics.hold_hours,
        )
