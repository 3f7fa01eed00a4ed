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


#: A board reading this far above the fan loop's target means the fans have saturated, so
#: the reading measures the full-speed thermal slope (°C; sensor noise is ~1 °C).
SATURATION_MARGIN_C = 1.0

#: Monte-Carlo draws per candidate for the joint thermal feasibility probability; 512 puts
#: the sampling error of a 0.95 estimate near ±0.01 (√(0.95·0.05/512)).
THERMAL_DRAWS = 512

#: Grid for the slope posterior: points, and its span in prior σ on either side.
SLOPE_GRID_POINTS = 600
SLOPE_GRID_SIGMAS = 6.0


class ThermalModel:
    """Board and chip temperature of one unit under fan control, learned from its trials.

    The fan loop holds the board at its target until the fans saturate; past that the board
    rises as ``ambient + θ·P``; the chip sits ``c·P/P_rated`` above the board. ``θ`` and
    ``c`` are one number each per unit:

    * ``c`` by conjugate Bayesian regression on every trial (chip − board);
    * ``θ`` on a grid posterior: a saturated trial measures ``θ·P = board − ambient``; an
      unsaturated one still bounds it, ``θ·P ≤ target − ambient`` (full fans would have
      kept the board at or under target), which is what lets a unit that never ran hot
      prove it has headroom.

    Feasibility is the joint probability that both temperatures stay under their limits,
    by Monte Carlo over (θ, c, P) with fixed draws (deterministic for a seed).
    """

    def __init__(self, prior: ThermalPrior, seed: int = 0) -> None:
        self.prior = prior
        t0, sd0 = prior.slope_c_per_w, prior.slope_rel_sd * prior.slope_c_per_w
        lo = max(t0 - SLOPE_GRID_SIGMAS * sd0, t0 * 1e-3)
        self._grid = np.linspace(lo, t0 + SLOPE_GRID_SIGMAS * sd0, SLOPE_GRID_POINTS)
        self._logprior = -0.5 * ((self._grid - t0) / sd0) ** 2
        self._loglik = np.zeros_like(self._grid)
        self._c = (prior.chip_over_board_c, prior.chip_over_board_sd**2)
        rng = np.random.default_rng(seed)
        self._z = rng.standard_normal((2, THERMAL_DRAWS))
        self._u = (rng.permutation(THERMAL_DRAWS) + 0.5) / THERMAL_DRAWS
        self._theta_draws = self._draw_theta()
        self.n_saturated = 0
        self.n = 0

    @staticmethod
    def _update(
        post: tuple[float, float], x: float, y: float, noise_sd: float
    ) -> tuple[float, float]:
        """Conjugate update of y = β·x + ε for a scalar β ~ N(mean, var)."""
        mean, var = post
        prec = 1.0 / var + x * x / noise_sd**2
        new_var = 1.0 / prec
        return new_var * (mean / var + x * y / noise_sd**2), new_var

    def _posterior_weights(self) -> np.ndarray:
        logp = self._logprior + self._loglik
        w = np.exp(logp - logp.max())
        return w / w.sum()

    def _draw_theta(self) -> np.ndarray:
        """Slope draws by inverse-CDF on the grid posterior (stratified, fixed uniforms)."""
        cdf = np.cumsum(self._posterior_weights())
        idx = np.searchsorted(cdf, self._u * cdf[-1])
        return self._grid[np.clip(idx, 0, len(self._grid) - 1)]

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
            self._c = self._update(self._c, x, chip_c - board_c, noise_sd * math.sqrt(2))
        if board_c is None:
            return
        pred = self._grid * power_w
        if board_c > self.prior.board_target_c + SATURATION_MARGIN_C:
            self.n_saturated += 1
            self._loglik += -0.5 * ((board_c - ambient_c - pred) / noise_sd) ** 2
        else:
            bound = max(board_c, self.prior.board_target_c) - ambient_c
            self._loglik += np.log(np.maximum(_norm_cdf((bound - pred) / noise_sd), 1e-300))
        self._theta_draws = self._draw_theta()

    def params(self) -> dict[str, float]:
        """Posterior means and 1-σ of the two thermal parameters."""
        w = self._posterior_weights()
        mean = float(np.sum(w * self._grid))
        sd = float(np.sqrt(np.sum(w * (self._grid - mean) ** 2)))
        return {
            "slope_c_per_w": mean,
            "slope_sd": sd,
            "chip_over_board_c": self._c[0],
            "chip_over_board_sd": math.sqrt(self._c[1]),
        }

    def predict(
        self, power_w: np.ndarray, power_sd: np.ndarray, ambient_c: float
    ) -> dict[str, np.ndarray]:
        """Mean/σ of board and chip temperature and P(both within limits), per candidate."""
        p = self.prior
        pw = np.maximum(
            np.asarray(power_w, dtype=float).reshape(-1, 1)
            + np.asarray(power_sd, dtype=float).reshape(-1, 1) * self._z[0],
            0.0,
        )
        theta = self._theta_draws
        c = self._c[0] + math.sqrt(self._c[1]) * self._z[1]
        board = np.maximum(p.board_target_c, ambient_c + theta * pw)
        board = np.where(pw > 0, board, ambient_c)
        chip = board + c * pw / p.rated_power_w
        ok = (board <= p.board_max_c) & (chip <= p.chip_max_c)
        return {
            "board": board.mean(axis=1),
            "board_sd": board.std(axis=1),
            "chip": chip.mean(axis=1),
            "chip_sd": chip.std(axis=1),
            "p_ok": ok.mean(axis=1),
        }
