"""``AgentSettings``: one TOML file, ``HASHPILOT_*`` environment, secrets from a directory.

Precedence, highest first: explicit keyword arguments, environment (``HASHPILOT_POLL_INTERVAL_S``,
nested with ``__`` as in ``HASHPILOT_RETENTION__RAW_DAYS``), files in the secrets directory
(systemd's ``$CREDENTIALS_DIRECTORY``), the TOML file, the defaults below. Miners come from
an explicit ``[[miners]]`` list, from CIDR ranges to ``scan`` (identified at start-up), and
from an ``inventory`` file in the simulator's format. Credentials are referenced by name and
resolved in the secrets directory; no secret is ever stored here or printed. Every problem is
a ``ConfigError`` that names the setting and says what is wrong.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from agent.credentials import Credentials, load_credentials, secrets_dir_from_env
from agent.drivers.base import DriverConfig
from agent.errors import ConfigError
from agent.features.extract import DEFAULT_WINDOWS

#: Polls every 30 s: stock firmware refreshes its averages every 5-30 s, and 2,000 miners a
#: cycle stay well inside the interval (benchmarks/poll.py).
POLL_INTERVAL_S = 30.0
#: A healthy miner answers a full read in under 2 s (simulator and captured replies); 10 s
#: covers a slow web CGI plus one protocol retry and leaves 2/3 of the cycle free.
POLL_TIMEOUT_S = 10.0
#: Requests in flight across the fleet. A hung miner holds a slot for a whole poll timeout, so
#: the bound must exceed the hung miners we expect (10 % of a 2,000-miner farm fits in one
#: wave: the cycle ends within one timeout). A full wave costs ~1-2 s of CPU (~5 ms a read,
#: benchmarks/poll.py), far inside the 10 s timeout, and ~2 sockets a poll stay well below
#: the default 1,024 open files.
MAX_IN_FLIGHT = 256
#: An unreachable miner is retried at least every 10 minutes; an auth failure waits this long
#: straight away because only an operator can fix it.
BACKOFF_CAP_S = 600.0
#: Each poll starts at a random offset within this many seconds of the cycle start so 2,000
#: connects do not hit the farm switches in one burst (HA issue #82231, "thundering herd").
JITTER_S = 2.0
#: Default disk cap: 2 GB holds the 7 raw days of ~300 miners; bigger fleets prune raw sooner.
DISK_CAP_MB = 2048.0
#: Largest CIDR range one ``scan`` entry may name (a /20): bigger is a typo, not a farm.
SCAN_MAX_ADDRESSES = 4096
DEFAULT_STATE_DIR = Path("/var/lib/hashpilot")
#: Top-level tables other subsystems own in the same file (``[optimize]`` is read by
#: ``agent.commands.optimize``). Kept verbatim in ``sections``; their owners validate them.
#: Any other unknown key is an error, so typos do not pass silently.
FOREIGN_TABLES = frozenset({"optimize", "api", "uplink", "actions", "inference", "market"})

#: Settings whose rejected value ``explain`` may echo back: numbers, enums and paths only.
#: Anything else (unknown keys, which may be a mistyped password; SecretStr fields;
#: credential references; tables) is reported without its value, so a check-config run or a
#: journald line never shows a secret someone put in the wrong place.
ECHO_SAFE_SETTINGS = frozenset(
    {
        "state_dir",
        "poll_interval_s",
        "poll_timeout_s",
        "max_in_flight",
        "backoff_cap_s",
        "jitter_s",
        "raw_days",
        "agg_days",
        "disk_cap_mb",
        "inventory",
        "known_hosts",
        "driver",
        "api",
    }
)

_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PortRole = Literal["rpc", "web", "v3", "ssh"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MinerEntry(_Strict):
    """One miner: where it is and, if known, how to talk to it (else ``identify`` finds out)."""

    #: Stable id; defaults to the host (plus a non-default RPC port).
    id: str | None = None
    host: str
    #: Driver family; omit to identify the miner by probing at start-up.
    driver: Literal["antminer", "whatsminer", "braiins"] | None = None
    #: Whatsminer API generation.
    api: Literal["v2", "v3"] | None = None
    model: str | None = None
    firmware: str | None = None
    #: Name of a credential file in the secrets directory (never the secret itself).
    credentials: str = "default"
    #: Port overrides by role (simulators, port-forwarded miners).
    ports: dict[PortRole, int] = Field(default_factory=dict)
    #: SSH known_hosts pinning this miner's host key (Braiins).
    known_hosts: Path | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or "/" in value:
            raise ValueError("must be an IP address or host name")
        return value

    @field_validator("credentials")
    @classmethod
    def _credential_name(cls, value: str) -> str:
        if not _CREDENTIAL_NAME.match(value):
            raise ValueError("must be a plain name like 'antminer' (letters, digits, . _ -)")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: dict[str, int]) -> dict[str, int]:
        for role, port in value.items():
            if not 0 < port < 65536:
                raise ValueError(f"port {role}={port} is outside 1-65535")
        return value

    @property
    def port_map(self) -> dict[str, int]:
        """Port overrides as the plain dict ``DriverConfig`` takes."""
        return {str(role): port for role, port in self.ports.items()}

    @property
    def miner_id(self) -> str:
        """The explicit id, else what ``DriverConfig.id`` derives from host and ports."""
        return self.id or DriverConfig(host=self.host, driver="", ports=self.port_map).id


class Inventory(_Strict):
    """The simulator's (or an operator's) inventory file: miners plus where their secrets are."""

    secrets_dir: Path | None = None
    known_hosts: Path | None = None
    miners: list[MinerEntry] = Field(default_factory=list)


class Retention(_Strict):
    """How long the store keeps data."""

    #: Raw snapshots, boards and gaps.
    raw_days: float = Field(default=7.0, gt=0)
    #: 5-minute aggregates.
    agg_days: float = Field(default=90.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Retention:
        if self.agg_days < self.raw_days:
            raise ValueError("agg_days must be at least raw_days (aggregates outlive raw rows)")
        return self


class AgentSettings(BaseSettings):
    """Everything the daemon needs to run; see the module docstring for the sources."""

    model_config = SettingsConfigDict(
        env_prefix="HASHPILOT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    #: Where the store (``hashpilot.db``) lives; systemd's StateDirectory.
    state_dir: Path = DEFAULT_STATE_DIR
    poll_interval_s: float = Field(default=POLL_INTERVAL_S, ge=1.0)
    poll_timeout_s: float = Field(default=POLL_TIMEOUT_S, gt=0)
    max_in_flight: int = Field(default=MAX_IN_FLIGHT, ge=1, le=10_000)
    backoff_cap_s: float = Field(default=BACKOFF_CAP_S, gt=0)
    jitter_s: float = Field(default=JITTER_S, ge=0)
    retention: Retention = Field(default_factory=Retention)
    #: The store's database plus WAL never exceed this.
    disk_cap_mb: float = Field(default=DISK_CAP_MB, ge=4.0)
    feature_windows: list[str] = Field(default_factory=lambda: list(DEFAULT_WINDOWS))
    miners: list[MinerEntry] = Field(default_factory=list)
    #: CIDR ranges identified at start-up (``198.51.100.0/24``).
    scan: list[str] = Field(default_factory=list)
    #: An inventory file in the simulator's format (relative to the config file).
    inventory: Path | None = None
    #: Directory of credential files, one TOML file per reference name.
    secrets_dir: Path | None = Field(default_factory=secrets_dir_from_env)
    #: SSH known_hosts for miners that do not name their own.
    known_hosts: Path | None = None
    #: Bearer token for the central uplink (file ``hashpilot_uplink_token`` in the secrets dir).
    uplink_token: SecretStr | None = None
    #: Tables owned by other subsystems (see ``FOREIGN_TABLES``), unvalidated here.
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _foreign_tables(cls, data: Any) -> Any:
        if isinstance(data, dict):
            owned = {k: data[k] for k in FOREIGN_TABLES & data.keys()}
            if owned:
                data = {k: v for k, v in data.items() if k not in owned}
                data["sections"] = {**data.get("sections", {}), **owned}
        return data

    @field_validator("feature_windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        from agent.features.extract import FeatureSchema

        FeatureSchema(value)  # ValueError explains a bad duration, a duplicate or a tiny window
        return value

    @field_validator("scan")
    @classmethod
    def _scan(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                net = ipaddress.ip_network(text, strict=True)
            except ValueError as err:
                raise ValueError(
                    f"{text!r} is not a CIDR range like 198.51.100.0/24 ({err})"
                ) from err
            if net.num_addresses > SCAN_MAX_ADDRESSES:
                raise ValueError(
                    f"{text} spans {net.num_addresses} addresses; at most {SCAN_MAX_ADDRESSES} "
                    "per range (split it if you really mean it)"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AgentSettings:
        if self.poll_timeout_s >= self.poll_interval_s:
            raise ValueError(
                f"poll_timeout_s ({self.poll_timeout_s}) must be below poll_interval_s "
                f"({self.poll_interval_s}): a hung miner would overlap the next cycle"
            )
        if self.jitter_s + self.poll_timeout_s > self.poll_interval_s:
            raise ValueError(
                f"jitter_s + poll_timeout_s ({self.jitter_s + self.poll_timeout_s}) exceeds "
                f"poll_interval_s ({self.poll_interval_s})"
            )
        if self.backoff_cap_s < self.poll_interval_s:
            raise ValueError("backoff_cap_s must be at least poll_interval_s")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments > environment > secrets directory > TOML file > defaults."""
        return (
            init_settings,
            env_settings,
            file_secret_settings,
            TomlConfigSettingsSource(settings_cls),
        )

    # -- derived ----------------------------------------------------------------------------

    @property
    def store_path(self) -> Path:
        """The SQLite file."""
        return self.state_dir / "hashpilot.db"

    @property
    def disk_cap_bytes(self) -> int:
        """The disk cap in bytes."""
        return int(self.disk_cap_mb * 1_000_000)

    def scan_hosts(self) -> Iterator[str]:
        """Every address of every scan range (network and broadcast excluded)."""
        for text in self.scan:
            yield from (str(ip) for ip in ipaddress.ip_network(text).hosts())

    def load_inventory(self) -> Inventory | None:
        """Read and validate the inventory file, or ``None`` if none is configured."""
        if self.inventory is None:
            return None
        try:
            data = tomllib.loads(self.inventory.read_text(encoding="utf-8"))
            return Inventory.model_validate(data)
        except OSError as err:
            raise ConfigError(f"inventory {self.inventory}: cannot read: {err}") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"inventory {self.inventory}: not valid TOML: {err}") from err
        except ValidationError as err:
            raise ConfigError(explain(err, f"inventory {self.inventory}")) from err

    def resolve_miners(self) -> list[ResolvedMiner]:
        """Explicit miners then inventory miners, with secrets and known_hosts resolved."""
        out = [
            ResolvedMiner(m, self.secrets_dir, m.known_hosts or self.known_hosts)
            for m in self.miners
        ]
        inv = self.load_inventory()
        if inv is not None:
            base = self.inventory.parent if self.inventory else Path()
            secrets = _under(base, inv.secrets_dir) or self.secrets_dir
            hosts = _under(base, inv.known_hosts) or self.known_hosts
            for m in inv.miners:
                out.append(ResolvedMiner(m, secrets, _under(base, m.known_hosts) or hosts))
        seen: dict[str, str] = {}
        for r in out:
            if r.miner_id in seen:
                raise ConfigError(
                    f"miner id {r.miner_id!r} appears twice ({seen[r.miner_id]} and {r.entry.host})"
                )
            seen[r.miner_id] = r.entry.host
        return out


@dataclass(frozen=True, slots=True)
class ResolvedMiner:
    """A miner entry with the secrets directory and known_hosts that apply to it."""

    entry: MinerEntry
    secrets_dir: Path | None
    known_hosts: Path | None

    @property
    def miner_id(self) -> str:
        """Stable id."""
        return self.entry.miner_id

    def driver_config(self) -> DriverConfig | None:
        """Return the connection description, or ``None`` if the driver must be identified."""
        e = self.entry
        if e.driver is None:
            return None
        return DriverConfig(
            host=e.host,
            driver=e.driver,
            ports=e.port_map,
            api=e.api,
            model=e.model,
            firmware=e.firmware,
            credentials=e.credentials,
            miner_id=self.miner_id,
        )

    def credentials(self, driver: str, api: str | None = None) -> Credentials:
        """Load this miner's credentials (``ConfigError`` if the reference does not resolve)."""
        kind = "whatsminer_v3" if driver == "whatsminer" and api == "v3" else driver
        return load_credentials(self.entry.credentials, self.secrets_dir, kind)


def _under(base: Path, path: Path | None) -> Path | None:
    if path is None:
        return None
    return path if path.is_absolute() else base / path


def explain(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: setting.path: what is wrong (got value)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown setting (typo?)"
        got = e.get("input")
        names = [p for p in e["loc"] if isinstance(p, str)]
        safe = (
            e["type"] != "extra_forbidden"
            and bool(names)
            and names[-1] in ECHO_SAFE_SETTINGS
            and not isinstance(got, dict | list | SecretStr)
            and got is not None
        )
        shown = f" (got {got!r})" if safe else ""
        lines.append(f"{source}: {loc}: {msg}{shown}")
    return "\n".join(lines)


def load_settings(path: Path | None = None, **overrides: Any) -> AgentSettings:
    """Load settings from ``path`` (TOML), the environment and the secrets directory.

    Relative paths in the file are taken relative to the file's directory. Raises
    ``ConfigError`` explaining every problem at once.
    """
    source = str(path) if path else "settings"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from err
    secrets = secrets_dir_from_env()
    cls = type(
        "AgentSettingsFromFile",
        (AgentSettings,),
        {"model_config": {**AgentSettings.model_config, "toml_file": path}},
    )
    try:
        settings = cls(_secrets_dir=secrets if secrets and secrets.is_dir() else None, **overrides)
    except ValidationError as err:
        raise ConfigError(explain(err, source)) from err
    if path is None:
        return settings
    base = path.parent
    fixed = {
        name: _under(base, getattr(settings, name))
        for name in ("state_dir", "inventory", "secrets_dir", "known_hosts")
        if getattr(settings, name) is not None
    }
    return settings.model_copy(update=fixed)


def describe_env() -> list[str]:
    """Names of the ``HASHPILOT_*`` variables set in this environment (values not shown)."""
    return sorted(k for k in os.environ if k.startswith("HASHPILOT_"))
