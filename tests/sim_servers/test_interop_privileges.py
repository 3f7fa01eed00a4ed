"""The pyasic interop tests skip, with their reason, when run without the right to bind port 80.

Runs them in a child pytest as ``nobody`` (read access to the venv kept through the
DAC capabilities, but no CAP_NET_BIND_SERVICE), which needs root to set up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

#: uid/gid of ``nobody``; the child keeps read access but not the right to bind ports < 1024.
NOBODY = 65534
#: Bound on the child run (it starts and stops a farm per test and skips them).
CHILD_TIMEOUT_S = 120
INTEROP = "tests/sim_servers/test_interop_pyasic.py"


def _unprivileged_port_start() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_interop_tests_skip_without_the_right_to_bind_port_80(tmp_path):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not installed")
    if _unprivileged_port_start() <= 80:
        pytest.skip("this host lets any user bind port 80; nothing to skip")
    caps = "+dac_override,+dac_read_search"
    cmd = [
        setpriv,
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        f"--inh-caps={caps}",
        f"--ambient-caps={caps}",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        INTEROP,
    ]
    env = dict(os.environ, HOME=str(tmp_path), OMP_NUM_THREADS="1")
    child = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S
    )
    out = child.stdout + child.stderr
    if child.stderr.startswith("setpriv:"):
        pytest.skip(f"cannot drop privileges on this host: {child.stderr.strip()}")
    assert child.returncode == 0, out
    summary = child.stdout.strip().splitlines()[-1]
    assert "skipped" in summary, out
    assert not any(word in summary for word in ("passed", "failed", "error")), out
    assert "binding port 80 needs root or CAP_NET_BIND_SERVICE" in out, out
