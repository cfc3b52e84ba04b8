"""State shared by many machines, in Redis: every decision is one Lua script."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.resources import files

import redis

from rl_pipeline.clock import Clock, SystemClock
from rl_pipeline.limits.algorithms import Limit
from rl_pipeline.state.base import StateStore, T, redact_url

_ACQUIRE = files("rl_pipeline.state").joinpath("redis_store.lua").read_text()
# Pauses only lengthen: keep the later of the stored and the new end.
_PAUSE = """
if tonumber(ARGV[1]) > tonumber(redis.call("GET", KEYS[1]) or "0") then
  -- Pauses are capped far below a day by their setters; the key's own end keeps a stray one from sticking.
  redis.call("SET", KEYS[1], ARGV[1], "EX", 86400)
end
"""


def _key(namespace: str, name: str) -> str:
    # {namespace} is a hash tag: one namespace's keys share a cluster slot, as one script needs.
    return f"rl:{{{namespace}}}:{name}"


class RedisStore(StateStore):
    """Atomic because Redis runs one script at a time; limiter keys expire
    once they no longer matter, plain values never do.

    Hosts' clocks disagree; a shared budget must not. Every time a rate
    decision or a pause is given is moved onto the Redis server's clock, by
    the offset between `clock` and the server measured when the store opens
    (to within half a round trip), so a host whose clock runs ahead is not
    granted early. Values kept by `update` (breaker, quota) carry the
    caller's own times.
    """

    def __init__(self, url: str, clock: Clock | None = None) -> None:
        self.url = redact_url(url)
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._pause = self._redis.register_script(_PAUSE)
        self.offset = self._server_offset(clock or SystemClock())

    def _server_offset(self, clock: Clock) -> float:
        """Server time minus `clock`'s time, from the fastest of a few round trips."""
        samples = []
        for _ in range(5):
            sent = clock.now()
            seconds, microseconds = self._redis.time()
            received = clock.now()
            samples.append((received - sent, seconds + microseconds / 1e6 - (sent + received) / 2))
        return min(samples)[1]

    def acquire(
        self, namespace: str, limits: Sequence[tuple[str, Limit]], cost: float, clock: Clock, *, dry_run: bool = False
    ) -> float:
        keys = [_key(namespace, f"limit:{name}") for name, _ in limits] + [_key(namespace, "pause")]
        args: list[float | str] = [repr(float(cost)), "1" if dry_run else "0"]
        for _, limit in limits:
            args += [*limit.as_args(), limit.ttl]
        # Read last, just before the script goes: the gap to the decision is one round trip.
        return float(self._acquire(keys=keys, args=[repr(clock.now() + self.offset), *args]))

    def pause(self, namespace: str, until: float) -> None:
        self._pause(keys=[_key(namespace, "pause")], args=[repr(until + self.offset)])

    def update(self, key: str, fn: Callable[[str | None], tuple[str | None, T]]) -> T:
        # Optimistic: WATCH the key, compute, MULTI/EXEC; redis-py retries if another client wrote it meanwhile.
        def attempt(pipe: redis.client.Pipeline) -> T:
            value, verdict = fn(pipe.get(key))
            pipe.multi()
            if value is None:
                pipe.delete(key)
            else:
                pipe.set(key, value)
            return verdict

        return self._redis.transaction(attempt, key, value_from_callable=True)

    def get(self, key: str) -> str | None:
        return self._redis.get(key)

    def set(self, key: str, value: str) -> None:
        self._redis.set(key, value)

    def delete(self, key: str) -> None:
        self._redis.delete(key)

    def close(self) -> None:
        self._redis.close()
