"""HTTP Digest access authentication, client side (RFC 7616, with RFC 2069's qop-less form).

The stock Antminer web UI asks for Digest MD5 with ``qop="auth"`` (protocols.md §1.4). The
client keeps the last challenge and answers every later request with it and a rising
nonce count, so only the first request to a miner (or one whose nonce went stale) pays the
401 round-trip. The algorithm set is the one httpx's ``DigestAuth`` supports.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

#: Digest ``algorithm`` token → hash function (``-SESS`` variants hash the session key too).
ALGORITHMS: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
    "SHA": hashlib.sha1,
    "SHA-SESS": hashlib.sha1,
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
    "SHA-512": hashlib.sha512,
    "SHA-512-SESS": hashlib.sha512,
}
#: Random bytes in a client nonce (16 hex characters, as httpx sends).
CNONCE_BYTES = 8

_SCHEME = re.compile(r"(?i)(?:^|[\s,])digest\s+")
_PARAM = re.compile(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_ESCAPE = re.compile(r"\\(.)")


class DigestError(ValueError):
    """A digest challenge this client cannot answer (unsupported algorithm or qop)."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """The parts of a ``WWW-Authenticate: Digest`` challenge a response needs."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    #: ``"auth"``, or ``None`` for a server that offers no qop (RFC 2069).
    qop: str | None = "auth"
    opaque: str | None = None


def parse_challenge(header: str) -> Challenge | None:
    """Return the digest challenge in a ``WWW-Authenticate`` value, ``None`` if there is none.

    Raises :class:`DigestError` for a digest challenge this client cannot answer.
    """
    match = _SCHEME.search(header)
    if match is None:
        return None
    params: dict[str, str] = {}
    for key, quoted, token in _PARAM.findall(header, match.end()):
        # the first value wins: a later challenge of another scheme must not override it
        params.setdefault(key.lower(), _ESCAPE.sub(r"\1", quoted) if quoted else token)
    if "nonce" not in params or "realm" not in params:
        raise DigestError("digest challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    if algorithm not in ALGORITHMS:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    qop: str | None = None
    if "qop" in params:
        offered = {q.strip().lower() for q in params["qop"].split(",")}
        if "auth" not in offered:
            raise DigestError(f"unsupported digest qop {params['qop']!r} (only auth)")
        qop = "auth"
    return Challenge(params["realm"], params["nonce"], algorithm, qop, params.get("opaque"))


class DigestAuth:
    """One client's digest state: the last challenge and its nonce count."""

    __slots__ = ("_cnonce", "_ha1", "_nonce_count", "_password", "challenge", "username")

    def __init__(
        self, username: str, password: str, cnonce: Callable[[], str] | None = None
    ) -> None:
        """``cnonce`` makes client nonces (random by default; fixed for test vectors)."""
        self.username = username
        self._password = password
        self._cnonce = cnonce or random_cnonce
        self.challenge: Challenge | None = None
        self._nonce_count = 0
        self._ha1: str | None = None

    def __repr__(self) -> str:
        return f"DigestAuth(username={self.username!r})"

    def learn(self, header: str) -> bool:
        """Adopt the digest challenge in a 401's ``WWW-Authenticate``; ``False`` if none.

        Raises :class:`DigestError` for a challenge this client cannot answer.
        """
        challenge = parse_challenge(header)
        if challenge is None:
            return False
        self.challenge = challenge
        self._nonce_count = 0
        self._ha1 = None
        return True

    def authorization(self, method: str, uri: str) -> str | None:
        """Return the ``Authorization`` value for one request, ``None`` before any challenge."""
        c = self.challenge
        if c is None:
            return None
        h = ALGORITHMS[c.algorithm]

        def digest(text: str) -> str:
            return h(text.encode()).hexdigest()

        self._nonce_count += 1
        nc = f"{self._nonce_count:08x}"
        cnonce = self._cnonce()
        if self._ha1 is None:  # constant per challenge (except the -SESS cnonce part)
            self._ha1 = digest(f"{self.username}:{c.realm}:{self._password}")
        ha1 = self._ha1
        if c.algorithm.endswith("-SESS"):
            ha1 = digest(f"{ha1}:{c.nonce}:{cnonce}")
        ha2 = digest(f"{method}:{uri}")
        if c.qop is None:
            response = digest(f"{ha1}:{c.nonce}:{ha2}")
        else:
            response = digest(f"{ha1}:{c.nonce}:{nc}:{cnonce}:{c.qop}:{ha2}")
        parts = [
            f'username="{_quote(self.username)}"',
            f'realm="{_quote(c.realm)}"',
            f'nonce="{_quote(c.nonce)}"',
            f'uri="{uri}"',
            f'response="{response}"',
            f"algorithm={c.algorithm}",
        ]
        if c.opaque is not None:
            parts.append(f'opaque="{_quote(c.opaque)}"')
        if c.qop is not None:
            parts += [f"qop={c.qop}", f"nc={nc}", f'cnonce="{cnonce}"']
        return "Digest " + ", ".join(parts)


def random_cnonce() -> str:
    """Return a fresh client nonce."""
    return os.urandom(CNONCE_BYTES).hex()


def _quote(value: str) -> str:
    """Escape a value for an RFC 7230 quoted-string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
