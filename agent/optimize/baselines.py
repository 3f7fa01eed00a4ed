"""Baseline search strategies the optimiser is benchmarked against: random and grid search.

Both ignore the prior, the trust region and the constraint models (that is the point of a
baseline); both recommend the best *measured* profit among trials that crossed no limit —
the same limits the optimiser keeps: throttling, board "hot", chip maximum, and the
hardware-error share limit (``optimizer.DEFAULT_HW_ERR_MAX_SHARE``).
"""

from __future__ import annotations

import numpy as np

from agent.optimize.objective import Economics
from agent.optimize.optimizer import DEFAULT_HW_ERR_MAX_SHARE, Observation
from agent.optimize.space import SearchSpace
from agent.snapshot import Settings


class _Measured:
    """Shared bookkeeping: keep trials, recommend the best measured feasible profit."""

    def __init__(
        self,
        space: SearchSpace,
        economics: Economics,
        hw_err_max_share: float = DEFAULT_HW_ERR_MAX_SHARE,
    ) -> None:
        self.space = space
        self.economics = economics
        self.hw_err_max_share = hw_err_max_share
        self.observations: list[Observation] = []
        self.current = space.stock()

    def tell(self, obs: Observation) -> None:
        """Record one trial."""
        self.observations.append(obs)
        self.current = obs.settings

    def _ok(self, obs: Observation) -> bool:
        th = self.space.profile.thermal
        if obs.throttled:
            return False
        if obs.board_temp_c is not None and obs.board_temp_c > th.board_temp_hot_c:
            return False
        if obs.hw_err_share is not None and obs.hw_err_share > self.hw_err_max_share:
            return False
        return not (obs.chip_temp_c is not None and obs.chip_temp_c > th.chip_temp_max_c)

    def recommend_settings(self) -> Settings:
        """Return the best measured setting that crossed no limit (else the stock one)."""
        hp, c = self.economics.rates()
        ok = [o for o in self.observations if self._ok(o)]
        if not ok:
            return self.space.stock()
        return max(ok, key=lambda o: hp * o.hashrate_ths - c * o.power_w).settings


class RandomSearch(_Measured):
    """Uniformly random settings inside the space's bounds."""

    def __init__(self, space: SearchSpace, economics: Economics, seed: int = 0) -> None:
        super().__init__(space, economics)
        self._rng = np.random.default_rng(seed)

    def ask(self) -> Settings:
        """Return a uniformly random setting."""
        return self.space.from_unit(self._rng.uniform(0.0, 1.0, self.space.dim))


class GridSearch(_Measured):
    """``n`` evenly spaced settings (per dimension for 2-D spaces), from high to low."""

    def __init__(self, space: SearchSpace, economics: Economics, n: int) -> None:
        super().__init__(space, economics)
        if space.kind == "power_mode":
            pts = [np.array([x]) for x in np.linspace(1.0, 0.0, len(space.modes))]
        elif space.dim == 1:
            pts = [np.array([x]) for x in np.linspace(1.0, 0.0, max(n, 1))]
        else:
            k = max(round(n ** (1 / space.dim)), 1)
            axes = [np.linspace(1.0, 0.0, k)] * space.dim
            pts = [np.array(p) for p in np.array(np.meshgrid(*axes)).reshape(space.dim, -1).T]
        self._points = [space.from_unit(p) for p in pts]
        self._i = 0

    def ask(self) -> Settings:
        """Return the next grid point (cycling if asked more often than it has points)."""
        s = self._points[self._i % len(self._points)]
        self._i += 1
        return s
