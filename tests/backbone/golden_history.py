"""A fixed, hand-written poll history for the golden feature vector (no randomness)."""

from __future__ import annotations

T0 = 1_750_000_000.0
#: Windows of the golden vector: the shortest and a longer one.
GOLDEN_WINDOWS = ("5m", "1h")


def golden_history() -> list[dict[str, float]]:
    """140 polls, 30 s apart with a 20-minute outage, a restart and a missing power reading."""
    nan = float("nan")
    rows = []
    ts = T0
    up = hw = acc = rej = 0.0
    for i in range(140):
        ts += 1200.0 if i == 70 else 30.0
        if i == 100:
            up = hw = acc = rej = 0.0  # restart: counters and uptime reset
        up += 30.0
        hw += i % 3
        acc += 20 + i % 7
        rej += i % 2
        rows.append(
            {
                "ts": ts,
                "hashrate_ths": 100.0 + (i % 11) * 0.5 - (5.0 if 90 <= i < 95 else 0.0),
                "expected_ths": 104.0,
                "power_w": nan if i % 17 == 0 else 3000.0 + (i % 5) * 10.0,
                "rated_power_w": 3068.0,
                "chip_temp_max_c": 75.0 + 0.05 * i,
                "chip_temp_mean_c": 70.0 + 0.04 * i,
                "board_temp_max_c": 62.0 + (i % 4),
                "board_temp_mean_c": 60.0 + (i % 4) * 0.5,
                "chips": 378.0 if i < 120 else 376.0,
                "expected_chips": 378.0,
                "boards_hashing": 3.0,
                "expected_boards": 3.0,
                "fans_ok": 4.0 if i % 29 else 3.0,
                "expected_fans": 4.0,
                "fan_rpm_mean": 5000.0 + (i % 9) * 25.0,
                "hw_errors": hw,
                "accepted": acc,
                "rejected": rej,
                "uptime_s": up,
                "is_mining": 1.0,
            }
        )
    return rows
