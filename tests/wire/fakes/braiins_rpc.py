"""Synthetic bosminer cgminer-compatible RPC replies (no 4028 capture exists in shared/fixtures).

Envelopes and key names follow pyasic's BOSMiner backend (`summary` MHS 1m, `devs` Nominal
MHS, `devdetails` Chips/Model, `temps` Board/Chip, `fans` RPM, `tunerstatus`
ApproximateMinerPowerConsumption/PowerLimit). Numbers are converted from the real BOS+ 25.11
gRPC capture in shared/fixtures/asic-rs/braiins/v25_11 (S19 XP, 3×110 chips, 4 fans).
"""

from __future__ import annotations

import json
from typing import Any

_WHEN = 1776446537
_DESC = "BOSer bosminer-plus-tuner 25.11"

#: (chain id, MHS 1m, MHS 5s, nominal MHS, board °C, chip °C, MHz) from miner_hw_hashboards.json
BOARDS = (
    (1, 41443653.15, 44372605.35, 40139961.19, 56.5, 71.5, 406.25),
    (2, 39621632.11, 41175047.49, 39940710.36, 54.5, 69.5, 402.73),
    (3, 38781485.93, 38244629.48, 39887174.55, 56.0, 71.0, 401.53),
)
FANS_RPM = (5879, 5819, 5909, 5909)  # cooling_state.json
POWER_W = 2472  # miner_stats.json approximated_consumption
POWER_TARGET_W = 3031  # configuration_miner.json tuner.power_target


def _status(code: int, msg: str) -> list[dict[str, Any]]:
    return [{"STATUS": "S", "When": _WHEN, "Code": code, "Msg": msg, "Description": _DESC}]


def replies() -> dict[str, bytes]:
    """Command → reply bytes for a BOS+ S19 XP."""
    summary = {
        "STATUS": _status(11, "Summary"),
        "SUMMARY": [
            {
                "Elapsed": 20359,
                "MHS av": 143386982.75,
                "MHS 5s": 121015409.03,
                "MHS 1m": 119995007.79,
                "MHS 15m": 120954307.31,
                "Accepted": 5048,
                "Rejected": 10,
                "Hardware Errors": 0,
            }
        ],
        "id": 1,
    }
    devs = {
        "STATUS": _status(9, "3 ASC(s)"),
        "DEVS": [
            {
                "ASC": i - 1,
                "ID": i,
                "Enabled": "Y",
                "Status": "Alive",
                "MHS 1m": m1,
                "MHS 5s": m5,
                "Nominal MHS": nom,
            }
            for i, m1, m5, nom, *_ in BOARDS
        ],
        "id": 1,
    }
    devdetails = {
        "STATUS": _status(69, "Device Details"),
        "DEVDETAILS": [
            {
                "DEVDETAILS": i - 1,
                "ID": i,
                "Driver": "bitmain",
                "Chips": 110,
                "Frequency": mhz,
                "Model": "Antminer S19 XP",
            }
            for i, *_, mhz in BOARDS
        ],
        "id": 1,
    }
    temps = {
        "STATUS": _status(201, "3 Temp(s)"),
        "TEMPS": [
            {"TEMPS": i - 1, "ID": i, "Board": board, "Chip": chip}
            for i, _, _, _, board, chip, _ in BOARDS
        ],
        "id": 1,
    }
    fans = {
        "STATUS": _status(202, "4 Fan(s)"),
        "FANS": [{"FANS": i, "ID": i, "RPM": rpm, "Speed": 100} for i, rpm in enumerate(FANS_RPM)],
        "id": 1,
    }
    tuner = {
        "STATUS": _status(203, "Tuner Status"),
        "TUNERSTATUS": [
            {
                "PowerLimit": POWER_TARGET_W,
                "ApproximateMinerPowerConsumption": POWER_W,
                "DynamicPowerScaling": "Disabled",
                "TunerChainStatus": [{"HashchainIndex": i, "Status": "Stable"} for i, *_ in BOARDS],
            }
        ],
        "id": 1,
    }
    pools = {
        "STATUS": _status(7, "2 Pool(s)"),
        "POOLS": [
            {
                "POOL": 0,
                "URL": "stratum+tcp://example.pool.com:3333",
                "User": "asic_rs.test",
                "Status": "Alive",
                "Accepted": 5048,
                "Rejected": 10,
                "Stratum Active": True,
            },
            {
                "POOL": 1,
                "URL": "stratum+tcp://example.pool2.com:3333",
                "User": "asic_rs.test",
                "Status": "Alive",
                "Accepted": 0,
                "Rejected": 0,
                "Stratum Active": False,
            },
        ],
        "id": 1,
    }
    version = {
        "STATUS": _status(22, "BOSminer versions"),
        "VERSION": [{"BOSer": "2025-11-21-0-eb658dcd-25.11-plus", "API": "3.7"}],
        "id": 1,
    }
    return {
        name: json.dumps(reply).encode()
        for name, reply in (
            ("summary", summary),
            ("devs", devs),
            ("devdetails", devdetails),
            ("temps", temps),
            ("fans", fans),
            ("tunerstatus", tuner),
            ("pools", pools),
            ("version", version),
        )
    }
