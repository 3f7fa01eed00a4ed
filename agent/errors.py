"""The agent's error tree: every failure is one of these, raised ``from`` its cause.

```
AgentError
├── MinerError(host)
│   ├── MinerConnectionError          retryable (refused, reset, unreachable)
│   │   └── MinerTimeoutError         also a builtin TimeoutError
│   ├── MinerAuthError                never retried; backoff to maximum; operator must act
│   ├── MinerCommandError(code, msg)  the device answered with an error status
│   ├── MinerResponseError(excerpt)   undecodable even after the known repairs
│   └── UnsupportedMinerError
├── ConfigError, StoreError
├── BundleError
│   └── BundleSignatureError
├── ModelError                        prior/response model missing or unusable
└── ActionError
    ├── ApprovalError                 no valid approval for these settings
    ├── UnsafeSettingsError           outside the hardware profile's bounds
    └── ApplyVerificationError        read-back differs or the miner degraded
        └── PartialApplyError         a later step failed after earlier ones reached the miner
```
Only ``MinerConnectionError`` (and its subclass) is retryable; ``protocols.base`` decides.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Longest slice of an undecodable payload kept on a ``MinerResponseError``.
EXCERPT_BYTES = 200


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class MinerError(AgentError):
    """Something went wrong talking to one miner."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.message = message


class MinerConnectionError(MinerError):
    """The miner could not be reached or dropped the connection (retryable)."""


class MinerTimeoutError(MinerConnectionError, TimeoutError):
    """The miner did not connect or answer within the bounded time (retryable)."""


class MinerAuthError(MinerError):
    """Credentials were refused; never retried, the operator must act."""


class MinerCommandError(MinerError):
    """The device answered with an error status for a command."""

    def __init__(self, host: str, code: int | str | None, msg: str) -> None:
        super().__init__(host, f"command error {code}: {msg}")
        self.code = code
        self.msg = msg


class MinerResponseError(MinerError):
    """The reply could not be decoded even after the known firmware repairs."""

    def __init__(self, host: str, message: str, excerpt: bytes | str = b"") -> None:
        if isinstance(excerpt, str):
            excerpt = excerpt.encode("utf-8", "replace")
        self.excerpt = excerpt[:EXCERPT_BYTES]
        super().__init__(host, f"{message} (excerpt {self.excerpt!r})")


class UnsupportedMinerError(MinerError):
    """No driver recognises this device, or it lacks a requested capability."""


class ConfigError(AgentError):
    """The configuration is invalid; the daemon refuses to start."""


class StoreError(AgentError):
    """The local store is unreadable, corrupt or full."""


class BundleError(AgentError):
    """A model bundle is malformed, expired, incompatible or fails its self-check."""


class BundleSignatureError(BundleError):
    """A model bundle's signature or file digest does not verify."""


class ModelError(AgentError):
    """A model or a feature it needs is missing or unusable."""


class ActionError(AgentError):
    """A tuning action cannot proceed."""


class ApprovalError(ActionError):
    """No valid operator approval covers these exact settings on this miner."""


class UnsafeSettingsError(ActionError):
    """Settings fall outside the hardware profile's safe bounds."""


class ApplyVerificationError(ActionError):
    """After apply, the read-back differs from the request or the miner degraded."""


class PartialApplyError(ApplyVerificationError):
    """Apply stopped part-way: ``applied_steps`` reached the miner, then ``failed_step`` failed.

    The miner is left in a mixed state that the caller must record (and reconcile or roll
    back); ``failed_step`` may or may not have taken effect. The cause is chained (``from``).
    """

    def __init__(
        self, host: str, applied_steps: Sequence[str], failed_step: str, cause: BaseException
    ) -> None:
        self.host = host
        self.applied_steps = tuple(applied_steps)
        self.failed_step = failed_step
        super().__init__(
            f"{host}: applied {', '.join(self.applied_steps)}, then {failed_step} failed "
            f"({type(cause).__name__}: {cause})"
        )
