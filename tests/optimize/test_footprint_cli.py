"""Daemon footprint (scikit-optimize/-learn stay out until a round runs) and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent.cli import main
from agent.profiles import load_profiles
from agent.snapshot import Settings
from tests.conftest import REPO
from tests.optimize.conftest import assert_within_profile

SNIPPET = """
import sys


def hwm():
    # peak RSS of this process image in MB; /proc's VmHWM resets at exec, unlike
    # getrusage's ru_maxrss, which inherits the forking parent's peak
    with open("/proc/self/status") as fh:
        return next(int(x.split()[1]) for x in fh if x.startswith("VmHWM")) / 1024


import agent.cli, agent.commands.optimize
import agent.optimize.budget, agent.optimize.fleet, agent.optimize.optimizer
import agent.optimize.prior, agent.optimize.proposals, agent.optimize.space
import agent.optimize.surrogate, agent.optimize.tariff, agent.optimize.trials
agent.cli.build_parser()
before = sorted(m for m in ("sklearn", "skopt", "scipy") if m in sys.modules)
rss0 = hwm()
if RUN:
    import logging, structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from agent.optimize.fleet import demo_round
    demo_round()
after = sorted(m for m in ("sklearn", "skopt", "scipy") if m in sys.modules)
rss1 = hwm()
import json
print(json.dumps([before, after, rss0, rss1]))
"""


def _probe(run: bool):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = (
        subprocess.run(
            [sys.executable, "-c", SNIPPET.replace("RUN", str(run))],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env=env,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return json.loads(out)


def test_optimizer_imports_stay_light_until_a_round_runs(record_property):
    before, after, rss_idle, _ = _probe(run=False)
    assert before == []
    assert after == []
    before2, after2, _, rss_round = _probe(run=True)
    assert before2 == []
    assert {"sklearn", "skopt"} <= set(after2)
    record_property("rss_mb_without_optimizer", rss_idle)
    record_property("rss_mb_with_optimizer", rss_round)
    assert rss_round > rss_idle + 30  # the heavy stack is real, so keeping it lazy matters


def test_cli_sim_dry_run_prints_bounded_proposals(capsys):
    assert main(["optimize", "--dry-run", "--sim", "3", "--trials", "3", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    props = [x["proposal"] for x in lines if "proposal" in x]
    profiles = load_profiles()
    for p in props:
        pid = p["miner_id"].split("-")[-1]
        key = "whatsminer" if profiles[pid].make == "whatsminer" else "braiins"
        assert_within_profile(profiles[pid], key, Settings(**p["settings"]))
        assert p["constraint_margins"]["p_feasible"] >= 0.95
        lo, hi = p["delta_usd_day_interval"]
        assert lo <= p["expected_delta_usd_day"] <= hi


def test_cli_config_round_with_a_site_cap_and_an_unknown_model(tmp_path, capsys):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        """
[optimize]
hashprice_usd_per_th_day = 0.06
site_cap_kw = 5.0
[optimize.tariff]
kind = "flat"
usd_per_kwh = 0.05
[[optimize.miners]]
id = "a"
model = "M50"
firmware = "whatsminer_v3"
ambient_c = 25.0
power_limit_w = 3422.0
[[optimize.miners]]
id = "b"
model = "Antminer S19k Pro"
firmware = "braiins"
ambient_c = 25.0
[[optimize.miners]]
id = "c"
model = "Antminer Z99"
firmware = "antminer"
""",
        encoding="utf-8",
    )
    assert main(["optimize", "--dry-run", "--config", str(cfg), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    budget = next(x["budget"] for x in lines if "budget" in x)
    assert budget["power_w"] <= 5000.0
    skipped = [x["skipped"] for x in lines if "skipped" in x]
    assert [(s["miner_id"], s["error"]) for s in skipped] == [("c", "ModelError")]


def test_cli_refuses_without_dry_run(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["optimize", "--sim", "1"])
    assert exc.value.code == 2
    assert "--dry-run" in capsys.readouterr().err


WORKER_SNIPPET = """
import json, sys
from agent.optimize.worker import run_round_in_worker
answer = run_round_in_worker({
    "economics": {"hashprice_usd_per_th_day": 0.06, "tariff": 0.05},
    "cap_w": None,
    "units": [
        {"miner_id": "a", "model": "M50", "firmware": "whatsminer_v3", "ambient_c": 25.0,
         "current": {"power_limit_w": 3422.0},
         "trials": [
            {"settings": {"power_limit_w": w}, "hashrate_ths": w / 29.0, "power_w": w,
             "chip_temp_c": 75.0, "board_temp_c": 50.0, "env_temp_c": 25.0}
            for w in (3422.0, 2800.0, 2300.0, 1900.0)]},
        {"miner_id": "b", "model": "Antminer Z99", "firmware": "antminer"}]})
heavy = sorted(m for m in ("sklearn", "skopt", "scipy") if m in sys.modules)
print(json.dumps([answer, heavy]))
"""


def test_worker_round_keeps_the_caller_light():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = (
        subprocess.run(
            [sys.executable, "-c", WORKER_SNIPPET],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
            env=env,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    answer, heavy = json.loads(out)
    assert heavy == []
    assert [s["miner_id"] for s in answer["skipped"]] == ["b"]
    assert answer["skipped"][0]["error"] == "ModelError"
    for p in answer["proposals"]:
        assert 1030.0 <= p["settings"]["power_limit_w"] <= 3422.0


def test_worker_reports_a_malformed_request_as_a_typed_error():
    from agent.errors import ModelError
    from agent.optimize.worker import run_round_in_worker

    with pytest.raises(ModelError, match="exited 2"):
        run_round_in_worker({"units": [{"model": "M50"}]})
