"""The scaling section of ``python -m oddjob bench``: how oddjob uses more than one core.

On a free-threaded CPython (GIL disabled) threads run Python code in parallel, so a pool
of CPU-bound jobs can beat the single-thread loop. This section measures it:

- CPU-bound jobs of ~10 µs and ~100 µs of pure-Python work, with 1, 2 and 4 workers:
  oddjob's ``perform_many`` and ``async_perform_many`` + ``await_many`` beside
  ``ThreadPoolExecutor.map``, each as a speed-up over the bare loop running the same
  jobs one after the other on one thread (above 1x: the pool wins).
- no-op ``perform`` into a pool of 2 workers from 1 and from 2 submitting threads, in
  jobs per second: what contention on the pool's queue costs.

Every figure is the median of the repetitions, peers taking turns within a repetition,
as in the main table. It runs by default when the GIL is disabled; ``--scaling`` runs it
on a GIL build too, where it shows the GIL serialising the work.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TextIO

import oddjob

from ._bench_peers import (
    PRESTART_TIMEOUT,
    ExecutorPeer,
    Job,
    LoopPeer,
    OddjobPeer,
    noop,
    quiet_gc,
)

__all__ = [
    "SCALING_WORKERS",
    "ScalingResult",
    "gil_is_enabled",
    "measure_scaling",
    "scaling_lines",
    "show_progress",
    "wanted",
]

SCALING_WORKERS: Final = (1, 2, 4)
# (label, seconds per job, share of --jobs each run gets)
SCALING_JOBS: Final = (("10 µs", 10e-6, 1.0), ("100 µs", 100e-6, 1 / 10))
# The submitters row: no-op jobs into a pool of this many workers.
SUBMITTERS: Final = (1, 2)
SUBMITTER_POOL_SIZE: Final = 2
# No-op jobs per submitters run, as a multiple of --jobs: the runs are short otherwise.
SUBMITTER_JOBS_SCALE: Final = 20
MIN_SCALING_JOBS: Final = 20

# The rows of the speed-up table: (label, peer, method of the Peer interface).
_ROWS: Final = (
    ("oddjob perform_many", "oddjob", "perform_many"),
    ("oddjob async_perform_many+await_many", "oddjob", "async_many"),
    ("ThreadPoolExecutor.map", "tpe", "perform_many"),
)


@dataclass
class ScalingResult:
    """What the section measured: seconds per run, to be turned into ratios."""

    gil_enabled: bool
    repeat: int
    # job label -> (jobs per run, seconds per call of the job)
    jobs: dict[str, tuple[int, float]] = field(default_factory=dict)
    # job label -> the loop's seconds per run, one per repetition
    loop: dict[str, list[float]] = field(default_factory=dict)
    # (job label, row label, workers) -> seconds per run, one per repetition
    pools: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    submitter_jobs: int = 0
    # submitters -> jobs per second, one per repetition
    submitters: dict[int, list[float]] = field(default_factory=dict)

    def speedup(self, job: str, row: str, workers: int) -> float:
        return statistics.median(self.loop[job]) / statistics.median(
            self.pools[(job, row, workers)]
        )

    def jobs_per_second(self, submitters: int) -> float:
        return statistics.median(self.submitters[submitters])

    def to_json(self) -> dict[str, Any]:
        return {
            "gil_enabled": self.gil_enabled,
            "repeat": self.repeat,
            "workers": list(SCALING_WORKERS),
            "jobs": {
                label: {"jobs": n, "seconds_per_job": seconds}
                for label, (n, seconds) in self.jobs.items()
            },
            "speedup_over_loop": [
                {
                    "job": job,
                    "peer": row,
                    "workers": workers,
                    "speedup": round(self.speedup(job, row, workers), 3),
                }
                for (job, row, workers) in self.pools
            ],
            "submitters": {
                "pool_size": SUBMITTER_POOL_SIZE,
                "jobs": self.submitter_jobs,
                "jobs_per_second": {
                    str(k): round(self.jobs_per_second(k)) for k in self.submitters
                },
            },
        }


def submitters_run(submitters: int, n: int) -> float:
    """Jobs per second of ``n`` no-op ``perform`` calls shared among ``submitters``
    threads into a fresh pool of SUBMITTER_POOL_SIZE, from their common start until
    the pool has drained and stopped."""
    per = n // submitters
    peer = OddjobPeer()
    with peer._pool(SUBMITTER_POOL_SIZE) as name:
        start = threading.Barrier(submitters + 1)

        def submit() -> None:
            perform = oddjob.perform
            start.wait(PRESTART_TIMEOUT)
            for i in range(per):
                perform(name, noop, i)

        threads = [threading.Thread(target=submit) for _ in range(submitters)]
        for thread in threads:
            thread.start()
        with quiet_gc():
            start.wait(PRESTART_TIMEOUT)
            began = time.perf_counter()
            for thread in threads:
                thread.join(PRESTART_TIMEOUT * 10)
            oddjob.stop(name)
            seconds = time.perf_counter() - began
        if any(thread.is_alive() for thread in threads):
            raise RuntimeError("a submitting thread did not finish")
    return per * submitters / seconds


def measure_scaling(
    jobs: int,
    repeat: int,
    spin: Callable[[float], tuple[Job, int, float]],
    *,
    gil_enabled: bool,
    progress: TextIO | None = None,
) -> ScalingResult:
    """Run the section: ``jobs`` is --jobs, ``spin(seconds)`` makes a calibrated CPU job."""
    result = ScalingResult(gil_enabled=gil_enabled, repeat=repeat)
    loop, pool, executor = LoopPeer(), OddjobPeer(), ExecutorPeer()
    peers = {"oddjob": pool, "tpe": executor}
    for label, target, share in SCALING_JOBS:
        job, _iterations, seconds = spin(target)
        n = max(MIN_SCALING_JOBS, round(jobs * share))
        result.jobs[label] = (n, seconds)
        runs: list[tuple[tuple[str, str, int] | None, Callable[[], float]]] = [
            (None, partial(loop.perform_many, job, n, 1))
        ]
        for row, key, method in _ROWS:
            for workers in SCALING_WORKERS:
                call: Callable[[Job, int, int], float] = getattr(peers[key], method)
                runs.append(((label, row, workers), partial(call, job, n, workers)))
        for _, run in runs:  # warm-up, discarded
            run()
        for repetition in range(repeat):
            show_progress(progress, f"scaling: {label} jobs, run {repetition + 1} of {repeat}")
            for cell, run in runs:
                seconds_taken = run()
                if cell is None:
                    result.loop.setdefault(label, []).append(seconds_taken)
                else:
                    result.pools.setdefault(cell, []).append(seconds_taken)
    result.submitter_jobs = max(MIN_SCALING_JOBS, jobs * SUBMITTER_JOBS_SCALE)
    for submitters in SUBMITTERS:  # warm-up
        submitters_run(submitters, result.submitter_jobs)
    for repetition in range(repeat):
        show_progress(progress, f"scaling: submitters, run {repetition + 1} of {repeat}")
        for submitters in SUBMITTERS:
            result.submitters.setdefault(submitters, []).append(
                submitters_run(submitters, result.submitter_jobs)
            )
    show_progress(progress, None)
    return result


def show_progress(progress: TextIO | None, text: str | None) -> None:
    """As the main table's progress does: rewritten in place on a terminal, a line each
    in a log; None clears the terminal's line once the section is done."""
    if progress is None:
        return
    if text is None:
        if progress.isatty():
            progress.write("\r\033[K")
    else:
        progress.write(f"\r\033[K{text}" if progress.isatty() else f"{text}\n")
    progress.flush()


def scaling_lines(result: ScalingResult) -> list[str]:
    """The section as text: a speed-up table and the submitters line."""
    gil = "GIL enabled: threads take turns" if result.gil_enabled else "GIL disabled"
    lines = [
        f"Scaling with cores ({gil}): speed-up over the single-thread loop running the same jobs",
        f"(pure-Python CPU work; above 1.00x the pool beats the loop; median of {result.repeat})",
    ]
    labels = list(result.jobs)
    width = max(len(row) for row, _, _ in _ROWS)
    group = 6 * len(SCALING_WORKERS) - 1
    header = " " * width + "".join(f" | {label + ' jobs':^{group}}" for label in labels)
    counts = f"{'workers':<{width}}" + "".join(
        " | " + " ".join(f"{w:>5}" for w in SCALING_WORKERS) for _ in labels
    )
    lines += [header, counts]
    for row, _, _ in _ROWS:
        cells = "".join(
            " | "
            + " ".join(f"{result.speedup(label, row, w):>4.2f}x".rjust(5) for w in SCALING_WORKERS)
            for label in labels
        )
        lines.append(f"{row:<{width}}{cells}")
    sizes = ", ".join(
        f"{label}: {n:,} jobs of {seconds * 1e6:.1f} µs"
        for label, (n, seconds) in result.jobs.items()
    )
    lines.append(f"({sizes} per run)")
    if result.submitters:
        one = result.jobs_per_second(SUBMITTERS[0])
        parts = [
            f"{k} submitter{'s' if k > 1 else ''} {result.jobs_per_second(k) / 1e6:.2f}M jobs/s"
            for k in SUBMITTERS
        ]
        ratio = result.jobs_per_second(SUBMITTERS[-1]) / one
        lines.append(
            f"no-op perform into a pool of {SUBMITTER_POOL_SIZE}: {', '.join(parts)} "
            f"({SUBMITTERS[-1]} over {SUBMITTERS[0]}: {ratio:.2f}x; "
            f"{result.submitter_jobs:,} jobs per run)"
        )
    return lines


def gil_is_enabled() -> bool:
    return bool(getattr(sys, "_is_gil_enabled", lambda: True)())


def wanted(flag: bool | None) -> bool:
    """--scaling / --no-scaling, else: run it when the GIL is disabled."""
    return (not gil_is_enabled()) if flag is None else flag
