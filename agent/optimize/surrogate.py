"""Per-unit surrogate: the prior, calibrated and corrected by this unit's own trials.

Each output o (hashrate, power, chip-temperature rise over ambient, hardware-error rate) is

    y_o(x) = a_o + s_o · μ0_o(x) + r_o(x) + ε

* ``μ0_o`` is the prior's prediction (bundle model or profile physics);
* ``(a_o, s_o)`` is a Bayesian linear calibration with prior ``a ~ N(0, floor²)``,
  ``s ~ N(1, τ²)`` — one unit's silicon lottery mostly scales its whole curve, and two
  numbers are learnable from two or three trials;
* ``r_o`` is what the calibrated prior still misses, fitted by a scikit-optimize
  ``Optimizer`` (GP or extra-trees estimator; ask/tell on the residual) once there are
  enough trials.

scikit-optimize / scikit-learn are imported **only here, inside :meth:`OutputModel.fit`**, so
the daemon does not pay ~80 MB and ~0.8 s for them until an optimisation round runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from agent.errors import ModelError

Estimator = Literal["GP", "ET", "none"]

#: Trials needed before the residual model is fitted; with fewer, the two calibration
#: parameters already use all the information there is.
MIN_RESIDUAL_POINTS = 3

#: Candidates scored by the residual optimizer's own acquisition step inside ``tell``; the
#: result is unused (we score candidates ourselves), so keep that step cheap.
SKOPT_ACQ_POINTS = 16


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Uncertainty settings of one modelled output."""

    name: str
    #: Prior 1-σ of the multiplicative calibration ``s`` (relative error of the prior).
    scale_sd: float
    #: Prior 1-σ of the additive calibration ``a`` (native units).
    offset_sd: float
    #: Measurement noise 1-σ: ``noise_abs + noise_rel · |y|``.
    noise_abs: float
    noise_rel: float
    #: Prior 1-σ of the residual (shape error the calibration cannot absorb):
    #: ``resid_abs + resid_rel · |μ0|``. The residual model works in these units, so its
    #: uncertainty grows back to this band away from the unit's own trials.
    resid_rel: float = 0.03
    resid_abs: float = 0.0


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * (1.0 + np.vectorize(erf, otypes=[float])(np.asarray(z) / math.sqrt(2.0)))


class OutputModel:
    """Calibrated prior + residual model for one output of one unit."""

    def __init__(self, spec: OutputSpec, estimator: Estimator = "GP", seed: int = 0) -> None:
        self.spec = spec
        self.estimator = estimator
        self.seed = seed
        self._u: list[np.ndarray] = []
        self._mu0: list[float] = []
        self._y: list[float] = []
        self._mean = np.array([0.0, 1.0])
        self._cov = np.diag([max(spec.offset_sd, 1e-12) ** 2, max(spec.scale_sd, 1e-12) ** 2])
        self._resid_model: Any = None
        self._resid_space: Any = None

    @property
    def n(self) -> int:
        """Number of observations told."""
        return len(self._y)

    def tell(self, u: np.ndarray, mu0: float, y: float) -> None:
        """Add one observation at normalised point ``u`` whose prior mean was ``mu0``."""
        if not (math.isfinite(mu0) and math.isfinite(y)):
            raise ModelError(f"{self.spec.name}: non-finite observation ({mu0}, {y})")
        self._u.append(np.asarray(u, dtype=float).reshape(-1))
        self._mu0.append(float(mu0))
        self._y.append(float(y))
        self.fit()

    def _noise_sd(self, y: np.ndarray) -> np.ndarray:
        return np.maximum(self.spec.noise_abs + self.spec.noise_rel * np.abs(y), 1e-12)

    def _resid_scale(self, mu0: np.ndarray) -> np.ndarray:
        return np.maximum(self.spec.resid_abs + self.spec.resid_rel * np.abs(mu0), 1e-12)

    def fit(self) -> None:
        """Refit the calibration (closed form) and the residual model (scikit-optimize)."""
        spec = self.spec
        mu0 = np.array(self._mu0)
        y = np.array(self._y)
        phi = np.stack([np.ones_like(mu0), mu0], axis=1)
        prior_cov = np.diag([max(spec.offset_sd, 1e-12) ** 2, max(spec.scale_sd, 1e-12) ** 2])
        prior_prec = np.linalg.inv(prior_cov)
        # the residual's own variance counts as noise for the calibration
        var = self._noise_sd(y) ** 2 + self._resid_scale(mu0) ** 2
        w = 1.0 / var
        prec = prior_prec + (phi * w[:, None]).T @ phi
        cov = np.linalg.inv(prec)
        mean = cov @ (prior_prec @ np.array([0.0, 1.0]) + phi.T @ (w * y))
        self._mean, self._cov = mean, cov
        self._resid_model = None
        if self.estimator == "none" or self.n < MIN_RESIDUAL_POINTS:
            return
        scale = self._resid_scale(mu0)
        resid = (y - phi @ mean) / scale
        noise = self._noise_sd(y) / scale
        self._resid_model, self._resid_space = _fit_residual(
            np.array(self._u), resid, float(np.mean(noise**2)), self.estimator, self.seed
        )

    def predict(self, u: np.ndarray, mu0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and 1-σ at normalised points ``u`` given prior means ``mu0``."""
        mu0 = np.asarray(mu0, dtype=float).reshape(-1)
        phi = np.stack([np.ones_like(mu0), mu0], axis=1)
        mean = phi @ self._mean
        var = np.einsum("ij,jk,ik->i", phi, self._cov, phi)
        scale = self._resid_scale(mu0)
        if self._resid_model is not None:
            x = self._resid_space.transform(np.atleast_2d(u).tolist())
            r_mean, r_sd = self._resid_model.predict(x, return_std=True)
            mean = mean + np.asarray(r_mean).reshape(-1) * scale
            var = var + (np.asarray(r_sd).reshape(-1) * scale) ** 2
        else:
            var = var + scale**2
        return mean, np.sqrt(np.maximum(var, 0.0))

    def calibration(self) -> tuple[float, float]:
        """Posterior means of (offset, scale)."""
        return float(self._mean[0]), float(self._mean[1])


#: Residual GP variance bounds, in units of the prior's residual band: never narrower than
#: the band (so uncertainty returns to it away from the trials), but free to grow when the
#: unit departs from the prior by far more (a board that stops hashing is not "noise").
RESID_AMPLITUDE_BOUNDS = (1.0, 1e4)

#: Residual GP length-scale bounds in the unit cube: no finer than 5 % of a knob's range
#: (the firmware's own step), no coarser than the whole range.
RESID_LENGTH_BOUNDS = (0.05, 1.0)
RESID_LENGTH_INIT = 0.3


def _residual_estimator(estimator: str, dim: int, noise_var: float, seed: int) -> Any:
    """Build the residual regressor: Matern GP on band-scaled residuals, or extra trees."""
    if estimator == "ET":
        return "ET"
    from skopt.learning import GaussianProcessRegressor
    from skopt.learning.gaussian_process.kernels import ConstantKernel, Matern

    kernel = ConstantKernel(1.0, RESID_AMPLITUDE_BOUNDS) * Matern(
        length_scale=np.full(dim, RESID_LENGTH_INIT),
        length_scale_bounds=[RESID_LENGTH_BOUNDS] * dim,
        nu=2.5,
    )
    return GaussianProcessRegressor(
        kernel=kernel,
        normalize_y=False,
        noise=max(noise_var, 1e-6),
        n_restarts_optimizer=1,
        random_state=seed,
    )


def _fit_residual(
    u: np.ndarray, resid: np.ndarray, noise_var: float, estimator: str, seed: int
) -> tuple[Any, Any]:
    """Tell every residual to a fresh scikit-optimize Optimizer; return its model and space."""
    from skopt import Optimizer  # lazy: sklearn + skopt cost ~80 MB / 0.8 s (ml-stack.md §7)
    from skopt.space import Real

    dims = [Real(0.0, 1.0) for _ in range(u.shape[1])]
    opt = Optimizer(
        dims,
        base_estimator=_residual_estimator(estimator, u.shape[1], noise_var, seed),
        n_initial_points=1,
        acq_optimizer="sampling",
        acq_optimizer_kwargs={"n_points": SKOPT_ACQ_POINTS},
        random_state=seed,
    )
    opt.tell(u.tolist(), resid.tolist())
    if not opt.models:
        raise ModelError("scikit-optimize did not fit a residual model")
    return opt.models[-1], opt.space


def prob_below(mean: np.ndarray, sd: np.ndarray, limit: float) -> np.ndarray:
    """P(value ≤ limit) under a normal posterior (1 where the sd is zero and mean ≤ limit)."""
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-9)
    return _norm_cdf((limit - np.asarray(mean, dtype=float)) / sd)


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """Return the expected improvement over ``best`` for maximisation under a normal posterior."""
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-12)
    z = (np.asarray(mean) - best) / sd
    pdf = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return (np.asarray(mean) - best) * _norm_cdf(z) + sd * pdf


@dataclass(frozen=True, slots=True)
class ThermalPrior:
    """Profile-level thermal knowledge the :class:`ThermalModel` starts from."""

    board_target_c: float
    board_max_c: float
    chip_max_c: float
    rated_power_w: float
    #: °C of board rise over ambient per wall watt once the fans are at full speed.
    slope_c_per_w: float
    slope_rel_sd: float
    #: Chip over hottest board at rated power, °C.
    chip_over_board_c: float
    chip_over_board_sd: float
    #: The vendor's rating as a (soft) upper bound: at rated power with the fans at full
    #: speed the board rises at most this much over ambient (``None`` = no bound) ...
    rated_rise_max_c: float | None = None
    #: ... and the chip sits at most this much over the board (``None`` = no bound).
    chip_over_board_max_c: float | None = None
    #: 1-σ softness of both vendor bounds, as a fraction of each bound.
    bound_rel_sd: float = 0.15


#: A board reading this far above the fan loop's target means the fans have saturated, so
#: the reading measures the full-speed thermal slope (°C; sensor noise is ~1 °C).
SATURATION_MARGIN_C = 1.0

#: Monte-Carlo draws per candidate for the joint thermal feasibility probability; 512 puts
#: the sampling error of a 0.95 estimate near ±0.01 (√(0.95·0.05/512)).
THERMAL_DRAWS = 512

#: Points of each parameter's grid posterior, and its span in prior σ on either side.
SLOPE_GRID_POINTS = 600
SLOPE_GRID_SIGMAS = 6.0


class GridPosterior:
    """Posterior of one scalar β on a grid: Gaussian prior, Gaussian readings, soft bounds.

    Readings are ``y = β·x + ε`` (exact Gaussian likelihood) or bounds ``β·x ≤ b`` (the
    likelihood ``Φ((b − β·x)/σ)``), so a truncated prior and censored readings need no
    special case. Draws are by inverse CDF at fixed stratified uniforms (deterministic).
    """

    def __init__(self, mean: float, sd: float, floor: float | None, u: np.ndarray) -> None:
        lo = mean - SLOPE_GRID_SIGMAS * sd
        if floor is not None:
            lo = max(lo, floor)
        self.grid = np.linspace(lo, mean + SLOPE_GRID_SIGMAS * sd, SLOPE_GRID_POINTS)
        self._logprior = -0.5 * ((self.grid - mean) / sd) ** 2
        self._loglik = np.zeros_like(self.grid)
        self._u = u
        self.draws = self._draw()

    def weights(self) -> np.ndarray:
        """Normalised posterior weights on the grid."""
        logp = self._logprior + self._loglik
        w = np.exp(logp - logp.max())
        return w / w.sum()

    def _draw(self) -> np.ndarray:
        cdf = np.cumsum(self.weights())
        idx = np.searchsorted(cdf, self._u * cdf[-1])
        return self.grid[np.clip(idx, 0, len(self.grid) - 1)]

    def observe(self, x: float, y: float, noise_sd: float) -> None:
        """Add a reading ``y = β·x + ε``, ε ~ N(0, noise_sd²)."""
        self._loglik += -0.5 * ((y - self.grid * x) / noise_sd) ** 2
        self.draws = self._draw()

    def bound(self, x: float, upper: float, sd: float) -> None:
        """Add the soft bound ``β·x ≤ upper`` (σ = ``sd``)."""
        self._loglik += np.log(np.maximum(_norm_cdf((upper - self.grid * x) / sd), 1e-300))
        self.draws = self._draw()

    def moments(self) -> tuple[float, float]:
        """Posterior mean and 1-σ."""
        w = self.weights()
        mean = float(np.sum(w * self.grid))
        return mean, float(np.sqrt(np.sum(w * (self.grid - mean) ** 2)))


class ThermalModel:
    """Board and chip temperature of one unit under fan control, learned from its trials.

    The fan loop holds the board at its target until the fans saturate; past that the board
    rises as ``ambient + θ·P``; the chip sits ``c·P/P_rated`` above the board. ``θ`` and
    ``c`` are one number each per unit, each on a grid posterior:

    * ``c`` from every trial that reports both temperatures (chip − board);
    * ``θ``: a saturated trial measures ``θ·P = board − ambient``; an unsaturated one still
      bounds it, ``θ·P ≤ target − ambient`` (full fans would have kept the board at or
      under target), which is what lets a unit that never ran hot prove it has headroom;
    * both start from the vendor's rating as a soft bound (stock power at the rated
      ambient stays under the throttle and chip limits; see ``prior.thermal_prior``).

    Feasibility is the joint probability that both temperatures stay under their limits,
    by Monte Carlo over (θ, c, P) with fixed draws (deterministic for a seed).
    """

    def __init__(self, prior: ThermalPrior, seed: int = 0) -> None:
        self.prior = prior
        rng = np.random.default_rng(seed)
        self._z = rng.standard_normal(THERMAL_DRAWS)
        u_theta = (rng.permutation(THERMAL_DRAWS) + 0.5) / THERMAL_DRAWS
        u_c = (rng.permutation(THERMAL_DRAWS) + 0.5) / THERMAL_DRAWS
        t0 = prior.slope_c_per_w
        self.theta = GridPosterior(t0, prior.slope_rel_sd * t0, t0 * 1e-3, u_theta)
        self.chip = GridPosterior(prior.chip_over_board_c, prior.chip_over_board_sd, None, u_c)
        if prior.rated_rise_max_c is not None:
            rise = prior.rated_rise_max_c
            self.theta.bound(prior.rated_power_w, rise, prior.bound_rel_sd * rise)
        if prior.chip_over_board_max_c is not None:
            c_max = prior.chip_over_board_max_c
            self.chip.bound(1.0, c_max, prior.bound_rel_sd * c_max)
        self.n_saturated = 0
        self.n = 0

    def tell(
        self,
        power_w: float,
        ambient_c: float,
        board_c: float | None,
        chip_c: float | None,
        noise_sd: float,
    ) -> None:
        """Add one settled trial's temperatures (either may be unreported)."""
        if power_w <= 0:
            return
        self.n += 1
        if board_c is not None and chip_c is not None:
            x = power_w / self.prior.rated_power_w
            self.chip.observe(x, chip_c - board_c, noise_sd * math.sqrt(2))
        if board_c is None:
            return
        if board_c > self.prior.board_target_c + SATURATION_MARGIN_C:
            self.n_saturated += 1
            self.theta.observe(power_w, board_c - ambient_c, noise_sd)
        else:
            bound = max(board_c, self.prior.board_target_c) - ambient_c
            self.theta.bound(power_w, bound, noise_sd)

    def params(self) -> dict[str, float]:
        """Posterior means and 1-σ of the two thermal parameters."""
        t_mean, t_sd = self.theta.moments()
        c_mean, c_sd = self.chip.moments()
        return {
            "slope_c_per_w": t_mean,
            "slope_sd": t_sd,
            "chip_over_board_c": c_mean,
            "chip_over_board_sd": c_sd,
        }

    def predict(
        self, power_w: np.ndarray, power_sd: np.ndarray, ambient_c: float
    ) -> dict[str, np.ndarray]:
        """Mean/σ of board and chip temperature and P(both within limits), per candidate."""
        p = self.prior
        pw = np.maximum(
            np.asarray(power_w, dtype=float).reshape(-1, 1)
            + np.asarray(power_sd, dtype=float).reshape(-1, 1) * self._z,
            0.0,
        )
        board = np.maximum(p.board_target_c, ambient_c + self.theta.draws * pw)
        board = np.where(pw > 0, board, ambient_c)
        chip = board + self.chip.draws * pw / p.rated_power_w
        ok = (board <= p.board_max_c) & (chip <= p.chip_max_c)
        return {
            "board": board.mean(axis=1),
            "board_sd": board.std(axis=1),
            "chip": chip.mean(axis=1),
            "chip_sd": chip.std(axis=1),
            "p_ok": ok.mean(axis=1),
        }
