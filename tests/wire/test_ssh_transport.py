"""SSH transport: every asyncssh exception mapped, pinned host keys, faults on loopback."""

from __future__ import annotations

import inspect
import time
from pathlib import Path

import asyncssh
import pytest

from agent.errors import AgentError, ConfigError, MinerCommandError, MinerResponseError
from agent.transports.base import MinerConnectError, MinerConnectTimeoutError, Timeouts
from agent.transports.ssh import ASYNCSSH_ERRORS, SshTransport, map_asyncssh_error
from tests.wire.conftest import ANTMINER_CREDS
from tests.wire.fakes.sockets import closed_port, full_backlog_port
from tests.wire.fakes.ssh_server import NEW_TOML, FakeBosminerSsh

HOST = "127.0.0.1"
SSH_FAST = Timeouts(connect_s=0.5, read_s=2.0)


def _asyncssh_exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for _, obj in inspect.getmembers(asyncssh, inspect.isclass)
        if issubclass(obj, BaseException)
    ]


@pytest.mark.parametrize("cls", _asyncssh_exception_classes(), ids=lambda c: c.__name__)
def test_every_asyncssh_exception_is_mapped(cls: type[BaseException]) -> None:
    target = next((c for c in cls.__mro__ if c in ASYNCSSH_ERRORS), None)
    assert target is not None, f"{cls.__name__} is not mapped"
    assert issubclass(ASYNCSSH_ERRORS[target][0], AgentError)


def test_specific_mappings() -> None:
    from agent.errors import MinerAuthError, MinerConnectionError

    denied = asyncssh.PermissionDenied("no")
    assert isinstance(map_asyncssh_error(HOST, denied), MinerAuthError)
    bad_key = asyncssh.HostKeyNotVerifiable("mismatch")
    assert isinstance(map_asyncssh_error(HOST, bad_key), MinerAuthError)
    lost = asyncssh.ConnectionLost("gone")
    assert type(map_asyncssh_error(HOST, lost)) is MinerConnectionError
    failed = asyncssh.ProcessError(None, "false", None, 1, None, 1, "", "")
    mapped = map_asyncssh_error(HOST, failed)
    assert isinstance(mapped, MinerCommandError)
    assert mapped.code == 1


def test_known_hosts_is_mandatory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known_hosts"):
        SshTransport(HOST, 22, credentials=ANTMINER_CREDS, known_hosts=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SshTransport(HOST, 22, credentials=ANTMINER_CREDS, known_hosts=tmp_path / "missing")


async def test_commands_reuse_one_connection_and_exit_codes_are_typed(tmp_path: Path) -> None:
    async with FakeBosminerSsh(NEW_TOML) as srv:
        t = SshTransport(
            HOST,
            srv.port,
            credentials=ANTMINER_CREDS,
            known_hosts=srv.write_known_hosts(tmp_path / "kh"),
            timeouts=SSH_FAST,
        )
        try:
            assert "power_target" in await t.run("cat /etc/bosminer.toml")
            with pytest.raises(MinerCommandError) as info:
                await t.run("reboot-the-world")
            assert await t.run("cat /etc/bosminer.toml")
        finally:
            await t.close()
    assert info.value.code == 127


async def test_runaway_output_stops_at_the_cap(tmp_path: Path) -> None:
    cap = 64 * 1024
    async with FakeBosminerSsh(NEW_TOML) as srv:
        t = SshTransport(
            HOST,
            srv.port,
            credentials=ANTMINER_CREDS,
            known_hosts=srv.write_known_hosts(tmp_path / "kh"),
            timeouts=SSH_FAST,
            max_output_bytes=cap,
        )
        try:
            started = time.monotonic()
            with pytest.raises(MinerResponseError, match="limit") as info:
                await t.run("yes")  # never ends: buffering it all would only end at the timeout
            elapsed = time.monotonic() - started
            assert "power_target" in await t.run("cat /etc/bosminer.toml")  # usable again
        finally:
            await t.close()
    assert elapsed < SSH_FAST.read_s
    assert info.value.excerpt.startswith(b"y\ny\n")


async def test_refused(tmp_path: Path) -> None:
    kh = tmp_path / "kh"
    kh.write_text("")
    t = SshTransport(
        HOST, closed_port(), credentials=ANTMINER_CREDS, known_hosts=kh, timeouts=SSH_FAST
    )
    with pytest.raises(MinerConnectError):
        await t.run("true")
    await t.close()


async def test_connect_timeout(tmp_path: Path) -> None:
    kh = tmp_path / "kh"
    kh.write_text("")
    with full_backlog_port() as port:
        t = SshTransport(HOST, port, credentials=ANTMINER_CREDS, known_hosts=kh, timeouts=SSH_FAST)
        started = time.monotonic()
        with pytest.raises(MinerConnectTimeoutError):
            await t.run("true")
        await t.close()
    assert time.monotonic() - started < SSH_FAST.connect_s + 0.5
