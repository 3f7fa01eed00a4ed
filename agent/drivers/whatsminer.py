"""MicroBT Whatsminer: API V2 (TCP 4028) or V3 (TCP 4433), chosen per protocols.md §3.5.

The API generation comes from the cached ``DriverConfig.api``; when unknown, the driver asks
``get_version`` on 4028 and reads the firmware date (after 2024-11 → V3), falling back to a
V3 ``get.device.info`` when 4028 gives no firmware date.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import structlog

from agent.credentials import Credentials
from agent.drivers import whatsminer_parse as parse
from agent.drivers.base import DriverConfig, MinerDriver, PoolConfig
from agent.drivers.common import (
    FIELD_ERRORS,
    IDENTITY_REFRESH_S,
    POWER_PERCENT_MAX,
    POWER_PERCENT_MIN,
    POWER_PERCENT_STEP,
    Fields,
    IdentityReply,
    cgminer_pools,
    check_settings,
    firmware_knobs,
    first,
    mhs_ths,
    mining_knob,
    positive,
    power_limit_knob,
    power_mode_knob,
    primary_section,
    profile_for,
)
from agent.errors import (
    MinerError,
    MinerTimeoutError,
    PartialApplyError,
    UnsupportedMinerError,
)
from agent.protocols.base import RetryPolicy
from agent.protocols.btminer_v2 import BtminerV2Protocol
from agent.protocols.btminer_v3 import DEFAULT_ACCOUNT, BtminerV3Protocol
from agent.protocols.cgminer import Replies
from agent.protocols.quirks import integer, number
from agent.snapshot import ApplyResult, Capabilities, Knob, MinerSnapshot, Settings, utcnow
from agent.transports.base import Timeouts
from agent.transports.tcp_framed import DEFAULT_PORT as V3_PORT
from agent.transports.tcp_framed import TcpFramedTransport
from agent.transports.tcp_json import DEFAULT_PORT as RPC_PORT
from agent.transports.tcp_json import TcpJsonTransport

log = structlog.get_logger(__name__)

#: Modes when no hardware profile narrows them (protocols.md §3.3, §3.5).
DEFAULT_MODES = ("low", "normal", "high", "sleep")
#: V2 reads of every poll (btminer refuses `get_*` and `status` inside a `+` multi-command,
#: so those two go on connections of their own).
V2_READS = ("summary", "devs", "pools", "devdetails", "status", "get_error_code")
#: Identity (firmware date, API version): cached, see ``IdentityReply``.
V2_IDENTITY = "get_version"
#: PSU reading: read only when `summary` carries no power (it is that field's fallback).
V2_PSU = "get_psu"
#: V2 mode commands (protocols.md §3.3).
V2_MODE_COMMANDS = {"low": "set_low_power", "normal": "set_normal_power", "high": "set_high_power"}
#: API version from which `set_power_pct_v2` exists (protocols.md §3.3).
V2_PCT_V2_FROM = (2, 0, 5)
#: V3 `power_percent` mode: "normal" ramps over minutes, "fast" in ~1 s (§3.5); the gentle
#: ramp spares the PSU a step change on every optimiser move.
V3_PERCENT_MODE = "normal"
#: `power_off` answers before acting, so the reply is not lost to the shutdown (§3.3).
V2_RESPBEFORE = "true"
#: The three `get.miner.status` sections in one request (protocols.md §3.5: combinable with +).
V3_STATUS_SECTIONS = "summary+edevs+pools"

#: One change `apply` sends; both API generations send them in the order of :func:`steps`.
Step = Literal["start", "stop", "power_mode", "power_limit", "power_percent"]
#: The capability knob behind each step (its ``restarts`` says whether the step restarts).
STEP_KNOBS: dict[Step, str] = {
    "start": "mining",
    "stop": "mining",
    "power_mode": "power_mode",
    "power_limit": "power_limit_w",
    "power_percent": "power_percent",
}


class WhatsminerDriver(MinerDriver):
    """One Whatsminer on either API generation."""

    def __init__(
        self,
        config: DriverConfig,
        credentials: Credentials,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        token_lifetime_s: float | None = None,
        token_refresh_margin_s: float | None = None,
        monotonic: Callable[[], float] | None = None,
        identity_refresh_s: float = IDENTITY_REFRESH_S,
    ) -> None:
        self.config = config
        host = config.host
        extra: dict[str, Any] = {
            k: v
            for k, v in (
                ("token_lifetime_s", token_lifetime_s),
                ("token_refresh_margin_s", token_refresh_margin_s),
                ("monotonic", monotonic),
            )
            if v is not None
        }
        self.v2 = BtminerV2Protocol(
            TcpJsonTransport(host, config.ports.get("rpc", RPC_PORT), timeouts=timeouts),
            credentials.password,
            retry,
            **extra,
        )
        # `admin` is deprecated on V3; its write account is `super` (protocols.md §3.5).
        account = credentials.username if credentials.username != "admin" else DEFAULT_ACCOUNT
        self.v3 = BtminerV3Protocol(
            TcpFramedTransport(host, config.ports.get("v3", V3_PORT), timeouts=timeouts),
            credentials.password,
            account,
            retry,
        )
        self.api = config.api
        self._model = config.model
        self._api_ver: str | None = None
        self._version = IdentityReply(identity_refresh_s, monotonic or time.monotonic)

    @property
    def capabilities(self) -> Capabilities:
        """Power limit (restarts), percent (temporary), modes and on/off."""
        profile = profile_for(self._model, "whatsminer")
        fk = firmware_knobs(profile, "whatsminer")
        knobs = [power_limit_knob(profile, fk, restarts=True)]
        if fk is None or fk.power_percent:
            knobs.append(
                Knob(
                    "power_percent",
                    "continuous",
                    POWER_PERCENT_MIN,
                    POWER_PERCENT_MAX,
                    POWER_PERCENT_STEP,
                )
            )
        knobs += [power_mode_knob(fk, DEFAULT_MODES), mining_knob(fk)]
        return Capabilities(reports_power=True, knobs=tuple(knobs))

    async def read(self) -> MinerSnapshot:
        """Poll the miner on its API generation."""
        if await self._api() == "v3":
            return await self._read_v3()
        return await self._read_v2()

    async def apply(self, settings: Settings) -> ApplyResult:
        """Send each requested change, the one that restarts btminer last.

        Raises ``PartialApplyError`` (listing what was applied) if a step fails after
        earlier ones reached the miner.
        """
        check_settings(self.config.host, self.capabilities, settings)
        check_combination(self.config.host, settings)
        if await self._api() == "v3":
            return await self._apply_steps(settings, self._write_v3, ", ")
        return await self._apply_steps(settings, self._write_v2, " ")

    async def set_pools(self, pools: Sequence[PoolConfig]) -> ApplyResult:
        """Replace the pool list (up to three)."""
        if await self._api() == "v3":
            param = [{"pool": p.url, "worker": p.user, "passwd": p.password} for p in pools]
            await self.v3.write("set.miner.pools", param)
        else:
            params: dict[str, str] = {}
            for i, p in enumerate(pools, start=1):
                params.update({f"pool{i}": p.url, f"worker{i}": p.user, f"passwd{i}": p.password})
            await self.v2.write("update_pools", **params)
        return ApplyResult(
            requested=Settings(), accepted=True, extra={"pools": [p.url for p in pools]}
        )

    async def close(self) -> None:
        """Close the V3 connection and its heartbeat."""
        await self.v3.transport.close()
        await self.v2.transport.close()

    # --- API selection -------------------------------------------------------------------

    async def _api(self) -> str:
        if self.api is None:
            self.api = await self._detect_api()
            log.debug("whatsminer_api", host=self.config.host, api=self.api)
        return self.api

    async def _detect_api(self) -> str:
        v2_error: MinerError | None = None
        try:
            version = await self.v2.command(V2_IDENTITY)
            self._version.store(version)  # the identity read of the first poll
            m = version.get("Msg")
            api = parse.api_for_firmware(m.get("fw_ver") if isinstance(m, dict) else None)
            if api is not None:
                return api
        except MinerError as err:
            v2_error = err
        try:
            info = await self.v3.command("get.device.info")
        except MinerError as err:
            if v2_error is not None:
                raise v2_error from err
            raise UnsupportedMinerError(
                self.config.host, "no firmware date on 4028 and no V3 API on 4433"
            ) from err
        fw = parse.msg(info).get("system", {}).get("fwversion")
        return parse.api_for_firmware(fw) or "v3"

    # --- V2 ------------------------------------------------------------------------------

    async def _read_v2(self) -> MinerSnapshot:
        cmds = (*V2_READS, V2_IDENTITY) if self._version.due() else V2_READS
        r = await self.v2.multicommand(*cmds)
        if "summary" not in r.ok:
            raise r.failed["summary"]
        f = Fields(self.config.host)
        reply = r.ok["summary"]
        summary = primary_section(self.config.host, "summary", reply, lambda: reply["SUMMARY"][0])
        if _lacks_power(summary):
            r.merge(await self.v2.multicommand(V2_PSU))
        self._version.store(r.ok.get(V2_IDENTITY))
        status = r.ok.get("status")
        model = (
            f.get("model", lambda: r.ok["devdetails"]["DEVDETAILS"][0]["Model"])
            if ("devdetails" in r.ok)
            else None
        )
        if model:
            self._model = str(model)
        version = self._version.value
        if version is not None:
            self._api_ver = f.get("api_ver", lambda: str(parse.msg(version)["api_ver"]))
        profile = profile_for(self._model, "whatsminer")
        chips = profile.hardware.chips_per_board if profile else None
        hashrate = f.get("hashrate", lambda: parse.v2_hashrate_ths(summary))
        expected = f.get("expected", lambda: _ghs(summary.get("Factory GHS")))
        snap = MinerSnapshot(
            miner_id=self.config.id,
            host=self.config.host,
            ts=utcnow(),
            make="whatsminer",
            model=self._model,
            firmware=f.get("firmware", lambda: parse.v2_firmware(version, status, summary)),
            hashrate_ths=hashrate,
            hashrate_avg_ths=f.get("hashrate_avg", lambda: mhs_ths(summary.get("MHS av"))),
            expected_hashrate_ths=expected or (profile.rated.hashrate_ths if profile else None),
            power_w=f.get(
                "power",
                lambda: first(parse.v2_power_w(summary), _psu_power(r.ok.get("get_psu"))),
            ),
            power_limit_w=f.get(
                "power_limit",
                lambda: number(
                    first(
                        summary.get("Power Limit"),
                        parse.msg(status).get("power_limit_set") if status else None,
                    )
                ),
            ),
            power_mode=f.get("power_mode", lambda: parse.v2_power_mode(summary, status)),
            env_temp_c=f.get("env_temp", lambda: number(summary.get("Env Temp"))),
            fans_rpm=f.get(
                "fans", lambda: _fans(summary.get("Fan Speed In"), summary.get("Fan Speed Out"))
            ),
            uptime_s=f.get("uptime", lambda: integer(summary.get("Elapsed"))),
            is_mining=f.get("is_mining", lambda: parse.v2_is_mining(status, hashrate)),
            hw_errors=f.get("hw_errors", lambda: integer(summary.get("Hardware Errors"))),
            accepted=f.get("accepted", lambda: integer(summary.get("Accepted"))),
            rejected=f.get("rejected", lambda: integer(summary.get("Rejected"))),
            error_codes=f.get(
                "error_codes", lambda: parse.v2_error_codes(r.ok.get("get_error_code"), summary)
            ),
            boards=_opt(f, "boards", r, "devs", lambda d: parse.v2_boards(d, chips, f)),
            pools=_opt(f, "pools", r, "pools", cgminer_pools),
        )
        self._version.saw_uptime(snap.uptime_s)
        return snap

    async def _write_v2(self, step: Step, value: Any) -> str:
        """Send one step as its V2 command and return the command name."""
        params: dict[str, str] = {}
        if step == "start":
            cmd = "power_on"
        elif step == "stop":
            cmd, params = "power_off", {"respbefore": V2_RESPBEFORE}
        elif step == "power_mode":
            cmd = V2_MODE_COMMANDS[value]
        elif step == "power_limit":
            cmd, params = "adjust_power_limit", {"power_limit": str(value)}
        else:
            cmd = "set_power_pct_v2" if self._pct_v2() else "set_power_pct"
            params = {"percent": str(value)}
        await self.v2.write(cmd, **params)
        return cmd

    def _pct_v2(self) -> bool:
        try:
            parts = tuple(int(x) for x in (self._api_ver or "").split(".")[:3])
        except ValueError:
            return False
        return len(parts) == 3 and parts >= V2_PCT_V2_FROM

    # --- V3 ------------------------------------------------------------------------------

    async def _read_v3(self) -> MinerSnapshot:
        """Send one `summary+edevs+pools` status request, then read device info and settings.

        The requests share one connection and go one at a time: a hung unit costs one
        command's retries (the status request's), never every command's in turn.
        """
        host = self.config.host
        status = await self.v3.command("get.miner.status", V3_STATUS_SECTIONS)
        sections = primary_section(host, "get.miner.status", status, lambda: parse.msg(status))
        s = primary_section(host, "get.miner.status summary", status, lambda: sections["summary"])
        info_reply = await self._v3_secondary("get.device.info")
        setting = await self._v3_secondary("get.miner.setting")
        f = Fields(host)
        info = f.get("info", lambda: parse.msg(info_reply)) if info_reply is not None else None
        miner, system, power = (_part(info, k) for k in ("miner", "system", "power"))
        if miner.get("type"):
            self._model = str(miner["type"])
        profile = profile_for(self._model, "whatsminer")
        chips = profile.hardware.chips_per_board if profile else None
        hashrate = f.get("hashrate", lambda: number(s.get("hash-realtime")))
        working = miner.get("working")
        return MinerSnapshot(
            miner_id=self.config.id,
            host=self.config.host,
            ts=utcnow(),
            make="whatsminer",
            model=self._model,
            firmware=system.get("fwversion"),
            hashrate_ths=hashrate,
            hashrate_avg_ths=f.get("hashrate_avg", lambda: number(s.get("hash-average"))),
            expected_hashrate_ths=f.get("expected", lambda: positive(s.get("factory-hash")))
            or (profile.rated.hashrate_ths if profile else None),
            power_w=f.get(
                "power",
                lambda: first(positive(s.get("power-realtime")), positive(power.get("pin"))),
            ),
            power_limit_w=f.get("power_limit", lambda: positive(s.get("power-limit"))),
            power_mode=f.get(
                "power_mode",
                lambda: _lower(first(s.get("power-mode"), _setting(setting).get("power-mode"))),
            ),
            env_temp_c=f.get("env_temp", lambda: number(s.get("environment-temperature"))),
            fans_rpm=f.get("fans", lambda: _fans(s.get("fan-speed-in"), s.get("fan-speed-out"))),
            uptime_s=f.get("uptime", lambda: integer(s.get("elapsed"))),
            is_mining=(str(working).lower() == "true")
            if working is not None
            else (None if hashrate is None else hashrate > 0),
            hw_errors=None,
            accepted=None,
            rejected=None,
            error_codes=(
                f.get("error_codes", lambda: parse.v3_error_codes(info))
                if info is not None
                else None
            ),
            boards=(
                f.get("boards", lambda: parse.v3_boards(status, s, chips, f))
                if "edevs" in sections
                else None
            ),
            pools=f.get("pools", lambda: parse.v3_pools(status)) if "pools" in sections else None,
        )

    async def _v3_secondary(self, cmd: str) -> dict[str, Any] | None:
        """Run a read the snapshot can do without: ``None`` if it failed, unless the unit hangs.

        A timeout means the unit is not answering at all, so the poll fails at once (a gap)
        instead of spending another command's retries finding that out again.
        """
        try:
            return await self.v3.command(cmd)
        except MinerTimeoutError:
            raise
        except MinerError as err:
            log.debug("command_unavailable", host=self.config.host, command=cmd, error=repr(err))
            return None

    async def _write_v3(self, step: Step, value: Any) -> str:
        """Send one step as its V3 `set.*` command and return a label for the result."""
        if step in ("start", "stop"):
            await self.v3.write("set.miner.service", step)
            return f"service {step}"
        if step == "power_mode":
            await self.v3.write("set.miner.power_mode", value)
            return f"power_mode {value}"
        if step == "power_limit":
            await self.v3.write("set.miner.power_limit", value)
            return "power_limit"
        await self.v3.write("set.miner.power_percent", {"percent": value, "mode": V3_PERCENT_MODE})
        return "power_percent"

    # --- both ----------------------------------------------------------------------------

    async def _apply_steps(
        self,
        settings: Settings,
        write: Callable[[Step, Any], Awaitable[str]],
        separator: str,
    ) -> ApplyResult:
        """Send every step one after another; stop at the first failure and say what ran."""
        caps = self.capabilities
        done: list[str] = []
        applied: list[str] = []
        restarted = False
        for step, value in steps(settings):
            try:
                done.append(await write(step, value))
            except MinerError as err:
                if not applied:
                    raise  # nothing reached the miner: the plain error says it all
                raise PartialApplyError(
                    self.config.host, applied, describe(step, value), err
                ) from err
            applied.append(describe(step, value))
            knob = caps.knob(STEP_KNOBS[step])
            restarted = restarted or (knob is not None and knob.restarts)
        return ApplyResult(
            requested=settings,
            accepted=True,
            restarted=restarted,
            detail=separator.join(done) or "nothing to change",
        )


def check_combination(host: str, settings: Settings) -> None:
    """Refuse a request one apply cannot honour, before anything is sent.

    `power_percent` is temporary (lost when btminer restarts, protocols.md §3.3 and §3.5)
    and a power limit change restarts btminer to apply, so the two together would end with
    the limit set and the percent silently back at 100.
    """
    if settings.power_percent is not None and settings.power_limit_w is not None:
        raise UnsupportedMinerError(
            host,
            "power_percent is lost when the power limit restarts btminer: "
            "apply the limit first, then the percent once the miner is back",
        )


def steps(settings: Settings) -> list[tuple[Step, Any]]:
    """List the changes ``settings`` asks for in sending order.

    Steps that keep btminer running come first (percent, then a live mode switch); the
    ones that restart or stop it come last (power on, power limit, stop), because a
    command sent while btminer restarts is refused and would leave the request half done.
    """
    out: list[tuple[Step, Any]] = []
    if settings.power_percent is not None:
        out.append(("power_percent", int(settings.power_percent)))
    if settings.power_mode is not None and settings.power_mode != "sleep":
        out.append(("power_mode", settings.power_mode))
    if settings.mining is True:
        out.append(("start", None))
    if settings.power_limit_w is not None:
        out.append(("power_limit", int(settings.power_limit_w)))
    if settings.power_mode == "sleep" or settings.mining is False:
        out.append(("stop", None))
    return out


def describe(step: Step, value: Any) -> str:
    """Name one step with its value, as listed in a ``PartialApplyError``."""
    return step if value is None else f"{step}={value}"


def _opt(f: Fields, name: str, replies: Replies, cmd: str, parse_fn: Any) -> Any:
    """Parse an optional reply; ``None`` (not read) if its command failed or it is garbled."""
    reply = replies.optional(cmd)
    if reply is None:
        return None
    return f.get(name, lambda: parse_fn(reply))


def _ghs(value: Any) -> float | None:
    num = number(value)
    return num * parse.GHS_TO_THS if num else None


def _lower(value: Any) -> str | None:
    return str(value).strip().lower() if value not in (None, "") else None


def _fans(*values: Any) -> tuple[int, ...] | None:
    """Return fan RPMs from the fields given; ``None`` when the reply has none of them."""
    if all(v is None for v in values):
        return None
    return tuple(int(v) for v in (number(x) for x in values) if v is not None)


def _part(info: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """Return one `get.device.info` section (``{}`` if not read: its fields read ``None``)."""
    value = info.get(key) if info is not None else None
    return value if isinstance(value, dict) else {}


def _setting(reply: dict[str, Any] | None) -> dict[str, Any]:
    """`get.miner.setting` msg (`power-mode`, ...), or empty when unavailable."""
    return parse.msg(reply) if reply is not None else {}


def _lacks_power(summary: dict[str, Any]) -> bool:
    """Whether `summary` has no usable power reading (so `get_psu` is worth a request)."""
    try:
        return parse.v2_power_w(summary) is None
    except FIELD_ERRORS:
        return True


def _psu_power(reply: dict[str, Any] | None) -> float | None:
    """Input power from `get_psu` when the firmware includes it (field name unverified)."""
    if reply is None:
        return None
    return positive(parse.msg(reply).get("pin"))
