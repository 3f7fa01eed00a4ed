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
    assert (tmp_path / "state" / "hashpilot.db").is_file()


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
