"""Bytes on the wire: JSON rendering with firmware quirks, request reading, faulty replies.

Replies are built as Python dicts, rendered compactly like cgminer/btminer do, then the
per-unit JSON quirks (faults.JSON_QUIRKS) are applied to the text or the bytes. Connection
faults (hang, trickle, reset, garbage, oversize) change how the bytes are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from typing import Any

from agent.simulator.faults import Faults

#: Largest request we accept; real requests are well under 1 KiB (privileged ones ~0.5 KiB).
MAX_REQUEST_BYTES = 64 * 1024
#: Bytes per read of a request.
READ_CHUNK_BYTES = 4096
#: Keys whose numeric values the "numbers_as_strings" quirk turns into strings (issue #44:
#: stock S17 `"GHS 5s": "31947.78"`; protocols.md §1.1).
STRINGY_KEYS = frozenset({"GHS 5s", "GHS av", "GHS 30m", "MHS 5s", "MHS av", "MHS 1m", "rate_30m"})
#: Duplicate-key quirk: how many stale copies of each temp key precede the real one
#: (the Hammer D10 capture repeats temp1..temp4 four times, protocols.md §1.1).
DUPLICATE_COPIES = 3


def dumps(obj: Any) -> str:
    """Compact JSON as cgminer/btminer write it (no spaces, insertion order)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def render(obj: Any, quirks: set[str] | frozenset[str]) -> bytes:
    """Render a reply object with the given JSON quirks applied."""
    if "numbers_as_strings" in quirks:
        obj = _stringify_numbers(obj)
    text = dumps(obj)
    return apply_text_quirks(text, quirks)


def apply_text_quirks(text: str, quirks: set[str] | frozenset[str]) -> bytes:
    """Apply the text- and byte-level quirks to already-serialized JSON."""
    if "missing_comma" in quirks:
        text = _drop_stats_comma(text)
    if "duplicate_keys" in quirks:
        text = _duplicate_temp_keys(text)
    if "error_code_dict_list" in quirks:
        text = _error_code_dict_list(text)
    if "missing_comma_temp0" in quirks:
        text = text.replace('","temp0"', '""temp0"', 1)
    if "raw_newline" in quirks:
        text = _inject_in_string(text, ("Msg", "Description", "msg", "desc"), "\n")
    if "trailing_comma" in quirks:
        text = _trailing_comma(text)
    data = text.encode("utf-8")
    if "non_utf8" in quirks:
        data = _inject_byte(data)
    if "trailing_nul" in quirks:
        data += b"\x00"
    return data


def _stringify_numbers(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: (
                f"{v:.2f}"
                if k in STRINGY_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
                else _stringify_numbers(v)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_stringify_numbers(v) for v in obj]
    return obj


def _drop_stats_comma(text: str) -> str:
    """`"STATS":[{...},{...}]` -> `"STATS":[{...}{...}]` (the first element is flat)."""
    start = text.find('"STATS":[{')
    if start < 0:
        return text
    boundary = text.find("},{", start)
    if boundary < 0:
        return text
    return text[:boundary] + "}{" + text[boundary + 3 :]


def _duplicate_temp_keys(text: str) -> str:
    """Insert stale copies of ``"tempN":`` pairs before the real ones (strict parsers see two)."""
    for n in range(1, 5):
        key = f'"temp{n}":'
        pos = text.find(key)
        if pos < 0:
            continue
        text = text[:pos] + (key + "0,") * DUPLICATE_COPIES + text[pos:]
    return text


def _error_code_dict_list(text: str) -> str:
    """Rewrite error_code like API 2.0.4: ``[{"110":"t"},{"2":"t"}]`` -> ``["110":"t","2":"t"]``."""
    start = text.find('"error_code":[{')
    if start < 0:
        return text
    end = text.find("}]", start)
    if end < 0:
        return text
    body = text[start + len('"error_code":[') : end + 1]
    flattened = body.replace("},{", ",")[1:-1]
    return text[:start] + '"error_code":[' + flattened + "]" + text[end + 2 :]


def _inject_in_string(text: str, keys: tuple[str, ...], insert: str) -> str:
    """Append ``insert`` inside the first string value of one of ``keys``."""
    for key in keys:
        marker = f'"{key}":"'
        pos = text.find(marker)
        if pos < 0:
            continue
        end = text.find('"', pos + len(marker))
        if end < 0:
            continue
        return text[:end] + insert + text[end:]
    return text


def _trailing_comma(text: str) -> str:
    """Put a comma before the first closing brace of a non-empty object."""
    pos = text.find("}")
    while pos > 0 and text[pos - 1] == "{":
        pos = text.find("}", pos + 1)
    if pos < 0:
        return text
    return text[:pos] + "," + text[pos:]


def _inject_byte(data: bytes) -> bytes:
    """Insert 0xAA inside the first string value of a description-like field."""
    for key in (b'"Description":"', b'"desc":"', b'"Msg":"', b'"msg":"'):
        pos = data.find(key)
        if pos >= 0:
            at = pos + len(key)
            return data[:at] + b"\xaa" + data[at:]
    return data


def pad_oversize(data: bytes, size: int) -> bytes:
    """Grow a JSON reply to ``size`` bytes with whitespace before its last closing brace."""
    if len(data) >= size:
        return data
    end = data.rfind(b"}")
    if end < 0:
        return data + b" " * (size - len(data))
    return data[:end] + b" " * (size - len(data)) + data[end:]


def garbage(rng: Any, length: int) -> bytes:
    """Deterministic random bytes (seeded per unit)."""
    return bytes(rng.getrandbits(8) for _ in range(max(length, 16)))


# -- reading requests -----------------------------------------------------------------------


async def read_request(reader: asyncio.StreamReader, timeout_s: float) -> bytes | None:
    """Read one cgminer-style request: a complete JSON object, or one chunk of plain text.

    Returns None if nothing arrives within ``timeout_s`` or the peer closes first (the real
    firmware closes silently after 10 s of silence, protocols.md §7).
    """
    buf = b""
    try:
        async with asyncio.timeout(timeout_s):
            while len(buf) < MAX_REQUEST_BYTES:
                chunk = await reader.read(READ_CHUNK_BYTES)
                if not chunk:
                    break
                buf += chunk
                stripped = buf.strip(b" \t\r\n\x00")
                if not stripped.startswith(b"{"):
                    return stripped  # plain text: cgminer takes one recv()
                try:
                    json.loads(stripped)
                except (ValueError, UnicodeDecodeError):
                    continue
                return stripped
    except TimeoutError:
        return buf.strip() or None
    return buf.strip() or None


async def wait_for_eof(reader: asyncio.StreamReader) -> None:
    """Swallow input and never answer (the "hang" fault) until the peer gives up."""
    while await reader.read(READ_CHUNK_BYTES):
        pass


# -- writing replies ------------------------------------------------------------------------


async def send_reply(
    writer: asyncio.StreamWriter,
    data: bytes,
    faults: Faults,
    proto: str,
    rng: Any,
) -> bool:
    """Write a reply honouring the unit's connection fault; False if the connection was reset."""
    mode = faults.connection_for(proto)
    if mode == "garbage":
        data = garbage(rng, len(data))
    elif mode == "oversize":
        data = pad_oversize(data, faults.oversize_bytes)
    if mode == "trickle":
        step = max(1, faults.trickle_chunk_bytes)
        for i in range(0, len(data), step):
            writer.write(data[i : i + step])
            await writer.drain()
            await asyncio.sleep(faults.trickle_delay_s)
        return True
    if mode == "reset":
        cut = int(len(data) * min(max(faults.reset_fraction, 0.0), 1.0))
        writer.write(data[:cut])
        await writer.drain()
        reset(writer)
        return False
    writer.write(data)
    await writer.drain()
    return True


def reset(writer: asyncio.StreamWriter) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # A peer that already closed makes setsockopt fail; aborting is all that is left.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully (FIN), ignoring a peer that already went away."""
    if writer.transport.is_closing():
        return
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        return
