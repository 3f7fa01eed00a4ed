"""Session fixtures for the ML tests: the real market frame and one small compiled bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def btc():
    """The daily BTC frame built from the shipped real data (data/)."""
    from central.market import load_btc_daily

    return load_btc_daily()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real compiled bundle (5 small models: 20 trees each), built once per session."""
    from central.fixed_bundle import build_fixed_bundle

    return build_fixed_bundle(tmp_path_factory.mktemp("bundle") / "b", rounds=20)


@pytest.fixture
def bundle_copy(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle that a test may tamper with."""
    import shutil

    dest = tmp_path / "b"
    shutil.copytree(bundle_dir, dest)
    return dest
