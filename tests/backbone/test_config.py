"""Configuration: sources and precedence, clear errors, inventory, secrets never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentSettings, load_settings
from agent.errors import ConfigError
from tests.conftest import REPO


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("HASHPILOT_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_defaults_match_the_issue() -> None:
    s = AgentSettings()
    assert s.poll_interval_s == 30
    assert (s.retention.raw_days, s.retention.agg_days) == (7, 90)
    assert s.feature_windows == ["5m", "1h", "6h", "24h", "7d"]
    assert s.poll_timeout_s < s.poll_interval_s


def test_file_then_environment_precedence_and_relative_paths(tmp_path, monkeypatch) -> None:
    cfg = write(
        tmp_path / "agent.toml",
        'state_dir = "state"\npoll_interval_s = 20\n[retention]\nraw_days = 3\nagg_days = 30\n',
    )
    monkeypatch.setenv("HASHPILOT_POLL_INTERVAL_S", "15")
    monkeypatch.setenv("HASHPILOT_RETENTION__AGG_DAYS", "60")
    s = load_settings(cfg)
    assert s.poll_interval_s == 15  # environment beats the file
    assert (s.retention.raw_days, s.retention.agg_days) == (3, 60)  # nested env, file for the rest
    assert s.state_dir == tmp_path / "state"
    assert s.store_path == tmp_path / "state" / "hashpilot.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pol_interval_s = 10", "pol_interval_s: unknown setting (typo?)"),
        ("poll_interval_s = 30\npoll_timeout_s = 30", "must be below poll_interval_s"),
        ('scan = ["198.18.0.0/15"]', "at most 4096 per range"),
        ('scan = ["198.51.100.1/24"]', "not a CIDR range"),
        ('feature_windows = ["5m", "1 week"]', "not a duration"),
        ('[[miners]]\nhost = "127.0.0.1"\ncredentials = "../etc/shadow"', "miners.0.credentials"),
        ('[[miners]]\nhost = "127.0.0.1"\nports = { rpc = 70000 }', "outside 1-65535"),
        ("max_in_flight = 0", "max_in_flight: Input should be greater than or equal to 1 (got 0)"),
        ("poll_interval_s = ", "not valid TOML"),
        ("[retention]\nraw_days = 10\nagg_days = 5", "agg_days must be at least raw_days"),
    ],
)
def test_errors_name_the_setting_and_the_problem(tmp_path, text, expected) -> None:
    cfg = write(tmp_path / "agent.toml", text + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert expected in str(err.value)
    assert str(cfg) in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(Path("/nonexistent/agent.toml"))


def test_tables_owned_by_other_subsystems_pass_through(tmp_path) -> None:
    cfg = write(tmp_path / "agent.toml", "[optimize]\nsite_cap_w = 100000\n")
    assert load_settings(cfg).sections == {"optimize": {"site_cap_w": 100000}}


def test_secrets_come_from_the_credentials_directory_and_never_print(tmp_path, monkeypatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    write(creds / "hashpilot_uplink_token", "tok-s3cret-value")
    write(creds / "antminer", 'username = "root"\npassword = "hunter2-pw"\n')
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = write(
        tmp_path / "agent.toml",
        '[[miners]]\nhost = "127.0.0.9"\ndriver = "antminer"\ncredentials = "antminer"\n',
    )
    s = load_settings(cfg)
    assert s.uplink_token is not None
    assert s.uplink_token.get_secret_value() == "tok-s3cret-value"
    (miner,) = s.resolve_miners()
    assert miner.credentials("antminer").password == "hunter2-pw"
    shown = repr(s) + str(s) + repr(miner) + repr(miner.credentials("antminer"))
    assert "s3cret" not in shown
    assert "hunter2" not in shown


def test_inventory_written_by_the_simulator(tmp_path) -> None:
    import asyncio

    from agent.simulator.farm import Farm

    async def make() -> Path:
        farm = Farm(
            {"s19jpro": 1, "m50": 2},
            ports_mode=True,
            whatsminer_v3_fraction=0.5,
            state_dir=tmp_path / "sim",
        )
        await farm.start()
        try:
            return farm.write_inventory(tmp_path / "farm.toml")
        finally:
            await farm.stop()

    asyncio.run(make())
    cfg = write(tmp_path / "agent.toml", 'inventory = "farm.toml"\n')
    miners = load_settings(cfg).resolve_miners()
    assert sorted(m.miner_id for m in miners) == ["m50-0001", "m50-0002", "s19jpro-0001"]
    for m in miners:
        config = m.driver_config()
        assert config is not None
        assert config.ports  # ephemeral simulator ports carried through
        assert m.secrets_dir == tmp_path / "sim" / "secrets"
        creds = m.credentials(config.driver, config.api)
        assert creds.username


def test_duplicate_miner_ids_are_refused(tmp_path) -> None:
    cfg = write(
        tmp_path / "agent.toml", '[[miners]]\nhost = "127.0.0.1"\n[[miners]]\nhost = "127.0.0.1"\n'
    )
    with pytest.raises(ConfigError, match="appears twice"):
        load_settings(cfg).resolve_miners()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HASHPILOT_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
    )


def test_check_config_explains_and_fails_clearly(tmp_path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write(secrets / "farm", 'username = "root"\npassword = "pa55-secret"\n')
    good = write(
        tmp_path / "agent.toml",
        'secrets_dir = "secrets"\nscan = ["127.0.0.0/30"]\n'
        '[[miners]]\nhost = "127.0.0.5"\ndriver = "antminer"\ncredentials = "farm"\n',
    )
    ok = _cli("check-config", "--config", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "ok:" in ok.stdout
    assert "2 addresses to scan" in ok.stdout
    assert "'farm' for 1 antminer miner(s): file" in ok.stdout
    assert "pa55" not in ok.stdout + ok.stderr
    bad = write(
        tmp_path / "bad.toml",
        '[[miners]]\nhost = "127.0.0.5"\ndriver = "whatsminer"\ncredentials = "missing"\n',
    )
    fail = _cli("check-config", "--config", str(bad))
    assert fail.returncode == 2
    assert "ConfigError" in fail.stderr
    assert "'missing'" in fail.stderr


@pytest.mark.parametrize(
    ("text", "secret", "names"),
    [
        ('[[miners]]\nhost = "127.0.0.5"\npassword = "hunter2"', "hunter2", "miners.0.password"),
        ("uplink_token = 987654321", "987654321", "uplink_token"),
        ('[[miners]]\nhost = "127.0.0.5"\ncredentials = "root:S3cret!"', "S3cret", "credentials"),
    ],
)
def test_rejected_values_that_may_be_secrets_are_never_echoed(tmp_path, text, secret, names):
    cfg = write(tmp_path / "agent.toml", text + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert names in str(err.value)
    assert secret not in str(err.value)
    assert "(got" not in str(err.value)
    shown = _cli("check-config", "--config", str(cfg))
    assert shown.returncode == 2
    assert names in shown.stderr
    assert secret not in shown.stdout + shown.stderr
