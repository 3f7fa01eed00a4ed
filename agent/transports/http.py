"""HTTP/1.1 to a miner's web interface on asyncio streams: keep-alive pool and digest auth.

Why not httpx (used here before): its client stack (httpx → httpcore → anyio → h11) cost
1.1 ms of CPU per request on a pooled connection and 1.7 ms with a new connection every two
requests, against about 0.2 ms for this module (loopback, simulator's web UI); at 1,200
Antminers × 4 CGI pages per poll that was most of a 2,000-miner cycle's CPU
(``benchmarks/poll.py``). Miner web UIs need a small subset, the one implemented here:
GET/POST with small JSON bodies; replies framed by Content-Length, chunked, or closing the
connection; keep-alive; RFC 7616 digest (``transports.digest``). Every failure is an
``agent.errors`` type at the source, with the same classes httpx's errors mapped to.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agent.credentials import Credentials
from agent.errors import (
    MinerAuthError,
    MinerCommandError,
    MinerConnectionError,
    MinerError,
    MinerResponseError,
    MinerTimeoutError,
)
from agent.transports.base import (
    LAN_CONNECT_TIMEOUT_S,
    Timeouts,
    Transport,
    deadline_error,
    io_error,
    open_tcp,
)
from agent.transports.digest import DigestAuth, DigestError

log = structlog.get_logger(__name__)

#: Stock Antminer web UI port.
DEFAULT_PORT = 80
#: The web server shares the miner's LAN: see ``LAN_CONNECT_TIMEOUT_S``.
CONNECT_TIMEOUT_S = LAN_CONNECT_TIMEOUT_S
#: Antminer CGI handlers answer in well under a second; `set_miner_conf` may restart bmminer
#: before replying (protocols.md §1.4), so allow 10 s between bytes.
READ_TIMEOUT_S = 10.0
#: Whole request including the digest challenge round-trip.
DEADLINE_S = 20.0
#: Largest body accepted; CGI JSON replies are a few KB.
MAX_REPLY_BYTES = 1024 * 1024
#: Connections kept per host: a poll issues at most a handful of CGI requests at once, and
#: the miner's embedded web server (lighttpd) serves them one by one anyway.
MAX_CONNECTIONS = 2
#: An idle pooled connection older than this is closed instead of reused: lighttpd (the
#: stock web server) drops keep-alive connections idle for 5 s (its
#: ``server.max-keep-alive-idle`` default), and a request sent just as the server closes is
#: lost; a second of margin keeps reuse clear of that race (httpx reused up to 5 s).
KEEPALIVE_EXPIRY_S = 4.0
#: Longest status line plus headers accepted (h11's limit, which httpx used): a miner's are
#: a few hundred bytes; more means a broken or hostile server.
MAX_HEAD_BYTES = 16 * 1024
#: Most trailer lines skipped after a chunked body (servers send none).
MAX_TRAILER_LINES = 64
#: Bytes requested per read of a close-delimited body.
READ_CHUNK_BYTES = 65536
_SCHEME_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class HttpReply:
    """One complete response: status, headers (lower-case names) and body."""

    status_code: int
    headers: dict[str, str]
    body: bytes


class _ProtocolViolation(Exception):
    """The server's bytes are not valid HTTP/1.1 (raised inside the parser only)."""


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context for every miner client.

    Building a context loads the CA bundle (about 35 ms of CPU and 870 kB each): one per
    miner was ~1 GB of RSS and ~40 s of event-loop blocking at 2,000 miners
    (measured by ``benchmarks/poll.py`` when httpx built one per client).
    """
    return ssl.create_default_context()


class _Connection:
    """One open keep-alive connection, when it went idle, and its expiry timer."""

    __slots__ = ("expiry", "idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.expiry: asyncio.TimerHandle | None = None

    def reusable(self, now: float, expiry_s: float) -> bool:
        """Whether the connection is open, not closed by the server and recently used."""
        return (
            now - self.idle_since < expiry_s
            and not self.writer.is_closing()
            and not self.reader.at_eof()
        )

    def abort(self) -> None:
        """Drop the connection at once (no await: safe during cancellation)."""
        self.writer.transport.abort()


class HttpTransport(Transport):
    """Pooled HTTP(S) requests to one miner with digest authentication."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        credentials: Credentials | None = None,
        scheme: str = "http",
        timeouts: Timeouts | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
    ) -> None:
        if scheme not in _SCHEME_PORTS:
            raise ValueError(f"unsupported URL scheme {scheme!r}")
        self.host = host
        self.port = port
        self.scheme = scheme
        self.connect_timeout_s, self.read_timeout_s, self.deadline_s = (
            timeouts or Timeouts()
        ).resolve(CONNECT_TIMEOUT_S, READ_TIMEOUT_S, DEADLINE_S)
        self.max_reply_bytes = max_reply_bytes
        self.keepalive_expiry_s = keepalive_expiry_s
        self._auth = DigestAuth(credentials.username, credentials.password) if credentials else None
        name = f"[{host}]" if ":" in host else host
        self._host_header = name if port == _SCHEME_PORTS[scheme] else f"{name}:{port}"
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        #: Number of connections opened so far (observability and tests).
        self.connects = 0

    @property
    def base_url(self) -> str:
        """Root URL of the miner's web server."""
        return f"{self.scheme}://{self._host_header}"

    async def request(self, method: str, path: str, json_body: Any = None) -> bytes:
        """Send one request and return the body of a 2xx reply; raise typed errors otherwise."""
        body = b""
        if json_body is not None:
            body = json.dumps(
                json_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode()
        reply = await self._bounded(method, path, body, authenticate=True)
        self._check_status(method, path, reply)
        return reply.body

    async def status_probe(self, path: str = "/") -> HttpReply:
        """GET ``path`` without authentication and return the reply, any status (for identify)."""
        return await self._bounded("GET", path, b"", authenticate=False)

    @property
    def idle_connections(self) -> int:
        """Number of pooled connections waiting for the next request (observability, tests)."""
        return len(self._idle)

    async def close(self) -> None:
        """Close every pooled connection."""
        idle, self._idle = self._idle, []
        for conn in idle:
            if conn.expiry is not None:
                conn.expiry.cancel()
            conn.writer.close()

    async def _bounded(self, method: str, path: str, body: bytes, authenticate: bool) -> HttpReply:
        """One request (and its digest round-trip) within the deadline, on a pooled slot."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadline_s), self._slots:
                auth = self._auth if authenticate else None
                header = auth.authorization(method, path) if auth is not None else None
                reply = await self._exchange(method, path, body, header)
                if reply.status_code == 401 and auth is not None:
                    if self._learn(auth, reply):
                        header = auth.authorization(method, path)
                        reply = await self._exchange(method, path, body, header)
                return reply
        except TimeoutError as err:
            if isinstance(err, MinerTimeoutError):
                raise
            raise deadline_error(self.host, f"{method} {path}", self.deadline_s, started) from err

    def _learn(self, auth: DigestAuth, reply: HttpReply) -> bool:
        """Adopt the 401's digest challenge; ``False`` if it has none."""
        try:
            return auth.learn(reply.headers.get("www-authenticate", ""))
        except DigestError as err:
            raise MinerAuthError(self.host, f"cannot answer the web login: {err}") from err

    async def _exchange(
        self, method: str, path: str, body: bytes, authorization: str | None
    ) -> HttpReply:
        """Send one request on a pooled or new connection and read its reply."""
        conn = self._checkout()
        if conn is None:
            conn = await self._connect()
        try:
            conn.writer.write(self._head(method, path, body, authorization) + body)
            await conn.writer.drain()
            reply, keep_alive = await self._read_reply(conn.reader, method)
        except BaseException as err:
            conn.abort()  # never reuse (or leak) a connection in an unknown state
            if isinstance(err, OSError) and not isinstance(err, MinerError):
                raise io_error(self.host, err) from err
            raise
        if keep_alive:
            conn.idle_since = time.monotonic()
            # closed when it expires, not at the next poll: between polls (30 s) every
            # miner's connection would otherwise hold a file descriptor for nothing
            conn.expiry = asyncio.get_running_loop().call_later(
                self.keepalive_expiry_s, self._expire, conn
            )
            self._idle.append(conn)
        else:
            conn.writer.close()
        return reply

    def _checkout(self) -> _Connection | None:
        """Return the most recently used live idle connection; close stale ones."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.expiry is not None:
                conn.expiry.cancel()
                conn.expiry = None
            if conn.reusable(now, self.keepalive_expiry_s):
                return conn
            conn.abort()
        return None

    def _expire(self, conn: _Connection) -> None:
        """Close an idle connection that reached the keep-alive expiry."""
        conn.expiry = None
        if conn in self._idle:
            self._idle.remove(conn)
            conn.writer.close()

    async def _connect(self) -> _Connection:
        tls = shared_tls_context() if self.scheme == "https" else None
        reader, writer = await open_tcp(
            self.host, self.port, self.connect_timeout_s, tls=tls, limit=MAX_HEAD_BYTES
        )
        self.connects += 1
        return _Connection(reader, writer)

    def _head(self, method: str, path: str, body: bytes, authorization: str | None) -> bytes:
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self._host_header}",
            "Accept: */*",
            "Accept-Encoding: identity",
            "Connection: keep-alive",
            "User-Agent: hashpilot-agent",
        ]
        if authorization is not None:
            lines.append(f"Authorization: {authorization}")
        if body or method not in ("GET", "HEAD"):
            lines.append("Content-Type: application/json")
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _read_reply(
        self, reader: asyncio.StreamReader, method: str
    ) -> tuple[HttpReply, bool]:
        """Read one response under the idle timeout; return it and whether to keep the socket."""
        loop = asyncio.get_running_loop()
        idle = asyncio.timeout(self.read_timeout_s)
        parser = _ReplyReader(
            reader, self.max_reply_bytes, lambda: idle.reschedule(loop.time() + self.read_timeout_s)
        )
        try:
            async with idle:
                return await parser.read(method)
        except TimeoutError as err:
            if isinstance(err, MinerTimeoutError):
                raise
            raise MinerTimeoutError(
                self.host, f"read timed out: no reply bytes for {self.read_timeout_s:g} s"
            ) from err
        except _ProtocolViolation as err:
            raise MinerConnectionError(
                self.host, f"the web server broke the HTTP protocol: {err}"
            ) from err
        except _ReplyTooLarge as err:
            raise MinerResponseError(
                self.host, f"HTTP reply exceeds {self.max_reply_bytes} bytes", err.excerpt
            ) from err
        except asyncio.IncompleteReadError as err:
            if not err.partial and not parser.started:
                raise MinerConnectionError(
                    self.host, "server disconnected without sending a reply"
                ) from err
            raise MinerConnectionError(self.host, "connection closed mid-reply") from err
        except asyncio.LimitOverrunError as err:
            raise MinerConnectionError(
                self.host, f"the web server broke the HTTP protocol: a line over {MAX_HEAD_BYTES} B"
            ) from err

    def _check_status(self, method: str, path: str, reply: HttpReply) -> None:
        status = reply.status_code
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise MinerAuthError(self.host, f"{method} {path}: web credentials refused ({status})")
        raise MinerCommandError(
            self.host, status, f"{method} {path}: HTTP {status} {reply.body[:80]!r}"
        )


class _ReplyTooLarge(Exception):
    """The body outgrew the cap (raised inside the parser only)."""

    def __init__(self, excerpt: bytes) -> None:
        super().__init__("reply too large")
        self.excerpt = excerpt


class _ReplyReader:
    """Parses one HTTP/1.1 response from a stream (RFC 9112 §6.3 message framing)."""

    __slots__ = ("_cap", "_reader", "_touch", "started")

    def __init__(self, reader: asyncio.StreamReader, cap: int, touch: Callable[[], object]) -> None:
        self._reader = reader
        self._cap = cap
        self._touch = touch  # restarts the idle timeout after bytes arrived
        self.started = False

    async def read(self, method: str) -> tuple[HttpReply, bool]:
        """Return the reply and whether the connection may carry another request."""
        while True:
            head = await self._reader.readuntil(b"\r\n\r\n")
            self.started = True
            self._touch()
            version, status, headers = _parse_head(head)
            if not 100 <= status < 200:
                break  # interim 1xx replies are skipped
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
        if method == "HEAD" or status in (204, 304):
            return HttpReply(status, headers, b""), keep_alive
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.rsplit(",", 1)[-1].strip().lower() == "chunked":
                return HttpReply(status, headers, await self._chunked()), keep_alive
            return HttpReply(status, headers, await self._to_eof()), False
        length = headers.get("content-length")
        if length is None:
            return HttpReply(status, headers, await self._to_eof()), False
        return HttpReply(status, headers, await self._exactly(_content_length(length), head)), (
            keep_alive
        )

    async def _exactly(self, length: int, head: bytes) -> bytes:
        if length > self._cap:
            raise _ReplyTooLarge(head)
        body = await self._reader.readexactly(length)
        self._touch()
        return body

    async def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = await self._reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as err:
                raise _ProtocolViolation(f"bad chunk size line {line[:40]!r}") from err
            if size < 0:
                raise _ProtocolViolation(f"negative chunk size {line[:40]!r}")
            if size == 0:
                break
            total += size
            if total > self._cap:
                raise _ReplyTooLarge(b"".join(chunks))
            chunks.append(await self._reader.readexactly(size))
            if await self._reader.readexactly(2) != b"\r\n":
                raise _ProtocolViolation("chunk not followed by CRLF")
            self._touch()
        for _ in range(MAX_TRAILER_LINES):
            if await self._reader.readuntil(b"\r\n") == b"\r\n":
                return b"".join(chunks)
        raise _ProtocolViolation(f"more than {MAX_TRAILER_LINES} trailer lines")

    async def _to_eof(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while chunk := await self._reader.read(READ_CHUNK_BYTES):
            self._touch()
            chunks.append(chunk)
            total += len(chunk)
            if total > self._cap:
                raise _ReplyTooLarge(b"".join(chunks))
        return b"".join(chunks)


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """Split a response head into version, status and headers (repeats joined by ", ")."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
        raise _ProtocolViolation(f"bad status line {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":  # obsolete line folding: part of the previous value
            if not name:
                raise _ProtocolViolation("continuation line before any header")
            headers[name] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        name = name.lower()
        if not sep or not name or name != name.strip():
            raise _ProtocolViolation(f"bad header line {line[:60]!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), headers


def _content_length(value: str) -> int:
    """Parse Content-Length; repeated identical values are allowed (RFC 9110 §8.6)."""
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (text := values.pop()).isdigit():
        raise _ProtocolViolation(f"bad Content-Length {value[:40]!r}")
    return int(text)
