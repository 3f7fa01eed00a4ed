"""Braiins OS configuration over SSH: read, write back and apply ``/etc/bosminer.toml``.

pyasic's procedure (protocols.md §2): ``cat /etc/bosminer.toml`` to read; write the file;
``/etc/init.d/bosminer restart`` to apply. The file is written with ``cat >`` fed on stdin
(no shell quoting of TOML, unlike pyasic's ``echo '...'``); the caller reads it back and
compares before restarting, so a write cut short is never loaded.
"""

from __future__ import annotations

from agent.protocols.base import BaseProtocol, RetryPolicy
from agent.transports.ssh import SshTransport

CONFIG_PATH = "/etc/bosminer.toml"
RESTART_COMMAND = "/etc/init.d/bosminer restart"


class BosminerSshProtocol(BaseProtocol):
    """Configuration commands for one Braiins OS miner."""

    def __init__(self, transport: SshTransport, retry: RetryPolicy | None = None) -> None:
        super().__init__(transport.host, retry)
        self.transport = transport

    async def read_config(self) -> str:
        """Return the text of bosminer.toml."""
        return await self.query(
            lambda: self.transport.run(f"cat {CONFIG_PATH}"), what="read bosminer.toml"
        )

    async def write_config(self, text: str) -> None:
        """Replace bosminer.toml with ``text`` (rewriting it twice is harmless)."""
        await self.query(
            lambda: self.transport.run(f"cat > {CONFIG_PATH}", stdin=text),
            what="write bosminer.toml",
        )

    async def restart(self) -> None:
        """Restart bosminer so it loads the configuration; never re-sent."""
        await self.query(
            lambda: self.transport.run(RESTART_COMMAND), what="restart bosminer", idempotent=False
        )
