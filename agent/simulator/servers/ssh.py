"""An asyncssh server for simulated Braiins OS units: exactly the shell a config client needs.

Password auth (root/root by default), a host key pinned in the farm's known_hosts, and a
tiny command interpreter: ``cat /etc/bosminer.toml``; ``cat > /etc/bosminer.toml`` (stdin)
or ``echo '<toml>' > /etc/bosminer.toml`` (pyasic's form, protocols.md §2);
``/etc/init.d/bosminer stop|start|restart``; ``reboot``. Commands join with ``;``/``&&``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import asyncssh
import structlog

from agent.simulator.servers import braiins
from agent.simulator.servers.device import SimDevice
from agent.simulator.servers.listeners import HandlerErrors

log = structlog.get_logger(__name__)

#: Exit status of a command the simulated shell does not know (POSIX sh).
EXIT_NOT_FOUND = 127
#: Exit status when the simulator itself failed (sysexits.h EX_SOFTWARE), so a client sees
#: an internal error rather than a dropped connection.
EXIT_SIMULATOR_BUG = 70
INIT_SCRIPT = "/etc/init.d/bosminer"


class HostKeys:
    """The farm's SSH host keys (Ed25519 and RSA; pyasic only accepts ssh-rsa, §2)."""

    def __init__(self) -> None:
        self.keys = [
            asyncssh.generate_private_key("ssh-ed25519"),
            asyncssh.generate_private_key("ssh-rsa", key_size=2048),
        ]

    def write(self, directory: Path) -> list[Path]:
        """Write the private keys (0600) for inspection; returns their paths."""
        paths = []
        for key in self.keys:
            path = directory / f"ssh_host_{key.get_algorithm().replace('ssh-', '')}_key"
            path.write_bytes(key.export_private_key())
            path.chmod(0o600)
            paths.append(path)
        return paths

    def known_hosts_lines(self, host: str, port: int) -> list[str]:
        """OpenSSH known_hosts lines pinning these keys for one endpoint."""
        name = host if port == 22 else f"[{host}]:{port}"
        lines = []
        for key in self.keys:
            public = key.export_public_key("openssh").decode("ascii").strip()
            lines.append(f"{name} {public}")
        return lines


class _Server(asyncssh.SSHServer):
    """Password check against the unit's current credentials."""

    def __init__(self, device: SimDevice) -> None:
        self._device = device

    def begin_auth(self, username: str) -> bool:
        """Require authentication for every user."""
        return True

    def password_auth_supported(self) -> bool:
        """Only passwords, like a stock Braiins OS install."""
        return True

    def validate_password(self, username: str, password: str) -> bool:
        """Accept only the unit's login."""
        return username == self._device.username and password == self._device.password


async def create_server(
    device: SimDevice, host: str, port: int, keys: HostKeys, errors: HandlerErrors
) -> Any:
    """Start one unit's SSH listener; simulator bugs in a session are recorded in ``errors``."""

    async def process(proc: asyncssh.SSHServerProcess[str]) -> None:
        try:
            await run_process(device, proc)
        except Exception as err:  # a simulator bug must not take the farm down
            errors.record(device.unit_id, err)
            proc.exit(EXIT_SIMULATOR_BUG)

    return await asyncssh.create_server(
        lambda: _Server(device),
        host,
        port,
        server_host_keys=keys.keys,
        process_factory=process,
        encoding="utf-8",
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
    )


async def run_process(device: SimDevice, proc: asyncssh.SSHServerProcess[str]) -> None:
    """Run one exec request (interactive shells are not offered)."""
    command = proc.command
    if not command:
        proc.stderr.write("interactive shells are not available on this unit\n")
        proc.exit(1)
        return
    try:
        status = await run_command(device, command, proc)
    except (asyncssh.Error, OSError) as err:
        log.debug("ssh_process_failed", unit=device.unit_id, error=str(err))
        status = 1
    proc.exit(status)


def split_commands(command: str) -> list[list[str]]:
    """Tokenize a command line into simple commands separated by ``;`` or ``&&``."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|>")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "&&"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


async def run_command(device: SimDevice, command: str, proc: Any) -> int:
    """Execute a command line; returns the exit status of the last simple command."""
    try:
        simple = split_commands(command)
    except ValueError as err:
        proc.stderr.write(f"sh: syntax error: {err}\n")
        return 2
    status = 0
    for argv in simple:
        status = await _run_simple(device, argv, proc)
        if status != 0 and "&&" in command:
            return status
    return status


async def _run_simple(device: SimDevice, argv: list[str], proc: Any) -> int:
    bos = braiins.state(device)
    if argv == ["cat", braiins.CONFIG_PATH]:
        proc.stdout.write(bos["text"])
        return 0
    if argv == ["cat", ">", braiins.CONFIG_PATH]:
        bos["text"] = await proc.stdin.read()
        return 0
    if len(argv) >= 3 and argv[0] == "echo" and argv[-2:] == [">", braiins.CONFIG_PATH]:
        bos["text"] = " ".join(argv[1:-2]) + "\n"
        return 0
    if len(argv) == 2 and argv[0] == INIT_SCRIPT:
        action = argv[1]
        if action == "stop":
            braiins.stop(device)
            return 0
        if action in ("start", "restart"):
            if action == "restart":
                braiins.stop(device)
            failure = braiins.start(device)
            if failure is not None:
                proc.stderr.write(f"bosminer: configuration error: {failure}\n")
                return 1
            return 0
        proc.stderr.write(f"Usage: {INIT_SCRIPT} {{start|stop|restart}}\n")
        return 1
    if argv in (["reboot"], ["/sbin/reboot"]):
        device.unit.reboot()
        device.changed()
        return 0
    proc.stderr.write(f"sh: {argv[0]}: not found\n")
    return EXIT_NOT_FOUND
