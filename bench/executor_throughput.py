"""oddjob.Executor beside concurrent.futures.ThreadPoolExecutor: no-op jobs per second.

    python bench/executor_throughput.py [--jobs 100000] [--window 1000] [--workers N]
                                        [--repeat 5] [--pure]

Workloads, each timed on both executors with every worker thread already started, the
repetitions of the two interleaved so that a noisy machine hurts both alike:

- submit+result: submit ``--window`` no-op jobs, then take each result; repeat up to
  ``--jobs``. The window keeps the live Futures few, so the figure is the executor's cost
  rather than the garbage collector's.
- round trip: submit one job and wait for its result, ``--jobs / 10`` times (the latency
  of waking a worker and being woken, mostly).
- map: ``list(executor.map(noop, range(jobs)))``.

Prints the median rate of each and the ratio oddjob / ThreadPoolExecutor. ``--pure`` runs
oddjob on its pure-Python core. The last line is the ceiling of any executor that returns
``concurrent.futures.Future``s: the same windows of Futures created, set running, given
their result and read, all on one thread, with no executor and no thread hand-off at all.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import oddjob
from oddjob import _backend, _core_py

Workload = Callable[[ThreadPoolExecutor, int, int], None]


def noop(*_args: object) -> None:
    """The job: nothing, so that what is measured is the executor's own cost."""


def submit_result(executor: ThreadPoolExecutor, jobs: int, window: int) -> None:
    submit = executor.submit
    for _ in range(jobs // window):
        futures = [submit(noop) for _ in range(window)]
        for future in futures:
            future.result()


def round_trip(executor: ThreadPoolExecutor, jobs: int, window: int) -> None:
    submit = executor.submit
    for _ in range(jobs):
        submit(noop).result()


def map_all(executor: ThreadPoolExecutor, jobs: int, window: int) -> None:
    for _ in executor.map(noop, range(jobs)):
        pass


WORKLOADS: dict[str, tuple[Workload, float]] = {
    # name: (run, share of --jobs it runs)
    "submit+result": (submit_result, 1.0),
    "round trip": (round_trip, 0.1),
    "map": (map_all, 1.0),
}


def warmed(factory: Callable[[], ThreadPoolExecutor], workers: int) -> ThreadPoolExecutor:
    """An executor with all its threads started (they start lazily in both)."""
    executor = factory()
    barrier = threading.Barrier(workers, timeout=30)
    for future in [executor.submit(barrier.wait) for _ in range(workers)]:
        future.result(30)
    return executor


def futures_alone(jobs: int, window: int) -> float:
    """submit+result without an executor: only what each job's Future costs."""
    start = time.perf_counter()
    for _ in range(jobs // window):
        futures: list[Future[None]] = [Future() for _ in range(window)]
        for future in futures:
            future.set_running_or_notify_cancel()
            noop()
            future.set_result(None)
        for future in futures:
            future.result()
    return jobs / (time.perf_counter() - start)


def rate(run: Workload, executor: ThreadPoolExecutor, jobs: int, window: int) -> float:
    start = time.perf_counter()
    run(executor, jobs, window)
    return jobs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=None, help="default: TPE's default")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pure", action="store_true", help="oddjob on its pure-Python core")
    args = parser.parse_args()
    workers = args.workers or ThreadPoolExecutor()._max_workers
    core = _core_py if args.pure else _backend.core
    with _backend.use(core):
        ours = warmed(lambda: oddjob.Executor(workers), workers)
    theirs = warmed(lambda: ThreadPoolExecutor(workers), workers)
    print(f"{workers} workers, {args.jobs} jobs, window {args.window}, core {core.IMPLEMENTATION}")
    print(f"{'workload':15} {'oddjob/s':>10} {'TPE/s':>10} {'ratio':>6}")
    try:
        for name, (run, share) in WORKLOADS.items():
            jobs = max(args.window, int(args.jobs * share))
            samples: dict[str, list[float]] = {"ours": [], "theirs": []}
            for _ in range(args.repeat):
                samples["theirs"].append(rate(run, theirs, jobs, args.window))
                samples["ours"].append(rate(run, ours, jobs, args.window))
            a = statistics.median(samples["ours"])
            b = statistics.median(samples["theirs"])
            print(f"{name:15} {a:10.0f} {b:10.0f} {a / b:6.2f}")
            if run is submit_result:
                ceiling = statistics.median(
                    futures_alone(jobs, args.window) for _ in range(args.repeat)
                )
                print(f"{'  Futures alone':15} {ceiling:10.0f} {'':10} {ceiling / b:6.2f}")
    finally:
        ours.shutdown()
        theirs.shutdown()


if __name__ == "__main__":
    main()
