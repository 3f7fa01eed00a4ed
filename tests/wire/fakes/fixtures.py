"""Real miner replies from shared/fixtures/asic-rs, keyed by the command that produces them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES

#: The fixture folders the parsers must pass on (protocols.md; shared/fixtures/README.md).
FIXTURE_SETS = ("antminer/v2020", "whatsminer/v1", "whatsminer/v2", "whatsminer/v3")

#: file stem → command (or V3 (cmd, param)) that returns it; `*_with_errors` are variants.
COMMAND_FOR_FILE: dict[str, Any] = {
    "version": "version",
    "summary": "summary",
    "summary_with_errors": "summary",
    "stats": "stats",
    "pools": "pools",
    "devs": "devs",
    "status": "status",
    "get_psu": "get_psu",
    "get_version": "get_version",
    "get_error_code": "get_error_code",
    "get_error_code_with_errors": "get_error_code",
    "get_miner_info": "get_miner_info",
    "system_info": "web:get_system_info",
    "get_device_info": ("get.device.info", None),
    "get_device_info_with_errors": ("get.device.info", None),
    "get_miner_status_summary": ("get.miner.status", "summary"),
    "get_miner_status_edevs": ("get.miner.status", "edevs"),
    "get_miner_status_pools": ("get.miner.status", "pools"),
}


def fixture_files(set_name: str) -> list[Path]:
    """Every JSON file of one fixture set, sorted."""
    return sorted((FIXTURES / set_name).glob("*.json"))


def all_fixture_files() -> list[Path]:
    """Every JSON file the parsers must pass on."""
    return [p for s in FIXTURE_SETS for p in fixture_files(s)]


def load(path: Path) -> dict[str, Any]:
    """One fixture as a dict."""
    return json.loads(path.read_text(encoding="utf-8"))


def replies(set_name: str, *, variant: str | None = None) -> dict[Any, bytes]:
    """Command → raw reply bytes for one set; ``variant="with_errors"`` swaps in those files."""
    out: dict[Any, bytes] = {}
    for path in fixture_files(set_name):
        stem = path.stem
        if stem.endswith("_with_errors") and variant != "with_errors":
            continue
        out[COMMAND_FOR_FILE[stem]] = path.read_bytes()
    if variant == "with_errors":
        for path in fixture_files(set_name):
            if path.stem.endswith("_with_errors"):
                out[COMMAND_FOR_FILE[path.stem]] = path.read_bytes()
    return out
