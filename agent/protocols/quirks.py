"""Every repair of malformed miner JSON, in one place, each naming the firmware that needs it.

``decode`` tries a strict parse first; only if that fails are the repairs whose trigger is
present applied, each once, in a fixed order. Value-level quirks (numbers sent as strings,
quoted firmware versions) are the small helpers at the end. Checklist source: pyasic
``rpc/base.py::_load_api_data`` and protocols.md §1.1 / §3.1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from agent.errors import MinerResponseError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Repair:
    """One textual repair: when its trigger matches the reply, ``fix`` rewrites the text."""

    name: str
    #: Firmware known to emit the defect, with the source of that knowledge.
    firmware: str
    trigger: Callable[[str], bool]
    fix: Callable[[str], str]


_OBJECTS_WITHOUT_COMMA = re.compile(r"\}\s*\{")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_LEADING_COMMA = re.compile(r"\[\s*,\s*\{")
_ERROR_CODE_LIST_AS_DICT = re.compile(r'("error_code"\s*:\s*)\[(\s*"[^\[\]{}]*)\]')
_MISSING_COMMA_BEFORE_TEMP0 = re.compile(r'"(\s*)"temp0"')


def _error_code_list_to_dict(text: str) -> str:
    return _ERROR_CODE_LIST_AS_DICT.sub(lambda m: m.group(1) + "{" + m.group(2) + "}", text)


#: Applied in this order, each at most once, only after a strict parse failed.
REPAIRS: tuple[Repair, ...] = (
    Repair(
        "raw_newlines",
        "btminer (Whatsminer V2) writes raw newlines inside JSON strings (pyasic _load_api_data)",
        lambda t: "\n" in t or "\r" in t,
        lambda t: t.replace("\r", "").replace("\n", ""),
    ),
    Repair(
        "leading_comma_in_list",
        "bmminer (stock Antminer) emits `[,{` in some lists (pyasic _load_api_data)",
        lambda t: _LEADING_COMMA.search(t) is not None,
        lambda t: _LEADING_COMMA.sub("[{", t),
    ),
    Repair(
        "objects_without_comma",
        "bmminer 1.0.0 / cgminer 4.8-4.9 `stats` write `}{` between STATS elements "
        "(protocols.md §1.1; tsileo/pycgminer#4)",
        lambda t: _OBJECTS_WITHOUT_COMMA.search(t) is not None,
        lambda t: _OBJECTS_WITHOUT_COMMA.sub("},{", t),
    ),
    Repair(
        "trailing_comma",
        "btminer (Whatsminer V2) leaves a comma before `}` (protocols.md §3.1)",
        lambda t: _TRAILING_COMMA.search(t) is not None,
        lambda t: _TRAILING_COMMA.sub(r"\1", t),
    ),
    Repair(
        "missing_comma_before_temp0",
        'btminer firmware 2023-01-06 writes `""temp0"` without a comma (protocols.md §3.1)',
        lambda t: _MISSING_COMMA_BEFORE_TEMP0.search(t) is not None,
        lambda t: _MISSING_COMMA_BEFORE_TEMP0.sub(r'",\1"temp0"', t),
    ),
    Repair(
        "error_code_list_as_dict",
        'btminer API 2.0.4 `get_error_code` returns `"error_code":["110":"<time>",...]`, '
        "a list shaped like a dict (protocols.md §3.1)",
        lambda t: _ERROR_CODE_LIST_AS_DICT.search(t) is not None,
        _error_code_list_to_dict,
    ),
)

#: Byte-level repairs, recorded under these names (they run before any text repair).
TRAILING_NUL = "trailing_nul"  # bmminer/cgminer on stock Antminer end replies with \x00 (§1.1)
NON_UTF8 = "non_utf8"  # btminer strings with bytes like 0xaa (pyasic PR #383): replaced by U+FFFD
DUPLICATE_KEYS = "duplicate_keys"  # Antminer-clone `stats` repeat temp1..4 (§1.1): last one wins


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded reply and the names of the repairs it needed."""

    data: dict[str, Any]
    repairs: tuple[str, ...] = ()


class _DuplicateTracker:
    """``object_pairs_hook`` that keeps the last value of a repeated key and notes it."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            self.seen = True
        return out


def decode(raw: bytes, host: str) -> Decoded:
    """Parse a miner's JSON reply, repairing known firmware defects, or raise with an excerpt."""
    repairs: list[str] = []
    body = raw
    if body.endswith(b"\x00"):
        body = body.rstrip(b"\x00")
        repairs.append(TRAILING_NUL)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", errors="replace")
        repairs.append(NON_UTF8)
    tracker = _DuplicateTracker()
    try:
        data = json.loads(text, object_pairs_hook=tracker)
    except json.JSONDecodeError as first_err:
        for repair in REPAIRS:
            if repair.trigger(text):
                text = repair.fix(text)
                repairs.append(repair.name)
        try:
            data = json.loads(text, object_pairs_hook=tracker)
        except json.JSONDecodeError as err:
            raise MinerResponseError(
                host,
                f"undecodable JSON ({err.msg} at {err.pos}) after repairs "
                f"{repairs or 'none'}; first error {first_err.msg} at {first_err.pos}",
                excerpt=raw,
            ) from err
    if tracker.seen:
        repairs.append(DUPLICATE_KEYS)
    if not isinstance(data, dict):
        raise MinerResponseError(host, f"reply is JSON {type(data).__name__}, not an object", raw)
    if repairs:
        log.debug("json_repaired", host=host, repairs=repairs)
    return Decoded(data, tuple(repairs))


def number(value: Any) -> float | None:
    """Return a reading as float; bmminer sends some as strings (`"37603.30"`, `""` if empty).

    Returns ``None`` for absent or empty values; raises ``ValueError`` for non-numeric text.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        return float(text)
    raise ValueError(f"not a number: {value!r}")


def integer(value: Any) -> int | None:
    """Return a count as int, with the same string tolerance as :func:`number`."""
    num = number(value)
    return None if num is None else int(num)


def unquote(value: Any) -> str | None:
    """Strip literal quotes: btminer `summary` sends `"Firmware Version": "'20210322.22.REL'"`."""
    if value is None:
        return None
    text = str(value).strip().strip("'\"").strip()
    return text or None
