r"""``hashpilot-agent predict --bundle DIR ...``: run the bundle's compiled models from the shell.

Examples::

    hashpilot-agent predict --bundle B --list
    hashpilot-agent predict --bundle B --check
    hashpilot-agent predict --bundle B --model hashprice_h7 --hashprice-today 0.052 \\
        --features '{"fee_share": 0.01, "hp_vol_30d": 0.03, ...}'
    hashpilot-agent predict --bundle B --model miner --features @unit.json

Features are a JSON object of name -> number or null (missing); ``@FILE`` reads it from a
file and ``-`` from stdin. Output is one JSON object. The bundle is fully verified (every
file's sha256) before anything is loaded, and each model self-checks its golden rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

NAME = "predict"
HELP = "Predict with a model bundle (hashprice forecast, miner response, or a raw model)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the bundle, model and feature options."""
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    parser.add_argument("--model", help="hashprice_h1 | hashprice_h7 | miner | any model name")
    parser.add_argument("--features", help="JSON object, @FILE or - (stdin)")
    parser.add_argument("--hashprice-today", type=float, help="today's USD/TH/s/day")
    parser.add_argument("--raw", action="store_true", help="print the tree output only")
    parser.add_argument("--list", action="store_true", help="list models and their features")
    parser.add_argument("--check", action="store_true", help="load every model, self-check")
    parser.add_argument("--no-shim", action="store_true", help="do not load the batch shim")


def _features(spec: str | None) -> dict[str, float | None]:
    if spec is None:
        raise ConfigError("--features is required for a prediction")
    if spec == "-":
        text = sys.stdin.read()
    elif spec.startswith("@"):
        try:
            text = Path(spec[1:]).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read features file {spec[1:]}: {err}") from err
    else:
        text = spec
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--features is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError("--features must be a JSON object of name -> number or null")
    for key, value in data.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"feature {key!r} must be a number or null")
    return data


def run(args: argparse.Namespace) -> int:
    """Verify the bundle and print one JSON object."""
    from agent.inference.bundle import open_bundle
    from agent.inference.model import load_model

    bundle = open_bundle(args.bundle)
    manifest = bundle.manifest
    out: dict[str, Any]
    if args.list:
        out = {
            "bundle_id": manifest.bundle_id,
            "models": {
                k: {
                    "kind": v.kind,
                    "features": v.features,
                    "offset_features": v.offset_features,
                    "output_transform": None
                    if v.output_transform is None
                    else v.output_transform.model_dump(),
                }
                for k, v in manifest.models.items()
            },
        }
    elif args.check:
        out = {"bundle_id": manifest.bundle_id, "models": {}}
        for name in manifest.models:
            model = load_model(bundle, name, use_shim=not args.no_shim)
            out["models"][name] = {
                "backend": model.backend,
                "num_feature": model.num_feature,
                "golden_rows": len(manifest.models[name].golden),
            }
    elif args.model == "miner":
        from agent.inference.miner import MinerResponseModel

        response = MinerResponseModel(bundle, use_shim=not args.no_shim).predict(
            _features(args.features)
        )
        out = {"model": "miner", **response.__dict__}
    elif args.model and args.model.startswith("hashprice_h") and not args.raw:
        from agent.inference.hashprice import HashpriceForecaster

        if args.hashprice_today is None:
            raise ConfigError("--hashprice-today is required for a hashprice forecast")
        horizon = int(args.model.removeprefix("hashprice_h"))
        fc = HashpriceForecaster(bundle, horizon, use_shim=not args.no_shim).forecast(
            _features(args.features), args.hashprice_today
        )
        out = {
            "model": args.model,
            **fc.__dict__,
            "expected_change": fc.expected_change,
            "relative_width": fc.relative_width,
        }
    elif args.model:
        entry = bundle.model(args.model)
        feats = _features(args.features)
        model = load_model(bundle, args.model, use_shim=not args.no_shim)
        out = {
            "model": args.model,
            "backend": model.backend,
            "output": model.predict_row([feats.get(n) for n in entry.features]),
        }
    else:
        raise ConfigError("give --list, --check or --model")
    sys.stdout.write(json.dumps(out) + "\n")
    return 0
