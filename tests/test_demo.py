"""`make demo` runs: a simulated farm, the real daemon, a fleet table that fills up."""

import os
import signal
import subprocess
import sys
import time


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_demo_fills_the_fleet_table(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.demo",
            "--cycles",
            "2",
            "--interval",
            "3",
            "--mix",
            "s19jpro:2,m60s:1,m30s:1",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=True,
    )
    assert "4 miners, 4 up, 0 not up" in out.stdout, out.stdout + out.stderr
    tables = out.stdout.split("\n-- ")
    assert tables[1].startswith("starting --")
    assert "4 miners, 0 up, 4 not up" in tables[1]  # before the first cycle: all pending
    assert tables[1].count("pending") >= 4
    assert "~ = J/TH estimated" in out.stdout  # the legend for ~ and -
    assert "- = no current reading" in out.stdout
    assert tables[2].startswith("after ")  # printed right after the first cycle commits
    first_wait_s = int(tables[2].split()[1])
    assert first_wait_s < 3 + 3  # not a whole interval later than the cycle
    assert (tmp_path / "state" / "hashpilot.db").is_file()


def test_default_mix_shows_every_firmware():
    from agent.demo import DEFAULT_MIX, _mix
    from agent.simulator.farm import Farm

    farm = Farm(_mix(DEFAULT_MIX), ports_mode=True)
    firmware = {d.firmware for d in farm.units.values()}
    assert firmware == {"antminer", "whatsminer_v2", "whatsminer_v3", "braiins"}


def test_demo_stops_cleanly_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.demo",
            "--interval",
            "2",
            "--mix",
            "s19pro:1,m50:1",
            "--workdir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "miners," in line or not line:
            break
    if "miners," not in seen:
        proc.kill()
        raise AssertionError(seen + proc.communicate()[1])
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "store kept at" in out
