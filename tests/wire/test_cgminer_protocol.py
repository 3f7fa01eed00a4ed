"""cgminer protocol: multi-command and its fallback, STATUS → typed errors, the retry rules."""

from __future__ import annotations

import pytest

from agent.errors import (
    MinerAuthError,
    MinerCommandError,
    MinerConnectionError,
    MinerResponseError,
    MinerTimeoutError,
)
from agent.protocols.base import BaseProtocol, RetryPolicy, SessionExpiredError
from agent.protocols.cgminer import CgminerProtocol
from agent.transports.base import MinerConnectError, Timeouts
from agent.transports.tcp_json import TcpJsonTransport
from tests.wire.conftest import FAST, QUICK_RETRY
from tests.wire.fakes import fixtures
from tests.wire.fakes.rpc_server import ANTMINER_ALLOWED, FakeRpcServer

HOST = "127.0.0.1"
READS = ("version", "summary", "stats", "pools")


SHORT_READ = Timeouts(connect_s=0.5, read_s=0.2, deadline_s=1.0)


def proto(
    port: int, retry: RetryPolicy = QUICK_RETRY, timeouts: Timeouts = FAST
) -> CgminerProtocol:
    return CgminerProtocol(TcpJsonTransport(HOST, port, timeouts=timeouts), retry)


async def test_multicommand_uses_one_connection() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), trailing_nul=True) as srv:
        replies = await proto(srv.port).multicommand(*READS)
    assert srv.connections == 1
    assert srv.requests == [{"command": "version+summary+stats+pools"}]
    assert set(replies.ok) == set(READS)
    assert replies.get("stats")["STATS"][1]["chain_acn2"] == 114


async def test_rejected_multicommand_falls_back_to_concurrent_singles_and_remembers() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), multicommand=False) as srv:
        p = proto(srv.port)
        first = await p.multicommand(*READS)
        assert not p.multicommand_supported
        second = await p.multicommand(*READS)
    assert set(first.ok) == set(second.ok) == set(READS)
    sent = [r["command"] for r in srv.requests]
    assert sent[0] == "version+summary+stats+pools"
    assert sorted(sent[1:5]) == sorted(READS)
    assert sorted(sent[5:]) == sorted(READS)  # no second `+` attempt
    assert srv.connections == 9


async def test_one_garbled_multicommand_reply_does_not_disable_multicommand() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), mode="garbage") as srv:
        p = proto(srv.port)
        garbled = await p.multicommand(*READS)
        assert p.multicommand_supported  # a garbled reply is not a rejection of `+`
        srv.mode = "normal"
        srv.requests.clear()
        replies = await p.multicommand(*READS)
    assert set(garbled.failed) == set(READS)  # the singles fallback got garbage too
    assert all(isinstance(e, MinerResponseError) for e in garbled.failed.values())
    assert srv.requests == [{"command": "version+summary+stats+pools"}]
    assert set(replies.ok) == set(READS)


async def test_forbidden_member_fails_alone_as_access_denied() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), allowed=ANTMINER_ALLOWED) as srv:
        replies = await proto(srv.port).multicommand("summary", "devdetails")
    assert "summary" in replies.ok
    assert isinstance(replies.failed["devdetails"], MinerAuthError)
    with pytest.raises(MinerAuthError, match="Access denied"):
        replies.get("devdetails")
    assert replies.optional("devdetails") is None


async def test_access_denied_single_is_auth_error_and_not_retried() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020"), allowed=ANTMINER_ALLOWED) as srv:
        with pytest.raises(MinerAuthError, match="estats"):
            await proto(srv.port, RetryPolicy(attempts=3, backoff_s=0.01)).command("estats")
    assert srv.connections == 1


async def test_invalid_command_is_command_error_with_code() -> None:
    async with FakeRpcServer(fixtures.replies("antminer/v2020")) as srv:
        with pytest.raises(MinerCommandError) as info:
            await proto(srv.port).command("frobnicate")
    assert info.value.code == 14
    assert srv.connections == 1  # not retried


async def test_reply_without_status_is_response_error() -> None:
    async with FakeRpcServer(mode="raw", raw_reply=b'{"SUMMARY":[{}]}') as srv:
        with pytest.raises(MinerResponseError, match="no STATUS"):
            await proto(srv.port).command("summary")


async def test_reads_are_retried_on_timeout() -> None:
    async with FakeRpcServer(mode="silent") as srv:
        p = proto(srv.port, RetryPolicy(attempts=3, backoff_s=0.01), SHORT_READ)
        with pytest.raises(MinerTimeoutError):
            await p.command("summary")
    assert srv.connections == 3


async def test_writes_are_not_resent_after_a_timeout() -> None:
    async with FakeRpcServer(mode="silent") as srv:
        p = proto(srv.port, RetryPolicy(attempts=3, backoff_s=0.01), SHORT_READ)
        with pytest.raises(MinerTimeoutError):
            await p.command("restart", idempotent=False)
    assert srv.connections == 1


class _Counting(BaseProtocol):
    def __init__(self, errors: list[Exception]) -> None:
        super().__init__("h", RetryPolicy(attempts=3, backoff_s=0.0))
        self.errors = errors
        self.calls = 0
        self.resets = 0

    async def reset_session(self) -> None:
        self.resets += 1

    async def op(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    ("errors", "idempotent", "outcome", "calls"),
    [
        ([MinerConnectionError("h", "reset")] * 2, True, "ok", 3),
        ([MinerConnectionError("h", "reset")] * 3, True, MinerConnectionError, 3),
        ([MinerConnectionError("h", "reset")], False, MinerConnectionError, 1),
        ([MinerConnectError("h", "refused")] * 2, False, "ok", 3),
        ([MinerAuthError("h", "bad password")], True, MinerAuthError, 1),
        ([MinerCommandError("h", 14, "invalid")], True, MinerCommandError, 1),
        ([MinerResponseError("h", "garbage")], True, MinerResponseError, 1),
        ([SessionExpiredError("h", "stale token")], False, "ok", 2),
        ([SessionExpiredError("h", "stale")] * 2, False, MinerAuthError, 2),
    ],
)
async def test_retry_rules(errors, idempotent, outcome, calls) -> None:
    p = _Counting(list(errors))
    if outcome == "ok":
        assert await p.query(p.op, what="x", idempotent=idempotent) == "ok"
    else:
        with pytest.raises(outcome) as info:
            await p.query(p.op, what="x", idempotent=idempotent)
        assert not isinstance(info.value, SessionExpiredError)
    assert p.calls == calls
    if any(isinstance(e, SessionExpiredError) for e in errors):
        assert p.resets == 1
