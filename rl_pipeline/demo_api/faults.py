"""Switches that make the demo API misbehave like real ones do; all off by default.

Random faults draw from one seeded generator, so a test sees the same rates
every run. Data faults (drift, type change, a missing id) are part of the
dataset itself, so tests compute the expected rows with the same switches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import date
from typing import Any


@dataclass
class Faults:
    seed: int = 0  # of the random faults' generator
    error_rate: float = 0.0  # share of requests answered 500/502/503/504
    slow_rate: float = 0.0  # share answered after `slow_seconds`
    slow_seconds: float = 0.5
    hang_rate: float = 0.0  # share that hang for `hang_seconds`, past a client's read timeout
    hang_seconds: float = 30.0
    truncated_rate: float = 0.0  # share answered 200 whose connection drops half way through the body
    html_rate: float = 0.0  # share answered 200 with an HTML error page
    outage_until: float = 0.0  # epoch seconds: until then every request gets 503
    drift_from: date | None = None  # from this day on, records carry a new field `channel`
    type_change_from: date | None = None  # from the middle of this day on, `quantity` is a string ("12 units")
    missing_id_on: date | None = None  # on this day one record has no `id`
    repeat: int = 0  # cursor and Link pages re-serve the previous page's last `repeat` records
    cursor_loop_after: int = 0  # cursor endpoint: after this many pages the cursor leads back to page 1
    huge_day: date | None = None  # this day has `huge_day_records` records (a memory test)
    huge_day_records: int = 500_000
    late_on: date | None = None  # this day grew after it ended: `late_added` new records, `late_changed` edited
    late_added: int = 0
    late_changed: int = 0

    def update(self, changes: dict[str, Any]) -> None:
        """Apply switches from JSON (dates as YYYY-MM-DD); an unknown name or a value of the wrong type is
        a ValueError naming it, and then nothing is changed."""
        known = {f.name: f.type for f in fields(self)}
        checked = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            checked[name] = _typed(name, known[name], value)
        for name, value in checked.items():
            setattr(self, name, value)

    def apply_to_day(self, day: date, records: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        """The data faults for `day`: changed copies where a fault applies, `records` itself otherwise."""
        if self.drift_from and day >= self.drift_from:
            records = [{**r, "channel": ("web", "app", "pos")[int(r["id"][-5:]) % 3]} for r in records]
        if self.type_change_from and day >= self.type_change_from:
            first = len(records) // 2 if day == self.type_change_from else 0
            records = [{**r, "quantity": f"{r['quantity']} units"} if i >= first else r for i, r in enumerate(records)]
        if self.late_on == day:
            records = [
                *({**r, "status": "refunded", "is_refund": True} if i < self.late_changed else r
                  for i, r in enumerate(records)),
                *({**(records[-1] if records else {}), "id": f"evt_{day:%Y%m%d}_late{i:03d}",
                   "created_at": f"{day.isoformat()}T23:59:59.{i:03d}Z"} for i in range(self.late_added)),
            ]  # fmt: skip
        if self.missing_id_on == day and records:
            middle = len(records) // 2
            records = [
                *records[:middle],
                {k: v for k, v in records[middle].items() if k != "id"},
                *records[middle + 1 :],
            ]
        return records


def _typed(name: str, kind: object, value: Any) -> Any:
    """`value` as the field's type (`float`, `int`, `date | None`, as annotated), or a ValueError."""
    if kind == "date | None":
        try:
            return None if value is None else date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"fault {name!r} must be a date YYYY-MM-DD or null, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"fault {name!r} must be a number of at least 0, got {value!r}")
    if kind == "int" and value != int(value):
        raise ValueError(f"fault {name!r} must be a whole number, got {value!r}")
    if name.endswith("_rate") and value > 1:
        raise ValueError(f"fault {name!r} is a share of requests, 0..1, got {value!r}")
    return int(value) if kind == "int" else float(value)
