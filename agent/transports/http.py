"""HTTP to a miner's web interface: one pooled ``httpx.AsyncClient`` per host, digest auth.

Every httpx exception is mapped to an ``agent.errors`` type in :data:`HTTPX_ERRORS` (the
shape of httpx's own ``map_httpcore_exceptions``); a test checks the table is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import Iterator
from typing import Any

import httpx
import structlog

from agent.credentials import Credentials
from agent.errors import (
    AgentError,
    ConfigError,
    MinerAuthError,
    MinerCommandError,
    MinerConnectionError,
    MinerResponseError,
    MinerTimeoutError,
)
from agent.transports.base import (
    LAN_CONNECT_TIMEOUT_S,
    MinerConnectError,
    MinerConnectTimeoutError,
    Timeouts,
    Transport,
    deadline_error,
    map_library_error,
)

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

#: Every httpx exception class → (our error type, what it means). Most specific first is
#: not required: lookup walks the raised exception's MRO and takes the first listed class.
HTTPX_ERRORS: dict[type[Exception], tuple[type[AgentError], str]] = {
    httpx.ConnectTimeout: (MinerConnectTimeoutError, "connect timed out"),
    httpx.ReadTimeout: (MinerTimeoutError, "read timed out"),
    httpx.WriteTimeout: (MinerTimeoutError, "write timed out"),
    httpx.PoolTimeout: (MinerTimeoutError, "no free pooled connection in time"),
    httpx.TimeoutException: (MinerTimeoutError, "timed out"),
    httpx.ConnectError: (MinerConnectError, "cannot connect"),
    httpx.ReadError: (MinerConnectionError, "read failed"),
    httpx.WriteError: (MinerConnectionError, "write failed"),
    httpx.CloseError: (MinerConnectionError, "close failed"),
    httpx.NetworkError: (MinerConnectionError, "network error"),
    httpx.ProxyError: (MinerConnectError, "proxy refused the connection"),
    # "Server disconnected without sending a response" is a RemoteProtocolError: the web
    # server restarting under us (set_miner_conf), so it is a retryable connection error.
    httpx.RemoteProtocolError: (MinerConnectionError, "the web server broke the HTTP protocol"),
    httpx.LocalProtocolError: (MinerCommandError, "request rejected by the HTTP client"),
    httpx.ProtocolError: (MinerConnectionError, "HTTP protocol error"),
    httpx.UnsupportedProtocol: (ConfigError, "unsupported URL scheme"),
    httpx.TransportError: (MinerConnectionError, "transport error"),
    httpx.DecodingError: (MinerResponseError, "body could not be decoded"),
    httpx.TooManyRedirects: (MinerResponseError, "too many redirects"),
    httpx.RequestError: (MinerConnectionError, "request failed"),
    httpx.HTTPStatusError: (MinerCommandError, "error status"),
    httpx.HTTPError: (MinerConnectionError, "HTTP error"),
    httpx.InvalidURL: (ConfigError, "invalid URL (check host and port)"),
    httpx.CookieConflict: (MinerResponseError, "conflicting cookies"),
    httpx.StreamConsumed: (MinerResponseError, "response stream already consumed"),
    httpx.StreamClosed: (MinerResponseError, "response stream closed"),
    httpx.ResponseNotRead: (MinerResponseError, "response body not read"),
    httpx.RequestNotRead: (MinerResponseError, "request body not read"),
    httpx.StreamError: (MinerResponseError, "stream misuse"),
}


def map_httpx_error(host: str, err: Exception) -> AgentError:
    """Return our error for an httpx exception (``TypeError`` if the class is unmapped)."""
    return map_library_error(host, err, HTTPX_ERRORS, library="httpx", code=_http_status)


def _http_status(err: BaseException) -> int | None:
    """Return the HTTP status of an error-status exception, else ``None``."""
    return err.response.status_code if isinstance(err, httpx.HTTPStatusError) else None


@contextlib.contextmanager
def mapped_httpx_errors(host: str) -> Iterator[None]:
    """Re-raise any httpx exception as its ``agent.errors`` type, ``from`` the original."""
    try:
        yield
    except httpx.HTTPError as err:
        raise map_httpx_error(host, err) from err
    except (httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError) as err:
        raise map_httpx_error(host, err) from err


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context for every miner client.

    httpx builds a new context per ``AsyncClient`` (about 35 ms of CPU and 870 kB each, with
    the CA bundle loaded): at 2,000 Antminers that was ~1 GB of RSS and ~40 s of event-loop
    blocking in the first poll cycle (measured by ``benchmarks/poll.py``).
    """
    return ssl.create_default_context()


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
    ) -> None:
        self.host = host
        self.port = port
        self.scheme = scheme
        self._credentials = credentials
        self.connect_timeout_s, self.read_timeout_s, self.deadline_s = (
            timeouts or Timeouts()
        ).resolve(CONNECT_TIMEOUT_S, READ_TIMEOUT_S, DEADLINE_S)
        self.max_reply_bytes = max_reply_bytes
        self._client: httpx.AsyncClient | None = None
        # Built now, with the driver, not at the first request: the daemon freezes what it
        # built at start-up out of the garbage collector's generations (commands/run.py), and
        # 1,200 clients made in the first poll cycle were rescanned by every full collection
        # (2,000-miner mix: 2.0 -> 1.8-1.9 ms CPU per read, full-collection time -20 to -40 %).
        self._get_client()

    @property
    def base_url(self) -> str:
        """Root URL of the miner's web server."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            auth = None
            if self._credentials is not None:
                auth = httpx.DigestAuth(self._credentials.username, self._credentials.password)
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                auth=auth,
                timeout=httpx.Timeout(
                    self.read_timeout_s, connect=self.connect_timeout_s, pool=self.deadline_s
                ),
                limits=httpx.Limits(
                    max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
                ),
                follow_redirects=False,
                verify=shared_tls_context(),
                trust_env=False,  # never route miner traffic through an environment proxy
            )
        return self._client

    async def request(self, method: str, path: str, json_body: Any = None) -> bytes:
        """Send one request and return the body of a 2xx reply; raise typed errors otherwise."""
        client = self._get_client()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.deadline_s):
                with mapped_httpx_errors(self.host):
                    async with client.stream(method, path, json=json_body) as response:
                        body = await self._read_capped(response)
        except TimeoutError as err:
            if isinstance(err, MinerTimeoutError):
                raise
            raise deadline_error(self.host, f"{method} {path}", self.deadline_s, started) from err
        self._check_status(method, path, response, body)
        return body

    async def status_probe(self, path: str = "/") -> httpx.Response:
        """GET ``path`` without authentication and return the response head (for identify)."""
        async with asyncio.timeout(self.deadline_s):
            with mapped_httpx_errors(self.host):
                response = await self._get_client().get(path, auth=None)
        return response

    async def close(self) -> None:
        """Close the pooled client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _read_capped(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            total += len(chunk)
            if total > self.max_reply_bytes:
                raise MinerResponseError(
                    self.host, f"HTTP reply exceeds {self.max_reply_bytes} bytes", b"".join(chunks)
                )
        return b"".join(chunks)

    def _check_status(self, method: str, path: str, response: httpx.Response, body: bytes) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise MinerAuthError(self.host, f"{method} {path}: web credentials refused ({status})")
        raise MinerCommandError(self.host, status, f"{method} {path}: HTTP {status} {body[:80]!r}")
