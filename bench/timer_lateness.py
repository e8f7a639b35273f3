"""Timer lateness: how long after its due time a timer's job starts, on an idle pool.

    python bench/timer_lateness.py [--timers 1000] [--spread 2.0] [--workers 4]

Sets the timers all at once, due at evenly spaced times over ``--spread`` seconds (set in
shuffled order, so that the heap does real work); each job records the clock when it
starts, minus its due time. Prints p50, p99 and the maximum in milliseconds, for
perform_after (monotonic clock) and perform_at (wall clock), on each core available.
The due time is read just before the call that sets the timer, so the figures include
the call itself and the hand-off to a worker: they are what a user would see.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime
from types import ModuleType

import oddjob
from oddjob import _backend, _core_py

# The first timer is due this long after the setting starts: setting 1,000 timers takes
# a few milliseconds, which must not count as lateness.
LEAD = 0.2
# How long to wait past the last due time before giving up on missing jobs.
GRACE = 10.0


class Lateness:
    """Collects job start minus due time, in seconds; signals when all are in."""

    def __init__(self, expected: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.samples: list[float] = []
        self._expected = expected
        self._lock = threading.Lock()
        self.done = threading.Event()

    def job(self, due: float) -> None:
        late = self.clock() - due
        with self._lock:
            self.samples.append(late)
            if len(self.samples) == self._expected:
                self.done.set()


def measure(kind: str, timers: int, spread: float) -> list[float]:
    """Lateness samples (seconds) of ``timers`` timers of ``kind`` on the pool "lateness"."""
    clock = time.monotonic if kind == "perform_after" else time.time
    lateness = Lateness(timers, clock)
    offsets = [LEAD + spread * i / timers for i in range(timers)]
    random.shuffle(offsets)
    for offset in offsets:
        due = clock() + offset
        if kind == "perform_after":
            oddjob.perform_after(offset, "lateness", lateness.job, due)
        else:
            oddjob.perform_at(datetime.fromtimestamp(due), "lateness", lateness.job, due)
    if not lateness.done.wait(LEAD + spread + GRACE):
        raise SystemExit(f"{kind}: only {len(lateness.samples)} of {timers} timers fired")
    return lateness.samples


def cores() -> list[ModuleType]:
    compiled = _backend.compiled()
    return [_core_py] if compiled is None else [compiled, _core_py]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timers", type=int, default=1000, help="timers per run (1000)")
    parser.add_argument("--spread", type=float, default=2.0, help="seconds they span (2.0)")
    parser.add_argument("--workers", type=int, default=4, help="pool size (4)")
    args = parser.parse_args()

    print(f"{args.timers} timers over {args.spread} s, pool of {args.workers} idle workers")
    print(f"{'core':<10}{'call':<15}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for core in cores():
        with _backend.use(core), oddjob.Pool("lateness", pool_size=args.workers):
            for kind in ("perform_after", "perform_at"):
                samples = measure(kind, args.timers, args.spread)
                centiles = statistics.quantiles(samples, n=100, method="inclusive")
                p50, p99, worst = (1000 * s for s in (centiles[49], centiles[98], max(samples)))
                print(f"{core.IMPLEMENTATION:<10}{kind:<15}{p50:>9.3f}{p99:>9.3f}{worst:>9.3f}")


if __name__ == "__main__":
    main()
