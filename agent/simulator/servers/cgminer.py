"""The cgminer-style API on TCP 4028 shared by bmminer, btminer V2 and BOSminer.

One request per connection (JSON, or plain ``cmd|param`` text), one reply, then close
(cgminer API-README; protocols.md §1.1). Replies carry a ``STATUS`` list and ``"id": 1``;
``+`` joins report commands into one reply keyed by command name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.simulator.servers import wire
from agent.simulator.servers.device import SimDevice

log = structlog.get_logger(__name__)

#: Vendor V2 doc: the connection is closed if nothing is received within 10 s (protocols.md
#: §3.1, §7); cgminer behaves alike, so every 4028 server uses it.
RPC_IDLE_TIMEOUT_S = 10.0

#: cgminer message codes used here (cgminer api.c constants).
CODE_INVALID_COMMAND = 14
CODE_ACCESS_DENIED = 45


@dataclass
class Request:
    """One decoded 4028 request."""

    command: str
    parameter: str | None = None
    is_json: bool = True
    body: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reply:
    """What a dispatcher returns: an object to render (or raw bytes) and follow-up actions."""

    obj: Any = None
    raw: bytes | None = None
    #: Runs after the reply is on the wire (e.g. reboot after answering "OK").
    after: Callable[[], Awaitable[None] | None] | None = None
    #: Runs before the reply is written (e.g. power_off with respbefore=false).
    before: Callable[[], Awaitable[None] | None] | None = None


def parse_request(raw: bytes) -> Request | None:
    """Decode a JSON (``command``/``cmd`` + ``parameter``) or plain-text (``cmd|param``) request."""
    text = raw.decode("utf-8", errors="replace").strip().rstrip("\x00")
    if text.startswith("{"):
        try:
            body = json.loads(text)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        command = body.get("command", body.get("cmd"))
        param = body.get("parameter")
        return Request(
            command=str(command) if command is not None else "",
            parameter=None if param is None else str(param),
            is_json=True,
            body=body,
        )
    command, _, param = text.partition("|")
    return Request(command=command.strip(), parameter=param or None, is_json=False)


def status(letter: str, code: int, msg: str, description: str, when: int) -> dict[str, Any]:
    """One element of a ``STATUS`` list (key order as cgminer writes it)."""
    return {"STATUS": letter, "When": when, "Code": code, "Msg": msg, "Description": description}


def envelope(
    section: str | None,
    items: list[dict[str, Any]] | None,
    code: int,
    msg: str,
    description: str,
    when: int,
) -> dict[str, Any]:
    """Build a complete successful cgminer reply: STATUS, the section list, id."""
    reply: dict[str, Any] = {"STATUS": [status("S", code, msg, description, when)]}
    if section is not None:
        reply[section] = items or []
    reply["id"] = 1
    return reply


def error(code: int, msg: str, description: str, when: int) -> dict[str, Any]:
    """Build a cgminer error reply."""
    return {"STATUS": [status("E", code, msg, description, when)], "id": 1}


def access_denied(command: str, description: str, when: int) -> dict[str, Any]:
    """Stock Antminer group-A denial (issue #44 text, Code 45 as in cgminer)."""
    return error(CODE_ACCESS_DENIED, f"Access denied to '{command}' command", description, when)


def invalid_command(description: str, when: int) -> dict[str, Any]:
    """Cgminer's reply to an unknown command."""
    return error(CODE_INVALID_COMMAND, "Invalid command", description, when)


def multi(replies: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Join replies as cgminer does for ``a+b``: each value a one-element list, plus id."""
    joined: dict[str, Any] = {name: [reply] for name, reply in replies.items()}
    joined["id"] = 1
    return joined


def split_multi(command: str) -> list[str]:
    """``summary+pools+summary`` -> ``["summary", "pools"]`` (duplicates collapsed)."""
    seen: list[str] = []
    for part in command.split("+"):
        part = part.strip()
        if part and part not in seen:
            seen.append(part)
    return seen


def to_text(reply: dict[str, Any]) -> str:
    """Cgminer's plain-text reply form: ``STATUS=S,When=..|SECTION,k=v,..|``."""
    out = []
    for section, value in reply.items():
        if section == "id":
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                continue
            pairs = [f"{k}={_text_value(v)}" for k, v in item.items()]
            first = next(iter(item), None)
            prefix = [] if first == section else [section]
            out.append(",".join(prefix + pairs))
    return "|".join(out) + "|"


def _text_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


Dispatcher = Callable[[SimDevice, Request, str], Reply | Awaitable[Reply]]


async def serve_connection(
    device: SimDevice,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    dispatch: Dispatcher,
) -> None:
    """Run one 4028 exchange: read a request, dispatch, write the reply with faults, close."""
    if not device.endpoint_up("rpc"):
        wire.reset(writer)  # the process died under an open listener; the supervisor closes it
        device.changed()
        return
    peer = writer.get_extra_info("peername")
    peer_ip = peer[0] if peer else "?"
    try:
        raw = await wire.read_request(reader, RPC_IDLE_TIMEOUT_S)
        if raw is None:
            return
        if device.faults.connection_for("rpc") == "hang":
            await wire.wait_for_eof(reader)
            return
        request = parse_request(raw)
        if request is None:
            reply = Reply(obj=error(CODE_INVALID_COMMAND, "Invalid JSON", "", device.when()))
        else:
            result = dispatch(device, request, peer_ip)
            reply = await result if asyncio.iscoroutine(result) else result  # type: ignore[assignment]
        if reply.before is not None:
            await _maybe_await(reply.before())
        data = reply.raw
        if data is None:
            obj = reply.obj
            if request is not None and not request.is_json and isinstance(obj, dict):
                text = to_text(obj)
                data = wire.apply_text_quirks(text, device.faults.quirks & {"trailing_nul"})
            else:
                data = wire.render(obj, device.faults.quirks)
        sent = await wire.send_reply(writer, data, device.faults, "rpc", device.rng)
        if reply.after is not None:
            await _maybe_await(reply.after())
        if not sent:
            return
    except (ConnectionError, OSError) as err:
        log.debug("rpc_peer_gone", unit=device.unit_id, error=str(err))
        return
    finally:
        await wire.close(writer)


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value
