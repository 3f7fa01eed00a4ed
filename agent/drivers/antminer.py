"""Stock Bitmain Antminer (X19/X21): RPC 4028 for telemetry, web CGI for identity and control.

The 4028 API is read-only on stock firmware (protocols.md §1.3); the only power knob is the
work mode (normal / low / sleep) written with ``set_miner_conf`` (§1.5). Stock firmware does
not report power, so ``power_w`` is always ``None``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from agent.credentials import Credentials
from agent.drivers import antminer_parse as parse
from agent.drivers.base import DriverConfig, MinerDriver, PoolConfig
from agent.drivers.common import (
    IDENTITY_REFRESH_S,
    Fields,
    IdentityReply,
    cgminer_pools,
    check_settings,
    firmware_knobs,
    first,
    mining_knob,
    power_mode_knob,
    primary_section,
    profile_for,
)
from agent.errors import (
    ApplyVerificationError,
    MinerAuthError,
    MinerConnectionError,
    MinerError,
    MinerResponseError,
)
from agent.protocols.antminer_web import AntminerWebProtocol
from agent.protocols.base import RetryPolicy
from agent.protocols.cgminer import CgminerProtocol, Replies
from agent.protocols.quirks import integer, number
from agent.snapshot import ApplyResult, Capabilities, MinerSnapshot, Settings, utcnow
from agent.transports.base import Timeouts
from agent.transports.http import HttpTransport
from agent.transports.tcp_json import DEFAULT_PORT as RPC_PORT
from agent.transports.tcp_json import TcpJsonTransport

log = structlog.get_logger(__name__)

WEB_PORT = 80
#: Work modes when no hardware profile narrows them (protocols.md §1.5; low only on some).
DEFAULT_MODES = ("normal", "low", "sleep")
RPC_COMMANDS = ("version", "summary", "stats", "pools")
#: CGI pages read on every poll: error codes (and the summary fallback), and the work mode.
WEB_COMMANDS = ("summary", "get_miner_conf")
#: Identity page (model, firmware build): fallback for RPC `version`, cached (``IdentityReply``).
WEB_IDENTITY = "get_system_info"
#: Boards and fans from the web UI: read only when RPC `stats` gave none (its fallback).
WEB_STATS = "stats"
#: Errors that mean the web UI as a whole is unusable (down, or refusing our credentials):
#: the remaining pages of this poll are not tried.
WEB_DOWN_ERRORS = (MinerConnectionError, MinerAuthError)


class AntminerDriver(MinerDriver):
    """One stock Antminer."""

    def __init__(
        self,
        config: DriverConfig,
        credentials: Credentials,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        identity_refresh_s: float = IDENTITY_REFRESH_S,
    ) -> None:
        self.config = config
        host = config.host
        self._sysinfo = IdentityReply(identity_refresh_s)
        self.rpc = CgminerProtocol(
            TcpJsonTransport(host, config.ports.get("rpc", RPC_PORT), timeouts=timeouts), retry
        )
        self.web = AntminerWebProtocol(
            HttpTransport(
                host, config.ports.get("web", WEB_PORT), credentials=credentials, timeouts=timeouts
            ),
            retry,
        )
        self._model = config.model

    @property
    def capabilities(self) -> Capabilities:
        """Work mode (and mining on/off via sleep) with the modes the profile allows."""
        fk = firmware_knobs(profile_for(self._model, "antminer"), "antminer")
        # set_miner_conf may restart bmminer (protocols.md §1.4), so a mode change is one.
        mode = power_mode_knob(fk, DEFAULT_MODES)
        knobs = [mode]
        if "sleep" in mode.choices:  # mining off is the sleep mode
            knobs.append(mining_knob(fk))
        return Capabilities(reports_power=False, knobs=tuple(knobs))

    async def read(self) -> MinerSnapshot:
        """Poll RPC and web concurrently; any single field that fails becomes ``None``.

        Each poll reads the RPC multi-command and the CGI pages of ``WEB_COMMANDS``; the
        identity page only when due, and the web `stats` only if RPC gave no boards or fans.
        """
        pages = (*WEB_COMMANDS, WEB_IDENTITY) if self._sysinfo.due() else WEB_COMMANDS
        rpc, web = await asyncio.gather(self._rpc_reads(), self._web_reads(*pages))
        summary = rpc.ok.get("summary")
        web_summary = web.ok.get("summary")
        if summary is None and web_summary is None:
            raise rpc.failed["summary"]
        self._sysinfo.store(web.ok.get(WEB_IDENTITY))
        snap = self._snapshot(rpc, web)
        if not (snap.boards and snap.fans_rpm):  # RPC stats missing or unusable
            web.merge(await self._web_reads(WEB_STATS))
            snap = self._snapshot(rpc, web)
        self._sysinfo.saw_uptime(snap.uptime_s)
        return snap

    async def apply(self, settings: Settings) -> ApplyResult:
        """Set the work mode by read-modify-write of the web config, then verify by re-reading."""
        check_settings(self.config.host, self.capabilities, settings)
        mode = settings.power_mode
        if mode is None and settings.mining is not None:
            mode = "normal" if settings.mining else "sleep"
        if mode is None:
            return ApplyResult(requested=settings, accepted=True, detail="nothing to change")
        conf = await self.web.get("get_miner_conf")
        if parse.work_mode(conf) == mode:
            return ApplyResult(requested=settings, accepted=True, detail=f"already {mode}")
        await self._write_conf(parse.set_conf_body(conf, mode=mode))
        after = parse.work_mode(await self.web.get("get_miner_conf"))
        if after != mode:
            raise ApplyVerificationError(
                f"{self.config.host}: asked for work mode {mode!r}, config reads {after!r}"
            )
        return ApplyResult(
            requested=settings, accepted=True, restarted=True, detail=f"work mode {mode}"
        )

    async def set_pools(self, pools: Sequence[PoolConfig]) -> ApplyResult:
        """Replace the pool list (stock firmware holds three) keeping every other setting."""
        conf = await self.web.get("get_miner_conf")
        wanted = [{"url": p.url, "user": p.user, "pass": p.password} for p in pools]
        await self._write_conf(parse.set_conf_body(conf, pools=wanted))
        after = await self.web.get("get_miner_conf")
        got = [(p.get("url"), p.get("user")) for p in after.get("pools", [])][: len(wanted)]
        if got != [(p.url, p.user) for p in pools]:
            raise ApplyVerificationError(f"{self.config.host}: pools read back as {got}")
        return ApplyResult(
            requested=Settings(),
            accepted=True,
            restarted=True,
            extra={"pools": [p.url for p in pools]},
        )

    async def close(self) -> None:
        """Close the pooled web client."""
        await self.web.transport.close()
        await self.rpc.transport.close()

    async def _write_conf(self, body: dict[str, Any]) -> None:
        try:
            await self.web.post("set_miner_conf", body)
        except (MinerConnectionError, MinerResponseError) as err:
            # Some firmware restarts bmminer before answering and drops or garbles the reply
            # (protocols.md §1.4): the read-back decides whether it took effect.
            log.debug("set_miner_conf_no_reply", host=self.config.host, error=repr(err))

    async def _rpc_reads(self) -> Replies:
        try:
            return await self.rpc.multicommand(*RPC_COMMANDS)
        except MinerError as err:  # the web UI may still answer; read() decides
            return Replies(failed=dict.fromkeys(RPC_COMMANDS, err))

    async def _web_reads(self, *names: str) -> Replies:
        """Read CGI pages one after another (one keep-alive connection); each may fail alone.

        Once the web UI proves down or refuses the credentials, the rest are not tried.
        """
        replies = Replies()
        down: MinerError | None = None
        for name in names:
            if down is not None:
                replies.failed[name] = down
                continue
            try:
                replies.ok[name] = await self.web.get(name)
            except MinerError as err:
                log.debug("web_unavailable", host=self.config.host, cgi=name, error=repr(err))
                replies.failed[name] = err
                if isinstance(err, WEB_DOWN_ERRORS):
                    down = err
        return replies

    def _snapshot(self, rpc: Replies, web: Replies) -> MinerSnapshot:
        f = Fields(self.config.host)
        version = rpc.ok.get("version")
        stats, pools = rpc.ok.get("stats"), rpc.ok.get("pools")
        sysinfo, conf = self._sysinfo.value, web.ok.get("get_miner_conf")
        w_summary, w_stats = web.ok.get("summary"), web.ok.get(WEB_STATS)

        rpc_model = f.get("model", lambda: parse.section(version, "VERSION")["Type"])
        model = first(rpc_model, (sysinfo or {}).get("minertype"))
        if model:
            self._model = str(model).split(" (")[0].strip()
        profile = profile_for(self._model, "antminer")
        expected_chips = profile.hardware.chips_per_board if profile else None
        # The summary is the primary reading: RPC or web must give one, or the poll failed.
        rpc_s, web_s = self._summary(rpc), self._summary(web)
        if isinstance(rpc_s, MinerError) and isinstance(web_s, MinerError):
            raise rpc_s
        # one source unread: its fields read None and the other source's are used
        s = rpc_s if isinstance(rpc_s, dict) else {}
        ws = web_s if isinstance(web_s, dict) else {}
        data = f.get("stats", lambda: parse.stats_data(stats)) if stats is not None else None

        hashrate = f.get(
            "hashrate",
            lambda: first(
                parse.summary_rate_ths(s, "5s"),
                _web_rate(ws, "rate_5s"),
            ),
        )
        boards = (
            f.get("boards", lambda: parse.rpc_boards(data, expected_chips, f)) if data else None
        )
        if not boards and w_stats is not None:
            boards = f.get("boards.web", lambda: parse.web_boards(w_stats, expected_chips))
        fans = f.get("fans", lambda: parse.rpc_fans(data)) if data else None
        if not fans and w_stats is not None:
            fans = f.get("fans.web", lambda: parse.web_fans(w_stats))
        mode = f.get("power_mode", lambda: parse.work_mode(conf)) if conf is not None else None
        errors = (
            f.get("error_codes", lambda: parse.web_error_codes(w_summary)) if w_summary else None
        )
        mining: bool | None = None
        if mode == "sleep":
            mining = False
        elif hashrate is not None:
            mining = hashrate > 0
        return MinerSnapshot(
            miner_id=self.config.id,
            host=self.config.host,
            ts=utcnow(),
            make="antminer",
            model=self._model,
            firmware=f.get("firmware", lambda: _firmware(version, sysinfo)),
            hashrate_ths=hashrate,
            hashrate_avg_ths=f.get(
                "hashrate_avg",
                lambda: first(parse.summary_rate_ths(s, "av"), _web_rate(ws, "rate_avg")),
            ),
            expected_hashrate_ths=f.get("expected_hashrate", lambda: _expected(data, ws, profile)),
            power_w=None,
            power_limit_w=None,
            power_mode=mode,
            env_temp_c=None,
            fans_rpm=fans,
            uptime_s=f.get("uptime", lambda: integer(first(s.get("Elapsed"), ws.get("elapsed")))),
            is_mining=mining,
            hw_errors=f.get(
                "hw_errors",
                lambda: integer(first(s.get("Hardware Errors"), ws.get("hw_all"))),
            ),
            accepted=f.get("accepted", lambda: integer(s.get("Accepted"))),
            rejected=f.get("rejected", lambda: integer(s.get("Rejected"))),
            error_codes=errors,
            boards=boards,
            pools=f.get("pools", lambda: cgminer_pools(pools)) if pools is not None else None,
        )

    def _summary(self, replies: Replies) -> dict[str, Any] | MinerError:
        """Return one source's `SUMMARY` section, or the error that kept it from being read."""
        reply = replies.ok.get("summary")
        if reply is None:
            return replies.failed["summary"]
        try:
            return primary_section(
                self.config.host, "summary", reply, lambda: parse.section(reply, "SUMMARY")
            )
        except MinerResponseError as err:
            return err


def _web_rate(ws: dict[str, Any], key: str) -> float | None:
    value = number(ws.get(key))
    return None if value is None else value * parse.unit_factor(ws.get("rate_unit"))


def _firmware(version: dict[str, Any] | None, sysinfo: dict[str, Any] | None) -> str | None:
    """Bmminer build time (pyasic's firmware version for stock), else the web build string."""
    compile_time = None
    if version is not None:
        compile_time = parse.section(version, "VERSION").get("CompileTime")
    value = first(compile_time, (sysinfo or {}).get("system_filesystem_version"))
    return " ".join(str(value).split()) if value else None


def _expected(data: dict[str, Any] | None, ws: dict[str, Any], profile: Any) -> float | None:
    if data is not None:
        ideal = number(data.get("total_rateideal"))
        if ideal:
            return ideal * parse.unit_factor(data.get("rate_unit"))
    web_ideal = _web_rate(ws, "rate_ideal")
    if web_ideal:
        return web_ideal
    return float(profile.rated.hashrate_ths) if profile else None
