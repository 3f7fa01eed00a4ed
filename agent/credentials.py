"""Miner credentials: referenced by name in config, read from a secrets directory, never printed.

A reference ``NAME`` resolves to the file ``<secrets_dir>/NAME`` (systemd puts credentials in
``$CREDENTIALS_DIRECTORY``). The file is TOML: ``username = "..."`` and ``password = "..."``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import ConfigError

#: Factory defaults per driver, used only when a reference is "default" and no file exists
#: (protocols.md §1.4, §3.4: Antminer web root/root, Whatsminer admin, Braiins root/root).
FACTORY_DEFAULTS = {
    "antminer": ("root", "root"),
    "whatsminer": ("admin", "admin"),
    "whatsminer_v3": ("super", "super"),
    "braiins": ("root", "root"),
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and a password; the password never appears in a repr."""

    username: str
    password: str = field(repr=False)


def secrets_dir_from_env() -> Path | None:
    """Return the systemd credentials directory, if the service runs with one."""
    value = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(value) if value else None


def load_credentials(name: str, secrets_dir: Path | None, driver: str) -> Credentials:
    """Resolve a credential reference, or raise ``ConfigError`` naming the missing file."""
    if secrets_dir is not None:
        path = secrets_dir / name
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
                return Credentials(str(data["username"]), str(data["password"]))
            except (OSError, tomllib.TOMLDecodeError, KeyError) as err:
                raise ConfigError(f"credential {name!r}: unreadable or incomplete") from err
    if name == "default" and driver in FACTORY_DEFAULTS:
        user, password = FACTORY_DEFAULTS[driver]
        return Credentials(user, password)
    raise ConfigError(f"credential {name!r} not found in secrets directory {secrets_dir}")
