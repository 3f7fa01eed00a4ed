"""A Braiins OS SSH endpoint on 127.0.0.1 (asyncssh): serves and stores /etc/bosminer.toml.

Understands the three commands the agent sends (`cat /etc/bosminer.toml`, `cat >
/etc/bosminer.toml` with stdin, `/etc/init.d/bosminer restart`); anything else exits 127.
``truncate_writes`` stores only half of what is written (a connection cut mid-write).
Writes a known_hosts file pinning its freshly generated host key.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import asyncssh

CONFIG = "/etc/bosminer.toml"

#: BOS ≤ 21.x generation (format 1.x, `psu_power_limit`), per protocols.md §2.
OLD_TOML = """\
[format]
version = '1.2+'
model = 'Antminer S9'
generator = 'cgminer-config-converter 0.1.0'
timestamp = 1622127000

[[group]]
name = 'Default'

[[group.pool]]
url = 'stratum+tcp://btc.example.pool:3333'
user = 'asic-rs.test'
password = 'x'

# tuned by the operator
[autotuning]
enabled = true
psu_power_limit = 1200

[fan_control]
min_fans = 1
"""

#: Newer generation (format 2.0, `mode = "power_target"`).
NEW_TOML = """\
[format]
version = '2.0'
generator = 'bosminer 22.08'
model = 'Antminer S19 XP'
timestamp = 1700000000

[[group]]
name = 'Default'

[[group.pool]]
url = 'stratum+tcp://example.pool.com:3333'
user = 'asic_rs.test'

[autotuning]
enabled = true
mode = 'power_target'
power_target = 3031

[performance_scaling]
power_step = 100
"""

_WRITE = re.compile(r"^cat > (\S+)$")


class FakeBosminerSsh:
    """Password-authenticated SSH server holding one bosminer.toml."""

    def __init__(
        self,
        toml_text: str,
        *,
        username: str = "root",
        password: str = "root",
        truncate_writes: bool = False,
    ) -> None:
        self.truncate_writes = truncate_writes
        self.files = {CONFIG: toml_text}
        self.username = username
        self.password = password
        self.commands: list[str] = []
        self.restarts = 0
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._server: asyncssh.SSHAcceptor | None = None
        self.port = 0

    @property
    def config_text(self) -> str:
        """Current contents of /etc/bosminer.toml."""
        return self.files[CONFIG]

    async def start(self) -> FakeBosminerSsh:
        """Listen on 127.0.0.1 with an ephemeral port."""
        server = self

        class _Auth(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == server.username and password == server.password

        self._server = await asyncssh.create_server(
            _Auth,
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            process_factory=self._process,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        """A known_hosts line pinning ``key`` (default: this server's host key)."""
        pub = (key or self.host_key).export_public_key("openssh").decode().strip()
        return f"[127.0.0.1]:{self.port} {pub}\n"

    def write_known_hosts(self, path: Path) -> Path:
        """Write a known_hosts file that pins this server and return its path."""
        path.write_text(self.known_hosts_line(), encoding="utf-8")
        return path

    async def close(self) -> None:
        """Stop the server."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeBosminerSsh:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _process(self, process: asyncssh.SSHServerProcess) -> None:
        command = process.command or ""
        self.commands.append(command)
        write = _WRITE.match(command)
        if command == f"cat {CONFIG}":
            process.stdout.write(self.files[CONFIG])
            process.exit(0)
        elif write:
            text = await process.stdin.read()
            self.files[write.group(1)] = text[: len(text) // 2] if self.truncate_writes else text
            process.exit(0)
        elif command == "/etc/init.d/bosminer restart":
            self.restarts += 1
            process.exit(0)
        elif command == "yes":  # a runaway command: output until the client goes away
            with contextlib.suppress(asyncssh.Error, ConnectionError):
                while True:
                    process.stdout.write("y\n" * 8192)
                    await process.stdout.drain()
        else:
            process.stderr.write(f"sh: {command.split()[0] if command else ''}: not found\n")
            process.exit(127)
