"""`hashpilot-agent read` / `identify` as real subprocesses against loopback fakes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from tests.conftest import REPO
from tests.wire.fakes import fixtures
from tests.wire.fakes.framed_server import FakeV3Server
from tests.wire.fakes.rpc_server import FakeRpcServer
from tests.wire.fakes.sockets import closed_port


async def cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CREDENTIALS_DIRECTORY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, out.decode(), err.decode()


async def test_read_json_whatsminer_v2() -> None:
    async with FakeRpcServer(fixtures.replies("whatsminer/v2")) as rpc:
        code, out, err = await cli(
            "read", f"127.0.0.1:{rpc.port}", "--driver", "whatsminer", "--json"
        )
    assert code == 0, err
    snap = json.loads(out)
    assert snap["hashrate_ths"] == 124.5
    assert snap["power_w"] == 3200
    assert snap["miner_id"] == f"127.0.0.1:{rpc.port}"
    assert snap["ts"].endswith("Z")
    assert len(snap["boards"]) == 3


async def test_read_identifies_v3_and_prints_summary() -> None:
    async with FakeV3Server(fixtures.replies("whatsminer/v3")) as srv:
        code, out, err = await cli(
            "read",
            f"127.0.0.1:{closed_port()}",  # PORT is the RPC port: closed, so V3 must answer
            "--v3-port",
            str(srv.port),
            "--web-port",
            str(closed_port()),
        )
    assert code == 0, err
    assert "M60S_VK40" in out
    assert "171.26 TH/s" in out
    assert "board 2" in out


async def test_read_port_is_the_v3_port_only_with_driver_whatsminer_api_v3() -> None:
    async with FakeV3Server(fixtures.replies("whatsminer/v3")) as srv:
        code, out, err = await cli(
            "read", f"127.0.0.1:{srv.port}", "--driver", "whatsminer", "--api", "v3", "--json"
        )
    assert code == 0, err
    assert json.loads(out)["model"] == "M60S_VK40"


def test_port_roles() -> None:
    from agent.commands.read import probe_ports

    assert probe_ports(4029, None) == {"rpc": 4029}
    assert probe_ports(4029, 8080, 4434) == {"rpc": 4029, "v3": 4434, "web": 8080}
    assert probe_ports(4434, None, port_is_v3=True) == {"v3": 4434}


async def test_read_has_an_overall_deadline() -> None:
    async with FakeV3Server(fixtures.replies("whatsminer/v3"), mode="silent") as srv:
        started = time.monotonic()
        code, out, err = await cli(
            "read",
            f"127.0.0.1:{srv.port}",
            "--driver",
            "whatsminer",
            "--api",
            "v3",
            "--timeout",
            "1",
        )
        elapsed = time.monotonic() - started
    assert code == 2
    assert out == ""
    assert "MinerTimeoutError" in err
    assert "within 1 s" in err
    assert elapsed < 10  # the 10 s production read timeout never had to fire


async def test_identify_prints_driver_config() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), trailing_nul=True) as rpc:
        code, out, err = await cli(
            "identify", f"127.0.0.1:{rpc.port}", "--web-port", str(closed_port())
        )
    assert code == 0, err
    assert json.loads(out)["driver"] == "antminer"


async def test_unreachable_exits_2_with_typed_error() -> None:
    code, out, err = await cli(
        "read",
        f"127.0.0.1:{closed_port()}",
        "--driver",
        "antminer",
        "--web-port",
        str(closed_port()),
    )
    assert code == 2
    assert out == ""
    assert "MinerConnectError" in err
