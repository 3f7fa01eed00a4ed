"""Run an optimisation round in a short-lived worker process (JSON in, JSON out).

Python cannot unload modules: once a round has imported scikit-optimize and scikit-learn
(~120 MB, benchmarks/optimizer.py), a daemon that ran the round in-process keeps them for
good. :func:`run_round_in_worker` keeps the daemon light *between* rounds too: it starts
``python -m agent.optimize.worker``, writes the request as JSON on stdin and reads the
proposals as JSON from stdout. Only plain JSON crosses the boundary — never a pickle.

Request::

    {"economics": {"hashprice_usd_per_th_day": 0.059, "tariff": {...} | 0.08,
                   "hold_hours": 24},
     "config": {"p_feasible": 0.95, "strategy": "prior_gp"},
     "cap_w": 70000 | null, "bundle_dir": null,
     "units": [{"miner_id": "...", "model": "M50", "firmware": "whatsminer_v3",
                "ambient_c": 25.0, "current": {"power_limit_w": 3000},
                "features": {"samples_1h": 60, "hashrate_ratio_mean_1h": 0.98, ...},
                "trials": [{"settings": {...}, "hashrate_ths": ..., "power_w": ...,
                            "chip_temp_c": ..., "board_temp_c": ..., "env_temp_c": ...,
                            "hw_err_share": ..., "throttled": false}]}]}

``features`` (optional) are the daemon's ``agent.features`` values for the unit; they reach
the response model as its ``health_*`` inputs (``prior.health_inputs``). Without them the
bundle prior runs with health unknown.

Response: ``{"proposals": [Proposal.to_dict()...], "held": [Held.to_dict()...],
"skipped": [...], "budget": {...}|null}`` — ``held`` lists units kept on their current
settings by the feasibility gate ("needs observation", see ``fleet``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from agent.errors import AgentError, ConfigError, ModelError

#: Longest a round may take, s. A round over a few hundred units fits GPs of ≤ 20 points
#: per unit (tens of ms each, benchmarks/optimizer.py: ~50 ms per trial); ten minutes is
#: far beyond that and still shorter than the hourly optimisation cadence.
WORKER_TIMEOUT_S = 600.0


def _settings(d: dict[str, Any] | None) -> Any:
    from agent.snapshot import Settings

    return None if d is None else Settings(**d)


def _features(raw: Any) -> dict[str, float | None]:
    """Parse one unit's streaming features (name → number or null); ``{}`` if none."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TypeError(f"features must be an object, not {type(raw).__name__}")
    return {str(k): None if v is None else float(v) for k, v in raw.items()}


def handle(request: dict[str, Any]) -> dict[str, Any]:
    """Run one round described by a JSON-ready request; return a JSON-ready response."""
    from agent.optimize.fleet import FleetUnit, plan_fleet
    from agent.optimize.objective import DEFAULT_HASHPRICE_USD_PER_TH_DAY, Economics
    from agent.optimize.optimizer import Observation, OptimizerConfig
    from agent.optimize.prior import select_prior
    from agent.optimize.tariff import tariff_from_config

    try:
        eco = request.get("economics", {})
        econ = Economics(
            hashprice=float(eco.get("hashprice_usd_per_th_day", DEFAULT_HASHPRICE_USD_PER_TH_DAY)),
            tariff=tariff_from_config(eco.get("tariff")),
            hold_hours=float(eco.get("hold_hours", 24.0)),
        )
        config = OptimizerConfig(**request.get("config", {}))
        units = [
            FleetUnit(
                miner_id=str(u["miner_id"]),
                model=u.get("model"),
                firmware=str(u["firmware"]),
                current=_settings(u.get("current")),
                ambient_c=u.get("ambient_c"),
                features=_features(u.get("features")),
                trials=tuple(
                    Observation(**{**t, "settings": _settings(t["settings"])})
                    for t in u.get("trials", ())
                ),
            )
            for u in request.get("units", ())
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"optimizer request malformed: {err!r}") from err
    prior, note = select_prior(request.get("bundle_dir"))
    cap = request.get("cap_w")
    plan = plan_fleet(units, econ, config, prior=prior, prior_note=note, cap_w=cap)
    budget = None
    if plan.budget is not None:
        b = plan.budget
        budget = {
            "cap_w": b.cap_w,
            "power_w": b.power_w,
            "profit_usd_day": b.profit_usd_day,
            "shadow_price_usd_per_w_day": b.shadow_price,
            "feasible": b.feasible,
            "overrides": list(b.overrides),
        }
    return {
        "proposals": [p.to_dict() for p in plan.proposals],
        "held": [h.to_dict() for h in plan.held],
        "skipped": [
            {"miner_id": s.miner_id, "error": s.error, "reason": s.reason} for s in plan.skipped
        ],
        "budget": budget,
    }


def run_round_in_worker(
    request: dict[str, Any], timeout_s: float = WORKER_TIMEOUT_S
) -> dict[str, Any]:
    """Run a round in a fresh interpreter; the caller never imports the optimiser's stack."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "agent.optimize.worker"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ModelError(f"optimizer worker did not finish: {err}") from err
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no stderr"]
        raise ModelError(f"optimizer worker exited {proc.returncode}: {tail[0]}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as err:
        raise ModelError("optimizer worker wrote no JSON answer") from err


def main() -> int:
    """Worker entry point: one JSON request on stdin, one JSON line on stdout."""
    import logging

    import structlog

    # keep stdout for the answer: logs go to stderr at warning level
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    try:
        request = json.loads(sys.stdin.read())
        answer = handle(request)
    except ValueError as err:
        sys.stderr.write(f"error: bad JSON request: {err}\n")
        return 2
    except AgentError as err:
        sys.stderr.write(f"error: {type(err).__name__}: {err}\n")
        return 2
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
