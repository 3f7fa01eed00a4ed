"""Editing bosminer.toml: both schemas, minimal diffs, and refusing what cannot be edited safely."""

from __future__ import annotations

import tomllib

import pytest

from agent.drivers import bosminer_toml
from agent.errors import MinerResponseError
from tests.wire.fakes.ssh_server import NEW_TOML, OLD_TOML


def test_schema_from_keys_and_from_format_version() -> None:
    assert bosminer_toml.detect_schema(tomllib.loads(OLD_TOML)) == "old"
    assert bosminer_toml.detect_schema(tomllib.loads(NEW_TOML)) == "new"
    assert bosminer_toml.detect_schema({"format": {"version": "1.2+"}}) == "old"
    assert bosminer_toml.detect_schema({"format": {"version": "2.0"}}) == "new"


def test_section_added_when_missing_and_comments_survive() -> None:
    text = "[format]\nversion = '2.0'\n\n# pools below\n[[group]]\nname = 'Default'\n"
    new, schema = bosminer_toml.set_power_target(text, 2800)
    data = tomllib.loads(new)
    assert schema == "new"
    assert data["autotuning"] == {"enabled": True, "mode": "power_target", "power_target": 2800}
    assert "# pools below" in new
    assert data["group"][0]["name"] == "Default"


def test_old_schema_enables_autotuning_in_place() -> None:
    text = OLD_TOML.replace("enabled = true", "enabled = false")
    new, _ = bosminer_toml.set_power_target(text, 1000)
    data = tomllib.loads(new)
    assert data["autotuning"] == {"enabled": True, "psu_power_limit": 1000}
    assert "power_target" not in new


def test_inline_table_is_refused_not_mangled() -> None:
    text = "autotuning = { enabled = true, power_target = 3000 }\n[format]\nversion = '2.0'\n"
    with pytest.raises(MinerResponseError):
        bosminer_toml.set_power_target(text, 2500)


def test_invalid_toml_is_response_error() -> None:
    with pytest.raises(MinerResponseError, match="not valid TOML"):
        bosminer_toml.set_power_target("[autotuning\npower_target = ", 2500)
