"""SSH command channel (asyncssh) with host keys pinned from a known_hosts file.

Used for Braiins OS, whose configuration lives in ``/etc/bosminer.toml`` with no network API
to change it (protocols.md §2). Host-key checking is never disabled: the known_hosts file
must exist, and a mismatch is an auth error the operator must resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
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
    MinerConnectError,
    MinerConnectTimeoutError,
    Timeouts,
    Transport,
    connect_error,
    io_error,
    map_library_error,
)

log = structlog.get_logger(__name__)

DEFAULT_PORT = 22
#: Key exchange plus password auth on a Braiins control board (ARM/MIPS) can take a couple
#: of seconds; pyasic uses 10 s for its SSH connect (protocols.md §4.5).
CONNECT_TIMEOUT_S = 10.0
#: One remote command (`cat`, a write, `/etc/init.d/bosminer restart`); the init script
#: returns once bosminer is restarted, which takes seconds, not tens of seconds.
COMMAND_TIMEOUT_S = 30.0
#: Largest command output accepted; bosminer.toml is a few KB. Reading stops past it, so a
#: runaway remote command costs at most this (plus the SSH window) in memory.
MAX_OUTPUT_BYTES = 256 * 1024
#: Bytes of stderr kept for the error message; the rest is read and discarded.
STDERR_KEEP_BYTES = 200
#: Read size for command output (asyncssh returns at most this per read).
READ_CHUNK_BYTES = 16 * 1024

#: asyncssh exception class → (our error type, meaning). Lookup walks the MRO.
ASYNCSSH_ERRORS: dict[type[BaseException], tuple[type[AgentError], str]] = {
    asyncssh.PermissionDenied: (MinerAuthError, "SSH credentials refused"),
    asyncssh.HostKeyNotVerifiable: (MinerAuthError, "host key does not match the pinned key"),
    asyncssh.IllegalUserName: (MinerAuthError, "user name rejected"),
    asyncssh.PasswordChangeRequired: (MinerAuthError, "the miner demands a password change"),
    asyncssh.ConnectionLost: (MinerConnectionError, "SSH connection lost"),
    asyncssh.DisconnectError: (MinerConnectionError, "SSH disconnected"),
    asyncssh.ChannelOpenError: (MinerConnectionError, "cannot open an SSH channel"),
    asyncssh.ChannelListenError: (MinerConnectionError, "cannot listen on an SSH channel"),
    asyncssh.TimeoutError: (MinerTimeoutError, "remote command timed out"),
    asyncssh.ProcessError: (MinerCommandError, "remote command failed"),
    asyncssh.SFTPError: (MinerCommandError, "SFTP operation failed"),
    asyncssh.Error: (MinerConnectionError, "SSH error"),
    asyncssh.BreakReceived: (MinerCommandError, "remote sent a break"),
    asyncssh.SignalReceived: (MinerCommandError, "remote sent a signal"),
    asyncssh.TerminalSizeChanged: (MinerCommandError, "remote terminal size changed"),
    asyncssh.KeyImportError: (ConfigError, "known_hosts or key file unreadable"),
    asyncssh.KeyExportError: (ConfigError, "key export failed"),
    asyncssh.KeyEncryptionError: (ConfigError, "key encryption failed"),
    asyncssh.KeyGenerationError: (ConfigError, "key generation failed"),
    asyncssh.ConfigParseError: (ConfigError, "SSH config unreadable"),
}


def map_asyncssh_error(host: str, err: BaseException) -> AgentError:
    """Return our error for an asyncssh exception (``TypeError`` if the class is unmapped)."""
    return map_library_error(host, err, ASYNCSSH_ERRORS, library="asyncssh", code=_exit_code)


def _exit_code(err: BaseException) -> int | str | None:
    """Return the remote exit status (or SSH disconnect code) an asyncssh exception carries."""
    code: int | str | None = getattr(err, "exit_status", None) or getattr(err, "code", None)
    return code


_ASYNCSSH_BASES: tuple[type[BaseException], ...] = tuple(ASYNCSSH_ERRORS)


@contextlib.contextmanager
def mapped_ssh_errors(host: str, *, connecting: bool) -> Iterator[None]:
    """Re-raise asyncssh and OS errors as ``agent.errors`` types, ``from`` the original."""
    try:
        yield
    except _ASYNCSSH_BASES as err:
        raise map_asyncssh_error(host, err) from err
    except OSError as err:
        if isinstance(err, TimeoutError):
            raise
        raise (connect_error(host, err) if connecting else io_error(host, err)) from err


class SshTransport(Transport):
    """Run shell commands on one miner over a reused SSH connection with a pinned host key."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        credentials: Credentials,
        known_hosts: Path,
        timeouts: Timeouts | None = None,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        if known_hosts is None or not Path(known_hosts).is_file():
            raise ConfigError(
                f"{host}: SSH needs a known_hosts file to pin the host key (got {known_hosts})"
            )
        self.host = host
        self.port = port
        self.known_hosts = Path(known_hosts)
        self._credentials = credentials
        t = timeouts or Timeouts()
        self.connect_timeout_s = t.connect_s if t.connect_s is not None else CONNECT_TIMEOUT_S
        self.command_timeout_s = t.read_s if t.read_s is not None else COMMAND_TIMEOUT_S
        self.max_output_bytes = max_output_bytes
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()

    async def run(self, command: str, stdin: str | None = None) -> str:
        """Run ``command`` (optionally feeding ``stdin``) and return its stdout.

        A non-zero exit raises ``MinerCommandError`` carrying the exit status.
        """
        async with self._lock:
            conn = await self._connection()
            started = time.monotonic()
            try:
                with mapped_ssh_errors(self.host, connecting=False):
                    stdout, stderr, exit_status = await asyncio.wait_for(
                        self._run_bounded(conn, command, stdin), self.command_timeout_s
                    )
            except TimeoutError as err:
                self._drop()
                if isinstance(err, MinerTimeoutError):
                    raise
                raise MinerTimeoutError(
                    self.host,
                    f"SSH command did not finish within {self.command_timeout_s:g} s "
                    f"(after {time.monotonic() - started:.2f} s)",
                ) from err
            except BaseException:
                self._drop()  # a failed or cancelled command leaves the session unknown
                raise
        if exit_status != 0:
            raise MinerCommandError(
                self.host,
                exit_status,
                f"`{command.split()[0]}` failed: {_text(stderr).strip()}",
            )
        return _text(stdout)

    async def _run_bounded(
        self, conn: asyncssh.SSHClientConnection, command: str, stdin: str | None
    ) -> tuple[bytes, bytes, int | None]:
        """Run ``command``; return stdout (at most the cap), the head of stderr, exit status."""
        async with conn.create_process(command, encoding=None) as process:
            if stdin is not None:
                process.stdin.write(stdin.encode("utf-8"))
            process.stdin.write_eof()
            stderr_task = asyncio.create_task(
                _read_head(process.stderr, STDERR_KEEP_BYTES),
                name=f"hashpilot-ssh-stderr-{self.host}",
            )
            try:
                stdout = await self._read_capped(process.stdout)
                stderr = await stderr_task
            except BaseException:
                stderr_task.cancel()
                await asyncio.gather(stderr_task, return_exceptions=True)
                raise
            await process.wait()
            return stdout, stderr, process.exit_status

    async def _read_capped(self, stream: asyncssh.SSHReader[bytes]) -> bytes:
        """Read to EOF; past ``max_output_bytes`` stop reading and raise ``MinerResponseError``."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await stream.read(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > self.max_output_bytes:
                raise MinerResponseError(
                    self.host,
                    f"SSH output exceeds the {self.max_output_bytes} byte limit",
                    b"".join(chunks),
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def close(self) -> None:
        """Close the SSH connection."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(asyncssh.Error, OSError):
                await asyncio.wait_for(conn.wait_closed(), self.connect_timeout_s)

    async def _connection(self) -> asyncssh.SSHClientConnection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None
        try:
            with mapped_ssh_errors(self.host, connecting=True):
                self._conn = await asyncio.wait_for(
                    asyncssh.connect(
                        self.host,
                        self.port,
                        username=self._credentials.username,
                        password=self._credentials.password,
                        known_hosts=str(self.known_hosts),
                        client_keys=None,  # password auth only; never load the agent's own keys
                        agent_path=None,
                        config=None,  # ignore ~/.ssh/config of whoever runs the agent
                        connect_timeout=self.connect_timeout_s,
                    ),
                    self.connect_timeout_s,
                )
        except TimeoutError as err:
            if isinstance(err, MinerTimeoutError):
                raise
            raise MinerConnectTimeoutError(
                self.host, f"SSH connect timed out after {self.connect_timeout_s:g} s"
            ) from err
        except MinerConnectionError as err:
            if isinstance(err, MinerConnectError):
                raise
            # anything before the session exists means the request was never sent
            raise MinerConnectError(self.host, err.message) from err
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.abort()


async def _read_head(stream: asyncssh.SSHReader[bytes], keep: int) -> bytes:
    """Read to EOF, keeping only the first ``keep`` bytes (the rest is discarded)."""
    head = b""
    while chunk := await stream.read(READ_CHUNK_BYTES):
        if len(head) < keep:
            head += chunk[: keep - len(head)]
    return head


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
