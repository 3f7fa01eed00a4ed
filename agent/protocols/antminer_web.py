"""Stock Antminer web CGI (X19/X21 "modern" UI): JSON over HTTP with digest auth.

Endpoints are ``/cgi-bin/<name>.cgi`` (protocols.md §1.4). Reads are retried like any
query; ``set_miner_conf`` is not re-sent once it may have arrived, because some firmware
restarts bmminer before answering.
"""

from __future__ import annotations

import json
from typing import Any

from agent.errors import MinerCommandError
from agent.protocols import quirks
from agent.protocols.base import BaseProtocol, RetryPolicy
from agent.transports.http import HttpTransport

#: Reply codes of `set_miner_conf` seen in a third-party write-up ("M000" = OK); unverified,
#: so only an explicit error marker is treated as failure.
SET_CONF_OK_STATS = "success"


class AntminerWebProtocol(BaseProtocol):
    """CGI commands on one stock Antminer."""

    def __init__(self, transport: HttpTransport, retry: RetryPolicy | None = None) -> None:
        super().__init__(transport.host, retry)
        self.transport = transport

    async def get(self, name: str) -> dict[str, Any]:
        """GET ``/cgi-bin/<name>.cgi`` and return the decoded JSON object."""
        path = f"/cgi-bin/{name}.cgi"

        async def op() -> dict[str, Any]:
            return quirks.decode(await self.transport.request("GET", path), self.host).data

        return await self.query(op, what=name)

    async def post(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON to ``/cgi-bin/<name>.cgi``; raise if the reply says it failed."""
        path = f"/cgi-bin/{name}.cgi"

        async def op() -> dict[str, Any]:
            raw = await self.transport.request("POST", path, json_body=body)
            reply = quirks.decode(raw, self.host).data
            stats = reply.get("stats")
            if isinstance(stats, str) and stats.lower() not in (SET_CONF_OK_STATS, ""):
                raise MinerCommandError(
                    self.host, reply.get("code"), f"{name}: {json.dumps(reply)[:200]}"
                )
            return reply

        return await self.query(op, what=name, idempotent=False)
