"""HTTP transport: every httpx exception mapped (httpx's own test_httpcore_all_exceptions_mapped
idea), digest auth, one pooled client, and faults on loopback with time bounds."""

from __future__ import annotations

import inspect
import time

import httpx
import pytest

from agent.errors import (
    AgentError,
    MinerAuthError,
    MinerCommandError,
    MinerResponseError,
    MinerTimeoutError,
)
from agent.transports.base import MinerConnectError, MinerConnectTimeoutError, Timeouts
from agent.transports.http import HTTPX_ERRORS, HttpTransport, map_httpx_error
from tests.wire.conftest import ANTMINER_CREDS, FAST
from tests.wire.fakes.sockets import closed_port, full_backlog_port
from tests.wire.fakes.web_server import FakeAntminerWeb

HOST = "127.0.0.1"
SLACK_S = 0.5


def _httpx_exception_classes() -> list[type[BaseException]]:
    return [
        obj
        for name in httpx.__all__
        if inspect.isclass(obj := getattr(httpx, name)) and issubclass(obj, BaseException)
    ]


def test_every_httpx_exception_is_mapped_explicitly() -> None:
    classes = _httpx_exception_classes()
    assert len(classes) >= 25  # the whole public tree, not a lucky subset
    unmapped = [c.__name__ for c in classes if c not in HTTPX_ERRORS]
    assert unmapped == []


@pytest.mark.parametrize("cls", _httpx_exception_classes(), ids=lambda c: c.__name__)
def test_each_httpx_exception_maps_to_an_agent_error(cls: type[Exception]) -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    if issubclass(cls, httpx.HTTPStatusError):
        err = cls("boom", request=request, response=httpx.Response(500, request=request))
    elif issubclass(cls, httpx.RequestError):
        err = cls("boom", request=request)
    elif cls in (
        httpx.StreamConsumed,
        httpx.StreamClosed,
        httpx.ResponseNotRead,
        httpx.RequestNotRead,
    ):
        err = cls()
    else:
        err = cls("boom")
    mapped = map_httpx_error(HOST, err)
    assert isinstance(mapped, AgentError)
    assert isinstance(mapped, HTTPX_ERRORS[cls][0])


def web(port: int, **kw) -> HttpTransport:
    return HttpTransport(
        HOST, port, credentials=ANTMINER_CREDS, timeouts=kw.pop("timeouts", FAST), **kw
    )


async def test_digest_auth_and_one_pooled_connection() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            for _ in range(4):
                body = await t.request("GET", "/cgi-bin/get_system_info.cgi")
        finally:
            await t.close()
    assert b"Antminer S19 Pro" in body
    assert srv.connections == 1  # keep-alive through the pooled client
    assert [a for _, _, a in srv.requests].count(True) == 4


async def test_wrong_password_is_auth_error() -> None:
    async with FakeAntminerWeb(password="other") as srv:
        t = web(srv.port)
        try:
            with pytest.raises(MinerAuthError, match="401"):
                await t.request("GET", "/cgi-bin/get_miner_conf.cgi")
        finally:
            await t.close()


async def test_unknown_endpoint_is_command_error() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            with pytest.raises(MinerCommandError) as info:
                await t.request("GET", "/cgi-bin/nope.cgi")
        finally:
            await t.close()
    assert info.value.code == 404


async def test_refused() -> None:
    t = web(closed_port())
    started = time.monotonic()
    try:
        with pytest.raises(MinerConnectError):
            await t.request("GET", "/")
    finally:
        await t.close()
    assert time.monotonic() - started < SLACK_S


async def test_connect_timeout() -> None:
    with full_backlog_port() as port:
        t = web(port)
        started = time.monotonic()
        try:
            with pytest.raises(MinerConnectTimeoutError):
                await t.request("GET", "/")
        finally:
            await t.close()
    assert FAST.connect_s * 0.9 <= time.monotonic() - started < FAST.connect_s + SLACK_S


async def test_read_timeout() -> None:
    async with FakeAntminerWeb(slow_s=2.0) as srv:
        t = web(srv.port)
        started = time.monotonic()
        try:
            with pytest.raises(MinerTimeoutError):
                await t.request("GET", "/cgi-bin/summary.cgi")
        finally:
            await t.close()
    assert time.monotonic() - started < FAST.read_s + SLACK_S


async def test_deadline_bounds_a_slow_digest_dance() -> None:
    # each of the two round-trips (challenge, then authorised) fits the read timeout,
    # but together they exceed the deadline
    async with FakeAntminerWeb(slow_s=0.4) as srv:
        t = web(srv.port, timeouts=Timeouts(connect_s=0.5, read_s=0.5, deadline_s=0.6))
        started = time.monotonic()
        try:
            with pytest.raises(MinerTimeoutError, match="deadline"):
                await t.request("GET", "/cgi-bin/summary.cgi")
        finally:
            await t.close()
    assert 0.55 <= time.monotonic() - started < 0.6 + SLACK_S


async def test_oversize_body() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port, max_reply_bytes=100)
        try:
            with pytest.raises(MinerResponseError, match="exceeds"):
                await t.request("GET", "/cgi-bin/stats.cgi")
        finally:
            await t.close()
