"""The all-or-nothing rule by which a store decides several limits at once, and how it keeps them.

Pure: the Python-side stores (memory, SQLite) run it inside their lock; the
Redis store runs its Lua mirror.
"""

from __future__ import annotations

from collections.abc import Sequence

from rl_pipeline.limits.algorithms import Limit, decide

Budget = dict[str, list[float]]  # limit name -> algorithm state; PAUSE -> [until]
PAUSE = "pause"


def decide_budget(
    budget: Budget, limits: Sequence[tuple[str, Limit]], now: float, cost: float
) -> tuple[float, Budget | None]:
    """The all-or-nothing rule of the Python-side stores.

    Returns (0.0, the new states by name) when every limit grants, else (wait, None).
    """
    paused = budget.get(PAUSE)
    if paused and now < paused[0]:
        return paused[0] - now, None
    new_states, wait, granted = {}, 0.0, True
    for name, limit in limits:
        verdict = decide(budget.get(name), limit, now, cost)
        if not verdict.granted:
            granted, wait = False, max(wait, verdict.wait)
        new_states[name] = verdict.state
    return (0.0, new_states) if granted else (wait, None)


def paused_budget(budget: Budget, until: float) -> Budget:
    """`budget` with its pause lengthened to `until` (never shortened)."""
    current = budget.get(PAUSE, [until])[0]
    return {**budget, PAUSE: [max(current, until)]}


def encode_budget(budget: Budget) -> str:
    """`name=1.5,1700000000.25|pause=...`: exact (repr round-trips floats), and
    several times cheaper than JSON, which matters on every request."""
    return "|".join(f"{name}={','.join(map(repr, state))}" for name, state in budget.items())


def decode_budget(text: str | None) -> Budget:
    budget: Budget = {}
    for part in text.split("|") if text else ():
        name, _, values = part.rpartition("=")
        budget[name] = [float(x) for x in values.split(",")] if values else []
    return budget
