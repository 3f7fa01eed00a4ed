"""Wire-test hygiene: every test must leave no task behind (aioesphomeapi's rule)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.credentials import Credentials
from agent.protocols.base import RetryPolicy
from agent.transports.base import Timeouts

#: Short timeouts for tests, passed by constructor (never by patching constants).
FAST = Timeouts(connect_s=0.5, read_s=0.5, deadline_s=1.5)
#: One retry, with a backoff too short to slow the suite.
QUICK_RETRY = RetryPolicy(attempts=2, backoff_s=0.01, backoff_max_s=0.02)
ANTMINER_CREDS = Credentials("root", "root")
WHATSMINER_CREDS = Credentials("admin", "s3cret-pw")
V3_CREDS = Credentials("super", "v3-pass")


@pytest.fixture(autouse=True)
async def no_lingering_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running after its own cleanup."""
    before = asyncio.all_tasks()
    yield
    for _ in range(5):
        left = {t for t in asyncio.all_tasks() - before if not t.done()}
        left.discard(asyncio.current_task())  # type: ignore[arg-type]
        if not left:
            return
        await asyncio.sleep(0.01)
    names = sorted(t.get_name() for t in left)
    pytest.fail(f"lingering tasks: {names}")
