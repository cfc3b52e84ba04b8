"""The demo API's dataset: deterministic records for every day, from a seed.

The same (seed, day) always gives the same records, so tests compare the
warehouse with this generator exactly.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from rl_pipeline.demo_api.faults import Faults

NAMES = [
    "Zoë Ångström",
    "José Núñez",
    "Łukasz Żółć",
    "Björk Guðmundsdóttir",
    "李雷",
    "Nguyễn Văn An",
    "Ολυμπία Παππά",
    "Сергей Иванов",
    "Ada Lovelace",
    'O\'Brien "Bo"',
]
COUNTRIES = ["DE", "FR", "PL", "IS", "CN", "VN", "GR", "UA", "GB", "IE"]
STATUSES = ["paid", "pending", "failed", "refunded"]
TAGS = ["new", "vip", "gift", "b2b", "promo", "repeat"]
NOTES = ["🚚 delivered", "call before delivery", "café au lait", "fragile; handle with care", "™ ©"]


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@lru_cache(maxsize=128)
def _cached(seed: int, day: date, count: int | None = None) -> tuple[dict[str, Any], ...]:
    rng = random.Random(f"{seed}:{day.isoformat()}")
    roll = rng.random()
    if count is not None:
        pass  # a size forced by a switch (Faults.huge_day)
    elif roll < 0.08:
        count = 0
    elif roll < 0.16:
        count = rng.randint(1001, 1500)
    else:
        count = rng.randint(1, 400)
    start = day_start(day)
    offsets = sorted(rng.randrange(86_400_000) for _ in range(count))
    return tuple(
        {
            "id": f"evt_{day:%Y%m%d}_{i:05d}",
            "created_at": (start + timedelta(milliseconds=ms))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "amount": round(rng.uniform(0, 5000), 2),
            "quantity": rng.randint(1, 50),
            "is_refund": rng.random() < 0.1,
            "status": rng.choice(STATUSES),
            "customer": {"name": rng.choice(NAMES), "country": rng.choice(COUNTRIES), "tier": rng.randint(1, 3)},
            "tags": rng.sample(TAGS, k=rng.randint(0, 3)),
            "note": rng.choice(NOTES) if rng.random() < 0.4 else None,
        }
        for i, ms in enumerate(offsets)
    )


def served_records(seed: int, day: date, faults: Faults | None = None) -> Sequence[dict[str, Any]]:
    """What the server serves for `day`: shared, cached records, not to be changed (no copy per request)."""
    if faults is None:
        return _cached(seed, day)
    return faults.apply_to_day(day, _cached(seed, day, faults.huge_day_records if faults.huge_day == day else None))


def day_records(seed: int, day: date, faults: Faults | None = None) -> list[dict[str, Any]]:
    """Every record created on `day` (UTC), ordered by `created_at`, with any data faults: copies."""
    return [dict(r) for r in served_records(seed, day, faults)]


def range_records(seed: int, start: datetime, end: datetime, faults: Faults | None = None) -> list[dict[str, Any]]:
    """Every record with start <= created_at < end (shared records, as served_records)."""
    out: list[dict[str, Any]] = []
    day = start.date()
    while day_start(day) < end:
        for record in served_records(seed, day, faults):
            created = datetime.fromisoformat(record["created_at"])
            if start <= created < end:
                out.append(record)
        day += timedelta(days=1)
    return out
