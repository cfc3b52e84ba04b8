"""Grants this process has taken and not yet written to a socket, per rate budget.

A write later than its slack pushes the next grant back (`EndpointGuard.written`),
but only once it has happened. A request written more than a pace interval
after its grant (its thread descheduled while other processes start up on the
same cores, or a new connection's handshake) would let the next worker's grant,
on time, reach a server with no burst just before or just after it. So before
a thread takes a grant, it waits while another thread of this process holds
one that is not yet written, for `patience` seconds after that grant at most
(a request stuck connecting must not hold everyone back); the write it waited
for has pushed the budget back by then.

Only this process's threads wait for each other: another process's late write
still acts through the store, after it has happened. Patience is measured on
the machine's monotonic clock: it bounds a wait for a thread to write, not a
place in the schedule.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

PATIENCE = 1.0  # seconds to wait for another thread's grant to be written: a slow TLS handshake, not a hung host


class Unwritten:
    """Each thread's latest grant, per budget, until the thread says it is written."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._granted: dict[Hashable, dict[int, float]] = {}  # budget -> thread id -> when granted (monotonic)

    @contextmanager
    def turn(self, budget: Hashable, patience: float = PATIENCE) -> Iterator[Callable[[], None]]:
        """Hold this process's turn to take a grant from `budget`: entered once no other thread's grant from it
        is unwritten (or each has waited `patience` seconds since it was taken), and held until the block
        ends, so that no other thread is granted in between. Call the function it yields once granted."""
        me = threading.get_ident()
        with self._changed:
            while True:
                now = time.monotonic()
                granted = self._granted.get(budget, {})
                pending = [at for thread, at in granted.items() if thread != me and now - at < patience]
                if not pending:
                    break
                self._changed.wait(min(pending) + patience - now)
            yield lambda: self._granted.setdefault(budget, {}).__setitem__(me, time.monotonic())

    def written(self, budget: Hashable) -> None:
        """This thread's grant from `budget` is written (or its request failed before it was)."""
        with self._changed:
            if self._granted.get(budget, {}).pop(threading.get_ident(), None) is not None:
                self._changed.notify_all()


UNWRITTEN = Unwritten()  # one per process: every client and guard in it on one budget waits for the others
