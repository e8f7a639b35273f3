"""Throughput of oddjob beside ThreadPoolExecutor, measured in the same run.

    python -m oddjob bench [--jobs N] [--pool-size 5] [--repeat 5] [--quick]

Each workload times submitting N no-op jobs until every one has run (a pool stop
that drains the queue and joins the workers, or collecting every result), with
the pools already started. Figures are medians over the repetitions, with the
ratio of oddjob's rate to ThreadPoolExecutor's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import oddjob

from . import _backend


def noop(*_args: object) -> None:
    """The job: nothing, so that the pool's own overhead is what gets measured."""


def _warm_tpe(executor: ThreadPoolExecutor, size: int) -> None:
    # Start every thread before the clock starts, as oddjob's pool already has.
    for future in [executor.submit(time.sleep, 0.01) for _ in range(size)]:
        future.result()


def oddjob_perform(n: int, size: int) -> float:
    pool = oddjob.Pool("bench", pool_size=size).start()
    perform = oddjob.perform
    start = time.perf_counter()
    for _ in range(n):
        perform("bench", noop)
    pool.stop()
    return time.perf_counter() - start


def tpe_submit(n: int, size: int) -> float:
    executor = ThreadPoolExecutor(size)
    _warm_tpe(executor, size)
    submit = executor.submit
    start = time.perf_counter()
    for _ in range(n):
        submit(noop)
    executor.shutdown(wait=True)
    return time.perf_counter() - start


def oddjob_perform_many(n: int, size: int) -> float:
    pool = oddjob.Pool("bench", pool_size=size).start()
    start = time.perf_counter()
    oddjob.perform_many("bench", range(n), noop)
    pool.stop()
    return time.perf_counter() - start


def tpe_map(n: int, size: int) -> float:
    executor = ThreadPoolExecutor(size)
    _warm_tpe(executor, size)
    start = time.perf_counter()
    for _ in executor.map(noop, range(n)):
        pass
    executor.shutdown(wait=True)
    return time.perf_counter() - start


def oddjob_async_many(n: int, size: int) -> float:
    pool = oddjob.Pool("bench", pool_size=size).start()
    start = time.perf_counter()
    jobs = oddjob.async_perform_many("bench", range(n), noop)
    oddjob.await_many(jobs, timeout=None)
    elapsed = time.perf_counter() - start
    pool.stop()
    return elapsed


def tpe_submit_result(n: int, size: int) -> float:
    executor = ThreadPoolExecutor(size)
    _warm_tpe(executor, size)
    start = time.perf_counter()
    futures = [executor.submit(noop, i) for i in range(n)]
    for future in futures:
        future.result()
    elapsed = time.perf_counter() - start
    executor.shutdown(wait=True)
    return elapsed


Runner = Callable[[int, int], float]

WORKLOADS: list[tuple[str, Runner, str, Runner]] = [
    ("perform", oddjob_perform, "submit", tpe_submit),
    ("perform_many", oddjob_perform_many, "map", tpe_map),
    ("async_perform_many+await_many", oddjob_async_many, "submit+result", tpe_submit_result),
]


def _rate(runner: Runner, n: int, size: int, repeat: int) -> tuple[float, float]:
    rates = [n / runner(n, size) for _ in range(repeat)]
    return statistics.median(rates), (max(rates) - min(rates)) / 2


def _progress(text: str) -> None:
    # One self-erasing status line on a terminal; plain lines when stderr is a file.
    if sys.stderr.isatty():
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)
    elif text:
        print(text, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oddjob",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="jobs/s of oddjob beside ThreadPoolExecutor")
    bench.add_argument("--jobs", type=int, default=100_000, help="jobs per run")
    bench.add_argument("--pool-size", type=int, default=5)
    bench.add_argument("--repeat", type=int, default=5)
    bench.add_argument("--quick", action="store_true", help="fewer jobs and repetitions")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.repeat = min(args.jobs, 50_000), min(args.repeat, 3)

    print(
        f"oddjob {oddjob.__version__}, {_backend.core.IMPLEMENTATION} core; "
        f"pool size {args.pool_size}; median of {args.repeat} runs (± half range)"
    )
    header = (
        f"{'workload':<31}{'oddjob jobs/s':>24}   {'ThreadPoolExecutor':<15}"
        f"{'jobs/s':>20}{'ratio':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, ours, peer_name, peer in WORKLOADS:
        _progress(f"running {name} ...")
        rate, spread = _rate(ours, args.jobs, args.pool_size, args.repeat)
        peer_rate, peer_spread = _rate(peer, args.jobs, args.pool_size, args.repeat)
        _progress("")
        print(
            f"{name:<31}{rate:>13,.0f} ± {spread:<9,.0f}  {peer_name:<15}"
            f"{peer_rate:>9,.0f} ± {peer_spread:<9,.0f}{rate / peer_rate:>7.1f}x"
        )
    return 0
