"""Braiins OS / BOS+ on Antminer hardware: cgminer-compatible RPC reads, power target over SSH.

Reads use bosminer's RPC on 4028 (`summary`, `devs`, `devdetails`, `temps`, `fans`,
`tunerstatus`, `pools`, `version`; field names as pyasic's BOSMiner backend reads them).
The power target is applied by editing ``/etc/bosminer.toml`` over SSH and restarting
bosminer (protocols.md §2) — the path that works on every BOS generation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import structlog

from agent.credentials import Credentials
from agent.drivers import bosminer_toml
from agent.drivers.base import DriverConfig, MinerDriver
from agent.drivers.common import (
    MHS_TO_THS,
    Fields,
    cgminer_pools,
    check_settings,
    firmware_knobs,
    mhs_ths,
    power_limit_knob,
    primary_section,
    profile_for,
)
from agent.errors import ApplyVerificationError, ConfigError
from agent.protocols.base import RetryPolicy
from agent.protocols.bosminer_ssh import BosminerSshProtocol
from agent.protocols.cgminer import CgminerProtocol
from agent.protocols.quirks import integer, number
from agent.snapshot import (
    ApplyResult,
    BoardReading,
    Capabilities,
    MinerSnapshot,
    PoolReading,
    Settings,
    utcnow,
)
from agent.transports.base import Timeouts
from agent.transports.ssh import DEFAULT_PORT as SSH_PORT
from agent.transports.ssh import SshTransport
from agent.transports.tcp_json import DEFAULT_PORT as RPC_PORT
from agent.transports.tcp_json import TcpJsonTransport

log = structlog.get_logger(__name__)

READS = ("summary", "devs", "devdetails", "temps", "fans", "tunerstatus", "pools", "version")
#: S9-era BOS numbers hashchains 6-8 (pyasic BOSMiner backend); others start at 1.
S9_CHAIN_IDS = frozenset({6, 7, 8})


class BraiinsDriver(MinerDriver):
    """One miner running Braiins OS."""

    def __init__(
        self,
        config: DriverConfig,
        credentials: Credentials,
        known_hosts: Path | None = None,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.config = config
        self.rpc = CgminerProtocol(
            TcpJsonTransport(config.host, config.ports.get("rpc", RPC_PORT), timeouts=timeouts),
            retry,
        )
        self._credentials = credentials
        self._known_hosts = known_hosts
        self._timeouts = timeouts
        self._retry = retry
        self._ssh: BosminerSshProtocol | None = None
        self._model = config.model

    @property
    def capabilities(self) -> Capabilities:
        """A power target in watts; applying it restarts bosminer."""
        profile = profile_for(self._model, "antminer")
        fk = firmware_knobs(profile, "braiins")
        # this driver restarts bosminer to load the edited file, whatever the profile says
        knob = dataclasses.replace(power_limit_knob(profile, fk, restarts=True), restarts=True)
        return Capabilities(reports_power=True, knobs=(knob,))

    async def read(self) -> MinerSnapshot:
        """Poll bosminer's RPC."""
        r = await self.rpc.multicommand(*READS)
        if "summary" not in r.ok:
            raise r.failed["summary"]
        f = Fields(self.config.host)
        reply = r.ok["summary"]
        s = primary_section(self.config.host, "summary", reply, lambda: reply["SUMMARY"][0])
        details = r.optional("devdetails")
        model = f.get("model", lambda: details["DEVDETAILS"][0]["Model"]) if details else None
        if model:
            self._model = str(model)
        profile = profile_for(self._model, "antminer")
        tuner = r.optional("tunerstatus")
        t = f.get("tunerstatus", lambda: tuner["TUNERSTATUS"][0]) if tuner else None
        t = t or {}
        hashrate = f.get("hashrate", lambda: mhs_ths(s.get("MHS 1m"), s.get("MHS 5s")))
        boards = f.get("boards", lambda: _boards(r.ok, profile)) if "devs" in r.ok else None
        return MinerSnapshot(
            miner_id=self.config.id,
            host=self.config.host,
            ts=utcnow(),
            make="braiins",
            model=self._model,
            firmware=f.get("firmware", lambda: _firmware(r.optional("version"))),
            hashrate_ths=hashrate,
            hashrate_avg_ths=f.get("hashrate_avg", lambda: mhs_ths(s.get("MHS av"))),
            expected_hashrate_ths=f.get("expected", lambda: _expected(r.optional("devs")))
            or (profile.rated.hashrate_ths if profile else None),
            power_w=f.get("power", lambda: number(t.get("ApproximateMinerPowerConsumption"))),
            power_limit_w=f.get("power_limit", lambda: number(t.get("PowerLimit"))),
            power_mode=None,
            env_temp_c=None,
            fans_rpm=f.get("fans", lambda: _fans(r.optional("fans"))),
            uptime_s=f.get("uptime", lambda: integer(s.get("Elapsed"))),
            is_mining=None if hashrate is None else hashrate > 0,
            hw_errors=f.get("hw_errors", lambda: integer(s.get("Hardware Errors"))),
            accepted=f.get("accepted", lambda: integer(s.get("Accepted"))),
            rejected=f.get("rejected", lambda: integer(s.get("Rejected"))),
            error_codes=None,  # bosminer's RPC has no error-code list: never read
            boards=boards,
            pools=f.get("pools", lambda: _pools(r.optional("pools"))),
        )

    async def apply(self, settings: Settings) -> ApplyResult:
        """Write the power target into bosminer.toml (either schema) and restart bosminer."""
        check_settings(self.config.host, self.capabilities, settings)
        if settings.power_limit_w is None:
            return ApplyResult(requested=settings, accepted=True, detail="nothing to change")
        watts = int(settings.power_limit_w)
        ssh = self._ssh_protocol()
        text = await ssh.read_config()
        new_text, schema = bosminer_toml.set_power_target(text, watts, self.config.host)
        await ssh.write_config(new_text)
        if await ssh.read_config() != new_text:  # a cut-short write is never loaded
            raise ApplyVerificationError(
                f"{self.config.host}: bosminer.toml reads back differently; not restarting"
            )
        await ssh.restart()
        return ApplyResult(
            requested=settings,
            accepted=True,
            restarted=True,
            detail=f"power target {watts} W ({schema} schema)",
        )

    async def close(self) -> None:
        """Close the SSH session if one was opened."""
        if self._ssh is not None:
            await self._ssh.transport.close()
        await self.rpc.transport.close()

    def _ssh_protocol(self) -> BosminerSshProtocol:
        if self._ssh is None:
            if self._known_hosts is None:
                raise ConfigError(
                    f"{self.config.host}: Braiins control needs a known_hosts file to pin the "
                    "SSH host key"
                )
            transport = SshTransport(
                self.config.host,
                self.config.ports.get("ssh", SSH_PORT),
                credentials=self._credentials,
                known_hosts=self._known_hosts,
                timeouts=self._timeouts,
            )
            self._ssh = BosminerSshProtocol(transport, self._retry)
        return self._ssh


def _firmware(version: dict[str, Any] | None) -> str | None:
    if version is None:
        return None
    v = version["VERSION"][0]
    value = next((v[k] for k in ("BOSer", "BOSminer", "Miner") if v.get(k)), None)
    return str(value) if value else None


def _expected(devs: dict[str, Any] | None) -> float | None:
    if devs is None:
        return None
    nominal = [number(d.get("Nominal MHS")) for d in devs["DEVS"]]
    known = [n for n in nominal if n]
    return sum(known) * MHS_TO_THS if known else None


def _fans(fans: dict[str, Any] | None) -> tuple[int, ...] | None:
    if fans is None:
        return None
    return tuple(int(number(x.get("RPM")) or 0) for x in fans["FANS"])


def _offset(items: list[dict[str, Any]]) -> int:
    return 6 if items and int(items[0]["ID"]) in S9_CHAIN_IDS else 1


def _boards(ok: dict[str, dict[str, Any]], profile: Any) -> tuple[BoardReading, ...]:
    """Join devs (hashrate), temps (board/chip) and devdetails (chips, frequency) by chain id."""
    devs = ok["devs"]["DEVS"]
    temps = {int(t["ID"]): t for t in (ok.get("temps") or {}).get("TEMPS", [])}
    details = {int(d["ID"]): d for d in (ok.get("devdetails") or {}).get("DEVDETAILS", [])}
    offset = _offset(devs)
    boards = []
    for d in devs:
        chain = int(d["ID"])
        t, dd = temps.get(chain, {}), details.get(chain, {})
        rate = mhs_ths(d.get("MHS 1m"), d.get("MHS 5s"))
        boards.append(
            BoardReading(
                slot=chain - offset,
                hashrate_ths=rate,
                board_temp_c=number(t.get("Board")),
                chip_temp_c=number(t.get("Chip")),
                chips=integer(dd.get("Chips")),
                expected_chips=profile.hardware.chips_per_board if profile else None,
                freq_mhz=number(dd.get("Frequency")) or None,
            )
        )
    return tuple(boards)


def _pools(pools: dict[str, Any] | None) -> tuple[PoolReading, ...] | None:
    return None if pools is None else cgminer_pools(pools)
