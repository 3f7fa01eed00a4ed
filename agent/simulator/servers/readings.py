"""Small helpers turning one physics reading into the derived counters firmware reports.

Shared by every firmware's reply builders so that the same instant looks the same through
every endpoint (RPC, web, V3). Derivations cite the captured replies they mimic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

#: Pool share difficulty of the captured S19 Pro (fixtures antminer/v2020/pools.json "524K").
SHARE_DIFFICULTY = 524288
#: One getwork per ~12.75 s in the captured S19 Pro summary (3957 getworks in 50474 s).
GETWORK_INTERVAL_S = 12.75
#: Discarded work per getwork in the same capture (4528177 / 3957).
DISCARDED_PER_GETWORK = 1144
#: Bitcoin's block interval: Network Blocks in the capture (82 in 50474 s) tracks it.
BLOCK_INTERVAL_S = 600
#: Diff-1 shares per GH of hashrate per minute: 60e9 / 2**32 (cgminer "Work Utility").
DIFF1_PER_GH_MIN = 60e9 / 2**32


def ghs(ths: float | None) -> float:
    """TH/s to GH/s, two decimals like bmminer."""
    return round(float(ths or 0.0) * 1000.0, 2)


def mhs(ths: float | None) -> float:
    """TH/s to MH/s, two decimals like btminer/BOSminer."""
    return round(float(ths or 0.0) * 1_000_000.0, 2)


def counters(reading: Any, elapsed: int) -> dict[str, Any]:
    """Cgminer work counters consistent with the reading and the process uptime."""
    el = max(int(elapsed), 0)
    getworks = int(el / GETWORK_INTERVAL_S)
    discarded = getworks * DISCARDED_PER_GETWORK
    accepted = int(reading.accepted)
    rejected = int(reading.rejected)
    total = accepted + rejected
    ghs_av = ghs(reading.hashrate_avg_ths)
    return {
        "getworks": getworks,
        "discarded": discarded,
        "local_work": discarded + getworks,
        "network_blocks": el // BLOCK_INTERVAL_S,
        "diff_accepted": float(accepted * SHARE_DIFFICULTY),
        "diff_rejected": float(rejected * SHARE_DIFFICULTY),
        "best_share": accepted * SHARE_DIFFICULTY * 3 + 1,
        "utility": round(accepted / el * 60.0, 2) if el else 0.0,
        "work_utility": round(ghs_av * DIFF1_PER_GH_MIN, 2),
        "total_mh": round(ghs_av * 1000.0 * el, 1),
        "rejected_pct": round(100.0 * rejected / total, 4) if total else 0.0,
        "hw_pct": round(100.0 * reading.hw_errors / (total + reading.hw_errors), 4)
        if total + reading.hw_errors
        else 0.0,
    }


def live_boards(reading: Any) -> list[Any]:
    """Return the boards that are present and answering."""
    return [b for b in reading.boards if getattr(b, "alive", True)]


def chip_string(board: Any) -> str:
    """Return the per-chip status string: ``o`` ok, ``x`` bad (bmminer ``chain_acs``)."""
    status = getattr(board, "chip_status", None)
    if isinstance(status, str) and status:
        chips = status.replace(" ", "")
        if chips.strip("ox"):  # anything unexpected counts as a bad chip
            chips = "".join("o" if ch == "o" else "x" for ch in chips)
        return chips
    ok = int(board.chips_ok)
    return "o" * ok + "x" * max(int(board.chips_total) - ok, 0)


def grouped(chips: str, size: int) -> str:
    """`` ooo ooo ...`` grouping as bmminer prints it (leading space per group)."""
    return "".join(" " + chips[i : i + size] for i in range(0, len(chips), size))


def mean(values: list[float], default: float = 0.0) -> float:
    """Arithmetic mean, ``default`` for no values."""
    return sum(values) / len(values) if values else default


def fmt_time(ts: float) -> str:
    """``YYYY-mm-dd HH:MM:SS`` (UTC) as Whatsminer error codes carry it."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def fans(reading: Any) -> list[int]:
    """Fan speeds as integers."""
    return [round(f) for f in reading.fans_rpm]
