"""Stock Antminer web CGI on HTTP (port 80): Digest auth, status pages, config and control.

Endpoints and shapes follow protocols.md §1.4 and the captured ``get_system_info`` and
S23 Hyd. ``stats.cgi``/``summary.cgi``. ``set_miner_conf`` switches the work mode through
``SimUnit`` (0 normal, 1 sleep, 3 low power, also as strings, §1.5).
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from typing import Any

import structlog

from agent.simulator.servers import antminer, wire
from agent.simulator.servers.device import Pool, SimDevice
from agent.simulator.servers.http import (
    KEEPALIVE_IDLE_S,
    BadRequest,
    DigestAuth,
    HttpRequest,
    HttpResponse,
    read_request,
)
from agent.simulator.servers.readings import counters, fans, ghs

log = structlog.get_logger(__name__)

#: Realm of the stock web UI; pyasic detects Antminers by it (protocols.md §1.4).
REALM = "antMiner Configuration"
#: Work-mode values (``miner-mode`` write / ``bitmain-work-mode`` read, protocols.md §1.5).
MODE_BY_CODE = {0: "normal", 1: "sleep", 3: "low"}
CODE_BY_MODE = {"normal": "0", "sleep": "1", "low": "3"}
#: Stock api-* settings (protocols.md §1.3).
API_GROUPS = "A:stats:pools:devs:summary:version"
API_ALLOW = "A:0/0,W:*"
#: Success / error replies of set_miner_conf (third-party write-up; unverified, §1.4).
CONF_OK = {"stats": "success", "code": "M000", "msg": "OK!"}
CONF_ERROR = {"stats": "error", "code": "M001", "msg": "Invalid configuration"}
#: Blink codes pyasic checks (§1.4).
BLINK_ON, BLINK_OFF = "B000", "B100"
#: Settle delay before a reboot takes the unit down, so the 200 reaches the client first.
REBOOT_AFTER_S = 0.05
_INDEX_HTML = b"<html><head><title>Antminer</title></head><body></body></html>"


def _json(obj: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status=status, body=wire.dumps(obj).encode("utf-8"))


def _not_found() -> HttpResponse:
    return HttpResponse(
        status=404, body=b"<html><body>404 Not Found</body></html>", content_type="text/html"
    )


def digest_for(device: SimDevice) -> DigestAuth:
    """Return the unit's nonce store (created on first use)."""
    auth = device.state.get("digest")
    if auth is None:
        auth = device.state["digest"] = DigestAuth(REALM)
    return auth


async def serve_connection(
    device: SimDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Serve one keep-alive HTTP connection for one unit."""
    try:
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_IDLE_S):
                    request = await read_request(reader)
            except TimeoutError:
                return
            except BadRequest as err:
                writer.write(HttpResponse(err.status, b"", close=True).encode(False))
                await writer.drain()
                return
            if request is None:
                return
            if not device.endpoint_up("web"):
                wire.reset(writer)  # the unit rebooted under this keep-alive connection
                device.changed()
                return
            if device.faults.connection_for("web") == "hang":
                await wire.wait_for_eof(reader)
                return
            response = await handle(device, request)
            if response.drop:
                wire.reset(writer)
                return
            keep = request.headers.get("connection", "").lower() != "close"
            data = response.encode(keep)
            if not await wire.send_reply(writer, data, device.faults, "web", device.rng):
                return
            if not keep or response.close:
                return
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as err:
        log.debug("web_peer_gone", unit=device.unit_id, error=str(err))
    finally:
        await wire.close(writer)


async def handle(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Authenticate, then route one request."""
    auth = digest_for(device)
    ok, stale = auth.check(request, device.username, device.password)
    if not ok:
        return HttpResponse(
            status=401,
            body=b"<html><body>401 Unauthorized</body></html>",
            content_type="text/html",
            headers={"WWW-Authenticate": auth.challenge(stale=stale)},
        )
    path = request.path
    if path in ("/", "/index.html"):
        return HttpResponse(body=_INDEX_HTML, content_type="text/html")
    if not (path.startswith("/cgi-bin/") and path.endswith(".cgi")):
        return _not_found()
    name = path[len("/cgi-bin/") : -len(".cgi")]
    route = ROUTES.get(name)
    if route is None:
        return _not_found()
    return await route(device, request)


# -- pages ----------------------------------------------------------------------------------


async def get_system_info(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """System identity (fixtures antminer/v2020/system_info.json)."""
    ident = device.identity
    return _json(
        {
            "minertype": device.model,
            "nettype": "DHCP",
            "netdevice": "eth0",
            "macaddr": ident.mac,
            "hostname": ident.hostname,
            "ipaddress": device.host,
            "netmask": "255.0.0.0",
            "gateway": "",
            "dnsservers": "",
            "system_mode": "GNU/Linux",
            "system_kernel_version": antminer.KERNEL_VERSION,
            "system_filesystem_version": antminer.FILESYSTEM_VERSION,
            "firmware_type": "Release",
            "serinum": ident.serial,
        }
    )


async def get_network_info(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Report current and configured network settings."""
    ident = device.identity
    return _json(
        {
            "nettype": "DHCP",
            "netdevice": "eth0",
            "macaddr": ident.mac,
            "hostname": ident.hostname,
            "ipaddress": device.host,
            "netmask": "255.0.0.0",
            "gateway": "",
            "dnsservers": "",
            "conf_nettype": "DHCP",
            "conf_hostname": ident.hostname,
            "conf_ipaddress": "",
            "conf_netmask": "",
            "conf_gateway": "",
            "conf_dnsservers": "",
        }
    )


def _status_list(device: SimDevice, reading: Any) -> list[dict[str, Any]]:
    """Build the summary ``status`` checks; clients report non-"s" entries as errors."""
    speeds = fans(reading)
    items = [{"type": "rate", "status": "s", "code": 0, "msg": ""}]
    if reading.error_codes:
        items[0] = {
            "type": "rate",
            "status": "e",
            "code": 0,
            "msg": ", ".join(str(c) for c in reading.error_codes),
        }
    items.append({"type": "network", "status": "s", "code": 0, "msg": ""})
    if device.profile.hardware.fans == 0:
        items.append({"type": "fans", "status": "", "code": 0, "msg": ""})
    elif reading.is_mining and any(s == 0 for s in speeds):
        items.append({"type": "fans", "status": "e", "code": 0, "msg": "Fan speed abnormal"})
    else:
        items.append({"type": "fans", "status": "s", "code": 0, "msg": ""})
    if reading.throttled:
        items.append({"type": "temp", "status": "w", "code": 0, "msg": "Temperature too high"})
    else:
        items.append({"type": "temp", "status": "s", "code": 0, "msg": ""})
    return items


async def summary(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """``summary.cgi`` (captured S23 Hyd. shape)."""
    reading = device.reading()
    el = device.elapsed(reading)
    item = {
        "elapsed": el,
        "rate_5s": ghs(reading.hashrate_5s_ths),
        "rate_30m": ghs(reading.hashrate_30m_ths),
        "rate_avg": ghs(reading.hashrate_avg_ths),
        "rate_ideal": round(float(reading.expected_hashrate_ths) * 1000.0, 2),
        "rate_unit": "GH/s",
        "hw_all": int(reading.hw_errors),
        "bestshare": counters(reading, el)["best_share"],
        "status": _status_list(device, reading),
    }
    return _json(
        {
            "STATUS": antminer.web_status("summary", device.when()),
            "INFO": antminer.web_info(device),
            "SUMMARY": [item],
        }
    )


async def stats(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """``stats.cgi``: per-chain list and fan list."""
    return _json(antminer.web_stats(device, device.reading(), device.when()))


async def pools(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """``pools.cgi`` with lower-case keys."""
    reading = device.reading()
    c = counters(reading, device.elapsed(reading))
    items = []
    for i, pool in enumerate(device.pools):
        first = i == 0
        items.append(
            {
                "index": i,
                "url": pool.url,
                "user": pool.user,
                "status": "Alive",
                "priority": i,
                "getworks": c["getworks"] if first else 0,
                "accepted": int(reading.accepted) if first else 0,
                "rejected": int(reading.rejected) if first else 0,
                "discarded": c["discarded"] if first else 0,
                "stale": 0,
                "diff": "524K" if first and reading.is_mining else "",
                "diff1": 0,
                "diffa": c["diff_accepted"] if first else 0.0,
                "diffr": c["diff_rejected"] if first else 0.0,
                "diffs": 0.0,
                "lsdiff": 524288.0 if first and reading.is_mining else 0.0,
                "lstime": "0:00:03" if first and reading.is_mining else "0",
            }
        )
    return _json(
        {
            "STATUS": antminer.web_status("pools", device.when()),
            "INFO": antminer.web_info(device),
            "POOLS": items,
        }
    )


def work_mode(device: SimDevice) -> str:
    """``bitmain-work-mode`` as the string the firmware reports."""
    settings = device.unit.settings
    if not settings.get("mining", True) or settings.get("power_mode") == "sleep":
        return "1"
    return CODE_BY_MODE.get(str(settings.get("power_mode", "normal")), "0")


async def get_miner_conf(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Report the running config (pools, api-*, bitmain-* keys, work mode as a string)."""
    settings = device.unit.settings
    freq = settings.get("freq_mhz") or device.profile.clock.freq_mhz_default
    volt = settings.get("voltage_v") or device.profile.clock.voltage_v_default
    return _json(
        {
            "pools": [{"url": p.url, "user": p.user, "pass": p.password} for p in device.pools],
            "api-listen": True,
            "api-network": True,
            "api-groups": API_GROUPS,
            "api-allow": API_ALLOW,
            "bitmain-fan-ctrl": device.fan_ctrl,
            "bitmain-fan-pwm": device.fan_pwm,
            "bitmain-use-vil": True,
            "bitmain-freq": str(round(float(freq))),
            "bitmain-voltage": str(round(float(volt) * 100)),
            "bitmain-ccdelay": "0",
            "bitmain-pwth": "0",
            "bitmain-work-mode": work_mode(device),
            "bitmain-freq-level": "100",
        }
    )


def _body(request: HttpRequest) -> dict[str, Any]:
    """Decode a JSON or form-encoded request body into a dict."""
    raw = request.body.strip()
    if raw.startswith(b"{"):
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("body is not an object")
        return data
    return {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8")).items()}


def apply_mode(device: SimDevice, mode: str) -> None:
    """Switch the work mode through the physics (bmminer restarts; sleep keeps web up)."""
    unit = device.unit
    if mode != "sleep" and not unit.settings.get("mining", True):
        unit.set_mining(True)
    unit.set_power_mode(mode)


async def set_miner_conf(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Apply a (full or partial) configuration; ``miner-mode`` switches the work mode."""
    if request.method != "POST":
        return HttpResponse(status=405, body=b"")
    try:
        body = _body(request)
        mode = None
        if "miner-mode" in body:
            code = int(str(body["miner-mode"]).strip())
            mode = MODE_BY_CODE[code]
            knobs = device.profile.firmware.get("antminer")
            if knobs is not None and mode not in knobs.power_modes:
                raise ValueError(f"work mode {mode} not offered on this model")
        new_pools = body.get("pools")
        if new_pools is not None:
            device.pools = [
                Pool(str(p.get("url", "")), str(p.get("user", "")), str(p.get("pass", "")))
                for p in new_pools
                if isinstance(p, dict)
            ] or device.pools
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return _json(CONF_ERROR)
    if "bitmain-fan-ctrl" in body:
        device.fan_ctrl = bool(body["bitmain-fan-ctrl"])
    if "bitmain-fan-pwm" in body:
        device.fan_pwm = str(body["bitmain-fan-pwm"])
    if mode is not None:
        apply_mode(device, mode)
    if device.faults.set_conf_restart_s > 0:
        device.restart_process(device.faults.set_conf_restart_s)
    device.changed()
    if device.faults.drop_set_conf_response:
        return HttpResponse(drop=True)
    return _json(CONF_OK)


async def get_blink_status(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Whether the locate LED blinks."""
    return _json({"blink": device.led_on})


async def blink(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Start/stop blinking (``{"blink": "true"|"false"}``)."""
    try:
        value = str(_body(request).get("blink", "false")).lower()
    except (ValueError, UnicodeDecodeError):
        return _json({"code": "B001"})
    device.led_on = value == "true"
    return _json({"code": BLINK_ON if device.led_on else BLINK_OFF})


async def reboot(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Reboot after the reply has gone out (RPC and web down while the unit boots)."""

    def _reboot() -> None:
        device.unit.reboot()
        device.changed()

    asyncio.get_running_loop().call_later(REBOOT_AFTER_S, _reboot)
    return HttpResponse(body=b"", content_type="text/plain")


async def set_network_conf(device: SimDevice, request: HttpRequest) -> HttpResponse:
    """Accept and ignore: the simulated unit keeps its loopback address."""
    return _json({"stats": "success", "code": "N000", "msg": "OK!"})


ROUTES = {
    "get_system_info": get_system_info,
    "get_network_info": get_network_info,
    "summary": summary,
    "stats": stats,
    "pools": pools,
    "get_miner_conf": get_miner_conf,
    "set_miner_conf": set_miner_conf,
    "get_blink_status": get_blink_status,
    "blink": blink,
    "reboot": reboot,
    "set_network_conf": set_network_conf,
}
