"""The one retry loop in the agent, keyed by exception type.

* ``MinerConnectionError`` (incl. timeouts) is retried with exponential backoff — for a
  command that changes state only if the transport proved nothing was sent
  (``MinerConnectError``), so a write is never applied twice.
* ``SessionExpiredError`` (a cached token/salt the miner no longer accepts) re-authenticates
  once and retries at once; a second rejection is a plain ``MinerAuthError``.
* ``MinerAuthError``, ``MinerCommandError``, ``MinerResponseError`` and anything else are
  raised at once: retrying cannot fix them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from agent.errors import (
    MinerAuthError,
    MinerCommandError,
    MinerConnectionError,
    MinerError,
    MinerTimeoutError,
)
from agent.transports.base import MinerConnectError, MinerConnectTimeoutError

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Tries per query (1 + 2 retries). A LAN miner that fails three times within ~2 s is down,
#: not flaky; the poller's own backoff takes over from there.
RETRY_ATTEMPTS = 3
#: First backoff; doubled per retry (0.5 s, 1 s): rides out a momentary refusal or reset
#: (the single-threaded API busy with another client) without hammering a struggling unit.
RETRY_BACKOFF_S = 0.5
#: Ceiling of one backoff sleep.
RETRY_BACKOFF_MAX_S = 4.0

#: Exception types the loop retries (subject to idempotency, see module docstring).
RETRYABLE: tuple[type[Exception], ...] = (MinerConnectionError,)


class SessionExpiredError(MinerAuthError):
    """A cached session credential (V2 token, V3 salt) was refused; refresh it once."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one query is retried."""

    attempts: int = RETRY_ATTEMPTS
    backoff_s: float = RETRY_BACKOFF_S
    backoff_max_s: float = RETRY_BACKOFF_MAX_S

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.backoff_max_s)


#: A policy for probes and callers that must not wait: one try, no retry.
NO_RETRY = RetryPolicy(attempts=1)


def coded_error(
    host: str, cmd: str, code: int, entry: tuple[type[MinerError], str], text: str
) -> MinerError:
    """Build the typed error for a device error ``code`` from its ``(type, meaning)`` entry."""
    kind, meaning = entry
    if issubclass(kind, MinerCommandError):
        return kind(host, code, f"{cmd}: {meaning}: {text}")
    return kind(host, f"{cmd}: code {code} {meaning}: {text}")


def never_sent(host: str, what: str, err: MinerConnectionError) -> MinerConnectError:
    """Re-type a failed session fetch (token, salt): the command itself was never sent."""
    kind = MinerConnectTimeoutError if isinstance(err, MinerTimeoutError) else MinerConnectError
    return kind(host, f"{what}: {err.message}")


class BaseProtocol:
    """Commands to one miner over one transport; every exchange goes through :meth:`query`."""

    def __init__(self, host: str, retry: RetryPolicy | None = None) -> None:
        self.host = host
        self.retry = retry or RetryPolicy()

    async def reset_session(self) -> None:
        """Forget cached session credentials (token, salt); default: nothing cached."""
        return None

    async def query(
        self, op: Callable[[], Awaitable[T]], *, what: str, idempotent: bool = True
    ) -> T:
        """Run ``op`` under the retry policy; see the module docstring for the rules."""
        attempt = 0
        session_refreshed = False
        while True:
            attempt += 1
            try:
                return await op()
            except SessionExpiredError as err:
                if session_refreshed:
                    raise MinerAuthError(self.host, f"{what}: {err.message}") from err
                session_refreshed = True
                attempt -= 1  # re-authenticating is not a retry of a failed transport
                log.debug("session_refresh", host=self.host, command=what)
                await self.reset_session()
            except RETRYABLE as err:
                sent_nothing = isinstance(err, MinerConnectError)
                if (not idempotent and not sent_nothing) or attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt)
                log.debug(
                    "retry",
                    host=self.host,
                    command=what,
                    attempt=attempt,
                    error=type(err).__name__,
                    delay_s=delay,
                )
                await asyncio.sleep(delay)
