"""``hashpilot-agent check-config --config agent.toml``: validate the configuration and explain it.

Loads the file exactly as the daemon would (file, ``HASHPILOT_*`` environment, secrets
directory), resolves every miner source and every credential reference, and prints what the
daemon would do. Secrets are never printed; a missing or unreadable credential is reported
by reference name. Exit status 0 when valid, 2 with one line per problem otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from agent.errors import ConfigError

NAME = "check-config"
HELP = "Validate agent.toml (plus environment and secrets) and explain what it configures."
DEFAULT_CONFIG = Path("/etc/hashpilot/agent.toml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--config``."""
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="agent TOML file")


def run(args: argparse.Namespace) -> int:
    """Validate and print the explanation; ``ConfigError`` lists every problem."""
    from agent.config import describe_env, load_settings
    from agent.features.extract import FeatureSchema

    settings = load_settings(args.config)
    miners = settings.resolve_miners()
    problems: list[str] = []
    usage: Counter[tuple[str, str, str | None]] = Counter()
    for m in miners:
        if m.entry.driver is not None:
            usage[(m.entry.credentials, m.entry.driver, m.entry.api)] += 1
    creds_lines = []
    secrets_by_ref = {m.entry.credentials: m for m in miners}
    for (ref, driver, api), count in sorted(usage.items()):
        miner = secrets_by_ref[ref]
        try:
            miner.credentials(driver, api)
        except ConfigError as err:
            hint = (
                ""
                if miner.secrets_dir
                else " (no secrets directory: set secrets_dir, or LoadCredential= under systemd)"
            )
            problems.append(f"credentials {ref!r} ({count} {driver} miners): {err}{hint}")
            continue
        where = miner.secrets_dir / ref if miner.secrets_dir else None
        found = f"file {where}" if where is not None and where.is_file() else "factory default"
        creds_lines.append(f"{ref!r} for {count} {driver} miner(s): {found}")
    if problems:
        raise ConfigError("\n".join(problems))
    schema = FeatureSchema(settings.feature_windows)
    explicit = len(settings.miners)
    unidentified = sum(1 for m in miners if m.entry.driver is None)
    scan = sum(1 for _ in settings.scan_hosts())
    env = describe_env()
    out = [
        f"ok: {args.config}",
        f"  environment overrides: {', '.join(env) if env else 'none'}",
        f"  store: {settings.store_path} (disk cap {settings.disk_cap_mb:g} MB; raw "
        f"{settings.retention.raw_days:g} d, 5-min aggregates {settings.retention.agg_days:g} d)",
        f"  polling: every {settings.poll_interval_s:g} s, timeout {settings.poll_timeout_s:g} s, "
        f"at most {settings.max_in_flight} in flight, jitter {settings.jitter_s:g} s, "
        f"backoff cap {settings.backoff_cap_s:g} s",
        f"  features: {len(schema)} over {' '.join(settings.feature_windows)} "
        f"(schema {schema.hash[:12]})",
        f"  miners: {explicit} listed, {len(miners) - explicit} from inventory "
        f"{settings.inventory or '(none)'}; {unidentified} to identify; "
        f"{scan} addresses to scan in {len(settings.scan)} range(s)",
        f"  secrets directory: {settings.secrets_dir or '(none: factory defaults only)'}",
        *(f"  credentials {line}" for line in creds_lines),
    ]
    if settings.sections:
        out.append(
            f"  other tables (validated by their owners): {', '.join(sorted(settings.sections))}"
        )
    if not miners and not settings.scan:
        out.append("  warning: no miners configured (add [[miners]], scan or inventory)")
    sys.stdout.write("\n".join(out) + "\n")
    return 0
