"""HTTP transport on loopback: digest auth and nonce reuse, keep-alive pooling, every framing a
server may use, and each fault mapped to its error type within its time bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent.errors import (
    MinerAuthError,
    MinerCommandError,
    MinerConnectionError,
    MinerResponseError,
    MinerTimeoutError,
)
from agent.transports.base import MinerConnectError, MinerConnectTimeoutError, Timeouts
from agent.transports.digest import DigestAuth, DigestError, parse_challenge
from agent.transports.http import MAX_HEAD_BYTES, HttpTransport
from tests.wire.conftest import ANTMINER_CREDS, FAST
from tests.wire.fakes.raw_http import RawHttpServer, Scripted, chunked, reply
from tests.wire.fakes.sockets import closed_port, full_backlog_port
from tests.wire.fakes.web_server import FakeAntminerWeb

HOST = "127.0.0.1"
SLACK_S = 0.5

# RFC 7616 §3.9.1: the worked example, for MD5 and SHA-256.
RFC_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_RESPONSES = {
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


def web(port: int, **kw) -> HttpTransport:
    return HttpTransport(
        HOST, port, credentials=ANTMINER_CREDS, timeouts=kw.pop("timeouts", FAST), **kw
    )


# --- digest ---------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", sorted(RFC_RESPONSES))
def test_digest_response_matches_rfc7616_example(alg: str) -> None:
    auth = DigestAuth("Mufasa", "Circle of Life", cnonce=lambda: RFC_CNONCE)
    assert auth.learn(RFC_CHALLENGE.format(alg=alg))
    header = auth.authorization("GET", "/dir/index.html")
    assert header is not None
    assert f'response="{RFC_RESPONSES[alg]}"' in header
    assert "nc=00000001" in header
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in header
    assert "nc=00000002" in (auth.authorization("GET", "/dir/index.html") or "")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="x"', None),
        ('Basic realm="basic", Digest realm="r", nonce="n"', ("r", "n", "MD5", None)),
        ('Digest realm="r", nonce="n", qop="auth-int,auth"', ("r", "n", "MD5", "auth")),
        ('digest realm="a \\"q\\"", nonce=n2, algorithm=sha-256', ('a "q"', "n2", "SHA-256", None)),
    ],
)
def test_parse_challenge(header: str, expected: tuple | None) -> None:
    c = parse_challenge(header)
    assert (None if c is None else (c.realm, c.nonce, c.algorithm, c.qop)) == expected


@pytest.mark.parametrize(
    "header",
    [
        'Digest realm="r", nonce="n", qop="auth-int"',
        'Digest realm="r", nonce="n", algorithm=MD4',
        'Digest realm="r"',
    ],
)
def test_unanswerable_challenge_is_rejected(header: str) -> None:
    with pytest.raises(DigestError):
        parse_challenge(header)


def test_digest_auth_repr_has_no_password() -> None:
    assert "root" in repr(DigestAuth("root", "hunter2"))
    assert "hunter2" not in repr(DigestAuth("root", "hunter2"))


# --- against the fake Antminer web UI -------------------------------------------------------


async def test_digest_auth_and_one_pooled_connection() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            for _ in range(4):
                body = await t.request("GET", "/cgi-bin/get_system_info.cgi")
        finally:
            await t.close()
    assert b"Antminer S19 Pro" in body
    assert srv.connections == 1  # keep-alive through the pool
    # one challenge round-trip, then the nonce is reused with a rising count
    assert [a for _, _, a in srv.requests] == [False, True, True, True, True]


async def test_forgotten_nonce_costs_one_more_challenge() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            await t.request("GET", "/cgi-bin/summary.cgi")
            srv.forget_nonces()
            body = await t.request("GET", "/cgi-bin/summary.cgi")
        finally:
            await t.close()
    assert b"SUMMARY" in body
    assert [a for _, _, a in srv.requests] == [False, True, False, True]


async def test_post_sends_the_json_body() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            await t.request("POST", "/cgi-bin/set_miner_conf.cgi", json_body={"miner-mode": 1})
        finally:
            await t.close()
    assert srv.posts == [{"miner-mode": 1}]
    assert srv.conf["bitmain-work-mode"] == "1"


async def test_wrong_password_is_auth_error() -> None:
    async with FakeAntminerWeb(password="other") as srv:
        t = web(srv.port)
        try:
            with pytest.raises(MinerAuthError, match="401"):
                await t.request("GET", "/cgi-bin/get_miner_conf.cgi")
        finally:
            await t.close()
    assert len(srv.requests) == 2  # the challenge, one answer, no more


async def test_status_probe_reads_the_challenge_without_answering_it() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            probe = await t.status_probe("/")
        finally:
            await t.close()
    assert probe.status_code == 401
    assert 'realm="antMiner Configuration"' in probe.headers["www-authenticate"]
    assert [a for _, _, a in srv.requests] == [False]


async def test_unknown_endpoint_is_command_error() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            with pytest.raises(MinerCommandError) as info:
                await t.request("GET", "/cgi-bin/nope.cgi")
        finally:
            await t.close()
    assert info.value.code == 404


async def test_connection_closed_by_the_miner_while_idle_is_replaced() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port)
        try:
            await t.request("GET", "/cgi-bin/summary.cgi")
            srv.drop_connections()
            await asyncio.sleep(0.05)  # the reset reaches the client's event loop
            body = await t.request("GET", "/cgi-bin/summary.cgi")
        finally:
            await t.close()
    assert b"SUMMARY" in body
    assert (srv.connections, t.connects) == (2, 2)


async def test_idle_connection_is_closed_at_the_keepalive_expiry() -> None:
    async with FakeAntminerWeb() as srv:
        t = web(srv.port, keepalive_expiry_s=0.1)
        try:
            await t.request("GET", "/cgi-bin/summary.cgi")
            await t.request("GET", "/cgi-bin/summary.cgi")  # within the expiry: reused
            assert t.idle_connections == 1
            await asyncio.sleep(0.15)
            assert t.idle_connections == 0  # closed by its timer, not at the next request
            await t.request("GET", "/cgi-bin/summary.cgi")
        finally:
            await t.close()
    assert srv.connections == 2


# --- framing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "connections"),
    [
        (reply(body=b'{"a":1}'), 1),
        (chunked(b'{"a"', b":1}"), 1),
        (chunked(b'{"a":1}', trailer="X-Trailer: yes\r\n"), 1),
        (reply(body=b'{"a":1}', headers={"Connection": "close"}), 2),
        (reply(body=b'{"a":1}', version="HTTP/1.0"), 2),
        (reply(body=b'{"a":1}', version="HTTP/1.0", headers={"Connection": "keep-alive"}), 1),
    ],
    ids=["length", "chunked", "trailer", "conn-close", "http10", "http10-keepalive"],
)
async def test_body_framings(raw: bytes, connections: int) -> None:
    close = connections == 2
    async with RawHttpServer(Scripted(raw, close_after=close)) as srv:
        t = web(srv.port)
        try:
            bodies = [await t.request("GET", "/x") for _ in range(2)]
        finally:
            await t.close()
    assert bodies == [b'{"a":1}'] * 2
    assert srv.connections == connections


async def test_close_delimited_body() -> None:
    raw = reply(body=b'{"a":1}', length=False)
    async with RawHttpServer(Scripted(raw, close_after=True)) as srv:
        t = web(srv.port)
        try:
            bodies = [await t.request("GET", "/x") for _ in range(2)]
        finally:
            await t.close()
    assert bodies == [b'{"a":1}'] * 2
    assert srv.connections == 2


async def test_interim_100_continue_is_skipped() -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\n" + reply(body=b"ok")
    async with RawHttpServer(Scripted(raw)) as srv:
        t = web(srv.port)
        try:
            assert await t.request("GET", "/x") == b"ok"
        finally:
            await t.close()


@pytest.mark.parametrize(
    ("scripted", "error", "match"),
    [
        (Scripted(b"HTTX/1.1 200 OK\r\n\r\n"), MinerConnectionError, "bad status line"),
        (Scripted(b"HTTP/1.1 2x0 OK\r\n\r\n"), MinerConnectionError, "bad status line"),
        (Scripted(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"), MinerConnectionError, "header"),
        (
            Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nab"),
            MinerConnectionError,
            "Content-Length",
        ),
        (
            Scripted(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            MinerConnectionError,
            "chunk size",
        ),
        (
            Scripted(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"),
            MinerConnectionError,
            "protocol",
        ),
        (Scripted(b"", close_after=True), MinerConnectionError, "without sending a reply"),
        (
            Scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close_after=True),
            MinerConnectionError,
            "mid-reply",
        ),
        (Scripted(reply(500, b"boom")), MinerCommandError, "HTTP 500"),
        (Scripted(reply(403, b"no")), MinerAuthError, "403"),
        (Scripted(reply(302, b"", {"Location": "/"})), MinerCommandError, "HTTP 302"),
        (
            Scripted(reply(401, b"", {"WWW-Authenticate": 'Digest realm="r", qop="auth-int"'})),
            MinerAuthError,
            "cannot answer",
        ),
    ],
    ids=[
        "version",
        "status",
        "header",
        "length",
        "chunk",
        "huge-head",
        "eof",
        "short-body",
        "500",
        "403",
        "redirect",
        "qop",
    ],
)
async def test_bad_replies_map_to_typed_errors(
    scripted: Scripted, error: type[Exception], match: str
) -> None:
    async with RawHttpServer(scripted) as srv:
        t = web(srv.port)
        try:
            with pytest.raises(error, match=match):
                await t.request("GET", "/x")
        finally:
            await t.close()


@pytest.mark.parametrize(
    "raw", [reply(body=b"x" * 101), chunked(b"x" * 60, b"x" * 60)], ids=["length", "chunked"]
)
async def test_oversize_body(raw: bytes) -> None:
    async with RawHttpServer(Scripted(raw)) as srv:
        t = web(srv.port, max_reply_bytes=100)
        try:
            with pytest.raises(MinerResponseError, match="exceeds"):
                await t.request("GET", "/x")
        finally:
            await t.close()


# --- faults with time bounds ----------------------------------------------------------------


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


async def test_tls_to_a_plain_http_server_is_a_connect_error() -> None:
    async with FakeAntminerWeb() as srv:
        t = HttpTransport(HOST, srv.port, credentials=ANTMINER_CREDS, scheme="https", timeouts=FAST)
        try:
            with pytest.raises(MinerConnectError):
                await t.request("GET", "/cgi-bin/summary.cgi")
        finally:
            await t.close()


async def test_read_timeout() -> None:
    async with FakeAntminerWeb(slow_s=2.0) as srv:
        t = web(srv.port)
        started = time.monotonic()
        try:
            with pytest.raises(MinerTimeoutError, match="read timed out"):
                await t.request("GET", "/cgi-bin/summary.cgi")
        finally:
            await t.close()
    assert FAST.read_s * 0.9 <= time.monotonic() - started < FAST.read_s + SLACK_S


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


async def test_requests_beyond_the_pool_wait_for_a_connection() -> None:
    async with FakeAntminerWeb(slow_s=0.1) as srv:
        t = web(srv.port)
        try:
            bodies = await asyncio.gather(
                *(t.request("GET", "/cgi-bin/summary.cgi") for _ in range(5))
            )
        finally:
            await t.close()
    assert all(b"SUMMARY" in b for b in bodies)
    assert srv.connections <= 2  # MAX_CONNECTIONS
