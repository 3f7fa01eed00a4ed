"""Shared test configuration: paths to the real fixtures and data, loopback only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Real miner API responses (asic-rs, Apache-2.0); see shared/fixtures/README.md.
SHARED = Path(os.environ.get("HASHPILOT_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures" / "asic-rs"
DATA = SHARED / "data"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Directory of real captured miner responses."""
    if not FIXTURES.is_dir():
        pytest.fail(f"real fixtures missing at {FIXTURES}; set HASHPILOT_SHARED")
    return FIXTURES
