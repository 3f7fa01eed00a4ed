"""A small HTTP/1.1 server on asyncio streams, with RFC 7616 Digest auth (MD5, qop=auth).

Why hand-written: the farm needs thousands of tiny per-unit listeners in one process, and
fault injection at the byte level (hang after the request, trickle, reset mid-response,
drop the response after applying a config). A general-purpose framework per unit would cost
far more memory and hide exactly the socket behaviour we want to control. The subset here
is what miner web UIs and their clients use: GET/POST, Content-Length bodies, keep-alive.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

#: Longest request head (request line + headers) accepted; browsers send ~1 KiB.
MAX_HEAD_BYTES = 16 * 1024
#: Largest request body accepted; a full set_miner_conf is ~1 KiB.
MAX_BODY_BYTES = 1024 * 1024
#: Idle keep-alive connections are closed after this long (lighttpd's default is 5 s; a
#: little longer keeps the digest challenge/response pair of one call on one connection).
KEEPALIVE_IDLE_S = 15.0
#: A nonce is honoured this long; after that the client is told ``stale=true``.
NONCE_TTL_S = 300.0
#: Nonces remembered per unit (oldest evicted first); far above any client's concurrency.
MAX_NONCES = 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
}
_AUTH_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


@dataclass
class HttpRequest:
    """One parsed request."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.split("?", 1)[0]


@dataclass
class HttpResponse:
    """One response; ``drop=True`` closes the connection without sending anything."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    drop: bool = False
    close: bool = False

    def encode(self, keep_alive: bool) -> bytes:
        """Serialize the status line, headers and body."""
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Status')}"]
        headers = {
            "Content-Type": self.content_type,
            "Content-Length": str(len(self.body)),
            "Connection": "keep-alive" if keep_alive and not self.close else "close",
            **self.headers,
        }
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class BadRequest(Exception):
    """The bytes received are not an HTTP request we accept."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_request(reader: asyncio.StreamReader) -> HttpRequest | None:
    """Read one request; None on a clean EOF before any byte."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if not err.partial:
            return None
        raise BadRequest(400, "truncated request head") from err
    except asyncio.LimitOverrunError as err:
        raise BadRequest(413, "request head too large") from err
    if len(head) > MAX_HEAD_BYTES:
        raise BadRequest(413, "request head too large")
    text = head.decode("latin-1")
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "bad request line")
    headers: dict[str, str] = {}
    for line in header_lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(400, "bad header line")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest(400, "chunked request bodies are not supported")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as err:
        raise BadRequest(400, "bad Content-Length") from err
    if length < 0 or length > MAX_BODY_BYTES:
        raise BadRequest(413, "body too large")
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(parts[0].upper(), parts[1], headers, body)


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


# -- digest auth ----------------------------------------------------------------------------


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - RFC 7616 MD5 digest


def parse_auth_params(value: str) -> dict[str, str]:
    """Parse ``k=v, k="v"`` pairs of an Authorization header (after the scheme)."""
    return {
        m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
        for m in _AUTH_PARAM.finditer(value)
    }


class DigestAuth:
    """Server side of HTTP Digest (MD5, qop=auth): issues nonces and checks responses."""

    def __init__(self, realm: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.realm = realm
        self._clock = clock
        self._nonces: OrderedDict[str, tuple[float, set[str]]] = OrderedDict()

    def challenge(self, stale: bool = False) -> str:
        """Issue a nonce and return a fresh ``WWW-Authenticate`` value."""
        nonce = secrets.token_hex(16)
        self._nonces[nonce] = (self._clock(), set())
        while len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        value = (
            f'Digest realm="{self.realm}", charset="UTF-8", algorithm=MD5, '
            f'nonce="{nonce}", qop="auth"'
        )
        return value + (", stale=true" if stale else "")

    def check(self, request: HttpRequest, username: str, password: str) -> tuple[bool, bool]:
        """Return (authorized, stale) for one request against the expected credentials."""
        header = request.headers.get("authorization", "")
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "digest":
            return False, False
        p = parse_auth_params(rest)
        required = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
        if any(k not in p for k in required):
            return False, False
        if p["realm"] != self.realm or p["qop"] != "auth" or p["uri"] != request.target:
            return False, False
        if p.get("algorithm", "MD5").upper() != "MD5":
            return False, False
        ha1 = _md5(f"{p['username']}:{self.realm}:{password}")
        ha2 = _md5(f"{request.method}:{p['uri']}")
        expected = _md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        valid = secrets.compare_digest(expected, p["response"].lower())
        valid = valid and p["username"] == username
        entry = self._nonces.get(p["nonce"])
        if entry is None:
            return False, valid  # unknown (evicted or forged) nonce: stale if creds are right
        issued, seen = entry
        if self._clock() - issued > NONCE_TTL_S:
            del self._nonces[p["nonce"]]
            return False, valid
        if not valid or p["nc"] in seen:
            return False, False  # wrong credentials, or a replayed nonce count
        seen.add(p["nc"])
        return True, False
