"""``hashpilot-agent optimize --dry-run``: print the fleet's proposals; nothing is applied.

Sources of the fleet:

* ``--config FILE`` — the ``[optimize]`` table of the agent's TOML (prices, site cap,
  ``p_feasible``) and its ``[[optimize.miners]]`` entries (id, model, firmware, ambient and
  current setting). Without trial history every proposal is a *first trial* from the prior.
* ``--sim N`` — an in-process simulated fleet of N units; each runs ``--trials`` trials on
  its simulated clock first and is then put back to its stock setting, so the proposals
  are permanent changes from stock that rest on measured evidence.

Applying settings requires an operator's approval (``agent.actions``); this command only
ever prints. The optimiser's heavy imports (scikit-optimize, scikit-learn) happen inside
``run`` so other commands never pay for them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

NAME = "optimize"
HELP = "Print proposed miner settings (dry run; nothing is applied)."

#: Trials per simulated unit before proposing (``--sim``): enough for the benchmark's
#: ≤ 2 % median-regret regime (benchmarks/optimizer.py) while keeping the command quick.
DEFAULT_SIM_TRIALS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``optimize`` options."""
    parser.add_argument(
        "--dry-run",
        action="store_true",
        required=True,
        help="required: proposals are printed, never applied",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="agent TOML with an [optimize] table")
    src.add_argument("--sim", type=int, metavar="N", help="simulate N units in-process")
    parser.add_argument(
        "--trials",
        type=int,
        default=DEFAULT_SIM_TRIALS,
        help="trials per simulated unit before proposing (--sim)",
    )
    parser.add_argument("--cap-kw", type=float, help="site power cap, kW (site budget)")
    parser.add_argument("--price", type=float, help="flat electricity price, USD/kWh")
    parser.add_argument("--hashprice", type=float, help="hashprice, USD per TH/s per day")
    parser.add_argument("--p-feasible", type=float, help="required P(feasible), default 0.95")
    parser.add_argument("--seed", type=int, default=1, help="simulated fleet seed (--sim)")
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _load_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: {err}") from err
    section = data.get("optimize")
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: no [optimize] table")
    return section


def run(args: argparse.Namespace) -> int:
    """Build the fleet, run one optimisation round, print proposals."""
    from agent.optimize.fleet import FleetUnit, plan_fleet
    from agent.optimize.objective import DEFAULT_HASHPRICE_USD_PER_TH_DAY, Economics
    from agent.optimize.optimizer import OptimizerConfig
    from agent.optimize.prior import select_prior
    from agent.optimize.tariff import tariff_from_config
    from agent.snapshot import Settings

    if not args.dry_run:  # argparse enforces it; keep the guard for programmatic callers
        raise ConfigError("only --dry-run exists: applying needs operator approval")
    cfg = _load_config(args.config) if args.config else {}
    tariff = tariff_from_config(args.price if args.price is not None else cfg.get("tariff"))
    hashprice = args.hashprice or cfg.get("hashprice_usd_per_th_day")
    econ = Economics(hashprice=hashprice or DEFAULT_HASHPRICE_USD_PER_TH_DAY, tariff=tariff)
    p_feas = args.p_feasible or cfg.get("p_feasible")
    config = OptimizerConfig(p_feasible=p_feas) if p_feas else OptimizerConfig()
    cap_kw = args.cap_kw if args.cap_kw is not None else cfg.get("site_cap_kw")
    prior, note = select_prior(cfg.get("bundle_dir"))
    optimizers = None
    if args.sim is not None:
        units, optimizers = _simulate(args.sim, args.trials, args.seed, econ, config)
    else:
        units = []
        for m in cfg.get("miners", ()):
            try:
                current = Settings(
                    power_limit_w=m.get("power_limit_w"),
                    power_mode=m.get("power_mode"),
                    power_percent=m.get("power_percent"),
                )
                units.append(
                    FleetUnit(
                        str(m["id"]),
                        m.get("model"),
                        str(m["firmware"]),
                        current,
                        m.get("ambient_c"),
                    )
                )
            except (KeyError, TypeError) as err:
                raise ConfigError(f"[[optimize.miners]] entry {m!r}: {err!r}") from err
    plan = plan_fleet(
        units,
        econ,
        config,
        prior=prior,
        prior_note=note,
        cap_w=cap_kw * 1000.0 if cap_kw is not None else None,
        optimizers=optimizers,
    )
    _print(plan, args.json)
    return 0


def _simulate(n: int, trials: int, seed: int, econ: Any, config: Any) -> tuple[list, dict]:
    """Run ``trials`` trials on each of ``n`` simulated units; return units and optimisers."""
    from agent.optimize.fleet import FleetUnit, build_optimizer
    from agent.optimize.simfleet import fleet_specs, make_unit
    from agent.optimize.trials import apply_to_unit, run_trials
    from agent.simulator.clock import SimClock

    if n <= 0 or trials < 0:
        raise ConfigError("--sim needs N > 0 and --trials >= 0")
    units, optimizers = [], {}
    for spec in fleet_specs(n, seed):
        unit = make_unit(spec, SimClock(speed=0))
        fu = FleetUnit(
            spec.unit_id, spec.profile_id, spec.firmware, ambient_c=unit.reading().env_temp_c
        )
        opt = build_optimizer(fu, econ, config)
        run_trials(unit, opt.space, opt, trials)
        # the campaign is over: the unit goes back to where it started, and the proposal is
        # the permanent change from there
        apply_to_unit(unit, opt.space.stock())
        opt.set_current(opt.space.stock())
        units.append(fu)
        optimizers[spec.unit_id] = opt
    return units, optimizers


def _print(plan: Any, as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        for p in plan.proposals:
            out.write(json.dumps({"proposal": p.to_dict()}) + "\n")
        for h in plan.held:
            out.write(json.dumps({"held": h.to_dict()}) + "\n")
        for s in plan.skipped:
            out.write(
                json.dumps(
                    {"skipped": {"miner_id": s.miner_id, "error": s.error, "reason": s.reason}}
                )
                + "\n"
            )
        if plan.budget is not None:
            b = plan.budget
            out.write(
                json.dumps(
                    {
                        "budget": {
                            "cap_w": b.cap_w,
                            "power_w": round(b.power_w, 1),
                            "profit_usd_day": round(b.profit_usd_day, 3),
                            "shadow_price_usd_per_w_day": b.shadow_price,
                            "feasible": b.feasible,
                        }
                    }
                )
                + "\n"
            )
        return
    out.write("DRY RUN: nothing is applied; proposals need operator approval.\n")
    out.write(
        f"{'miner':24s} {'setting':>22s} {'ΔW':>8s} {'ΔTH/s':>8s} "
        f"{'Δ$/day':>8s} {'90% interval':>18s} {'P(ok)':>6s} {'risk':>6s}  reason\n"
    )
    for p in plan.proposals:
        setting = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in p.settings.changed_fields().items()
        )
        lo, hi = p.delta_usd_day_interval
        out.write(
            f"{p.miner_id:24s} {setting:>22s} {p.expected_delta_w:8.0f} "
            f"{p.expected_delta_ths:8.2f} {p.expected_delta_usd_day:8.3f} "
            f"{f'[{lo:.3f}, {hi:.3f}]':>18s} {p.constraint_margins['p_feasible']:6.3f} "
            f"{p.risk:>6s}  {'[SAFETY RETREAT] ' if p.kind == 'safety_retreat' else ''}"
            f"{p.reason} ({p.evidence['trials']} trials)\n"
        )
    for h in plan.held:
        p_txt = "none" if h.p_feasible is None else f"{h.p_feasible:.3f}"
        out.write(
            f"{h.miner_id:24s} held (keep current, needs observation): P(ok) {p_txt} "
            f"< {h.gate:g} (current {h.p_feasible_current:.3f}): {h.reason}\n"
        )
    for s in plan.skipped:
        out.write(f"{s.miner_id:24s} skipped: {s.error}: {s.reason}\n")
    if plan.budget is not None:
        b = plan.budget
        out.write(
            f"site: {b.power_w / 1000:.2f} kW of {b.cap_w / 1000:.2f} kW cap, "
            f"${b.profit_usd_day:.2f}/day, shadow price {b.shadow_price:.6f} $/W/day\n"
        )
