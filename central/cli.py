"""``hashpilot-central``: train the profit models, compile them into a bundle, write a report."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from agent import logs

log = structlog.get_logger(__name__)

#: OpenMP threads (XGBoost, treelite). One: on the shared 2-core machine a second OpenMP
#: thread spin-waits for a busy core and slowed training up to 25x (see train.XGB_NTHREAD).
OMP_THREADS = "1"


def _hashprice_metrics(m: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "rows",
        "skill_mae_vs_persistence",
        "skill_rmse_vs_persistence",
        "skill_mae_vs_ma7",
        "skill_mae_schedule_only_vs_persistence",
        "dm_vs_schedule_only_abs_error",
        "coverage_p10_p90",
        "share_below_p10",
        "share_below_p90",
        "dm_vs_persistence_abs_error",
        "shipped_interval_calibration_rows",
    )
    out = {k: m[k] for k in keep}
    out["mae"], out["mae_persistence"] = m["model"]["mae"], m["persistence"]["mae"]
    out["directional_accuracy"] = m["model"]["directional_accuracy"]
    return out


def train(out: Path, quick: bool, report_dir: Path | None, channel: str, version: int) -> dict:
    """Train both model families, write the bundle and the report; return a summary."""
    # Heavy imports here so ``--help`` stays fast.
    import tl2cgen
    import treelite
    import xgboost as xgb

    from agent.profiles import load_profiles
    from central.compile import ModelSpec, write_bundle
    from central.dataset import make_frame, offset_features
    from central.fleetdata import QUICK_FLEET, FleetConfig, simulate_fleet
    from central.market import load_btc_daily
    from central.miner_model import train_all_response
    from central.report import write_metrics, write_report
    from central.train import train_all_hashprice

    t0 = time.perf_counter()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    btc = load_btc_daily()
    hashprice = train_all_hashprice(btc, quick=quick)
    fleet = simulate_fleet(QUICK_FLEET if quick else FleetConfig())
    miner = train_all_response(fleet, quick=quick)

    specs = []
    for res in hashprice:
        frame = make_frame(btc, res.horizon)
        specs.append(
            ModelSpec(
                name=res.name,
                kind="hashprice",
                booster=res.booster,
                features=res.features,
                target=(
                    f"log(mean hashprice t+1..t+{res.horizon} / hashprice t) minus the "
                    "scheduled offset (sum of offset_features)"
                ),
                unit="log ratio",
                reference=frame.X[res.features].to_numpy(),
                offset_features=list(offset_features(res.horizon)),
                horizon_days=res.horizon,
                intervals=res.intervals,
                metrics=_hashprice_metrics(res.metrics),
            )
        )
    for mres in miner:
        tf = mres.transform
        target = f"{mres.target} - {tf['offset']}" if tf["offset"] else mres.target
        specs.append(
            ModelSpec(
                name=mres.name,
                kind="miner",
                booster=mres.booster,
                features=mres.features,
                target=f"({target}) / {tf['scale']}",
                unit="ratio",
                reference=fleet[mres.features].to_numpy(dtype=float),
                output_transform=tf,
                metrics=mres.metrics,
            )
        )
    bundle = write_bundle(
        specs,
        out / "bundle",
        channel=channel,
        version=version,
        hardware_profiles=sorted(load_profiles()),
    )
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    compiled = {k: v["verification"] for k, v in manifest["models"].items()}
    seconds = time.perf_counter() - t0
    report_root = report_dir or out / "report"
    write_metrics(report_root, manifest, hashprice)
    report = write_report(
        report_root,
        hashprice,
        miner,
        compiled,
        {
            "created": created,
            "seconds": seconds,
            "command": "hashpilot-central " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "xgboost": xgb.__version__,
            "treelite": treelite.__version__,
            "tl2cgen": tl2cgen.__version__,
        },
    )
    summary = {
        "bundle": str(bundle),
        "bundle_id": manifest["bundle_id"],
        "report": str(report),
        "seconds": round(time.perf_counter() - t0, 1),
        "max_abs_diff": max(v["max_abs_diff"] for v in compiled.values()),
        "hashprice_skill_mae_vs_persistence": {
            r.name: round(r.metrics["skill_mae_vs_persistence"], 4) for r in hashprice
        },
        "hashprice_coverage_p10_p90": {
            r.name: round(r.metrics["coverage_p10_p90"], 4) for r in hashprice
        },
    }
    log.info("training_done", **summary)
    return summary


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``hashpilot-central``."""
    parser = argparse.ArgumentParser(prog="hashpilot-central", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train both models, write OUT/bundle and OUT/report")
    tr.add_argument("--out", type=Path, required=True, help="output directory (new or empty)")
    tr.add_argument("--quick", action="store_true", help="fewer folds/configs/units (~1 min)")
    tr.add_argument("--report", type=Path, default=None, help="report directory (OUT/report)")
    tr.add_argument("--channel", default="dev")
    tr.add_argument("--version", type=int, default=1, help="bundle version in its channel")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the central CLI and return its exit status."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", OMP_THREADS)
    logs.configure(args.log_level)
    if args.command == "train":
        summary = train(args.out, args.quick, args.report, args.channel, args.version)
        sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
