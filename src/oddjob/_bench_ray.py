"""The Ray section of ``python -m oddjob bench --ray``: ``backend="ray"`` beside plain Ray
tasks, in the same run, on the same cluster, with the same limit of ``POOL_SIZE`` jobs at
once. Opt-in: Ray is an optional extra (``oddjob[ray]``).

The cluster: the one this program is connected to, if it is; else a local one started
here (``NUM_CPUS`` CPUs, no dashboard, in the ``NAMESPACE`` namespace, its files under
``TEMP_DIR``) and shut down again at the end. The peer is what a Ray user writes for the
same limit: a placement group like the pool's slots (``POOL_SIZE`` bundles of
``_ray_worker.SLOT``, strategy SPREAD) and ``f = ray.remote(noop).options(...)`` with the
very options oddjob gives its tasks (``num_cpus`` of one slot, ``max_retries=0``,
``retry_exceptions=False``, ``PlacementGroupSchedulingStrategy(group, -1)``). ``noop`` is
a function of this module, so oddjob takes its cached-remote path, as it does for any
module-level job.

- One job at a time: ``SEQUENTIAL_JOBS`` no-op jobs (``QUICK_SEQUENTIAL_JOBS`` with
  --quick), each awaited before the next is sent: ``oddjob.await_(async_perform(pool,
  noop))`` on a pool of ``POOL_SIZE`` against ``ray.get(f.remote())``, in µs per job.
  What this measures is oddjob's own cost per job on top of Ray's round trip (the queue,
  the hand-off to a worker thread, the Job): the target is oddjob's time at most
  ``SEQUENTIAL_TARGET`` times plain Ray's.
- Many jobs: ``MANY_JOBS`` no-op jobs (``QUICK_MANY_JOBS``), all sent, then every
  result, in jobs per second: oddjob's ``async_perform_many`` + ``await_many`` and
  ``async_perform`` for each + ``await_many``; plain Ray with every ``f.remote(i)`` sent
  at once and one ``ray.get`` of the list (Ray's own queue holds them; the placement
  group still lets ``POOL_SIZE`` run at once); and plain Ray with at most ``POOL_SIZE``
  in flight (a ``ray.wait`` loop), which is how oddjob sends them: each of its worker
  threads has one task in flight. oddjob is shown as a ratio over each (no target: the
  figures say what the limit in the submitting process costs).

Every figure is the best of ``REPEAT`` timed runs after ``WARMUP_RUNS`` untimed ones, the
peers taking turns run after run, with the garbage collector quiet; the pool and the
group are made and warmed (every slot has run a job) before any clock starts. The pool is
stopped and both placement groups removed at the end, whatever happens.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import oddjob

from . import _ray_worker
from ._bench_peers import quiet_gc
from ._bench_scaling import show_progress

__all__ = [
    "MISSING",
    "RayResult",
    "available",
    "measure_ray",
    "noop",
    "ray_lines",
    "wanted",
]

POOL_SIZE: Final = 4
REPEAT: Final = 3  # timed runs per figure; the figure is the best of them
WARMUP_RUNS: Final = 1  # untimed runs of each figure first
SEQUENTIAL_JOBS: Final = 500
QUICK_SEQUENTIAL_JOBS: Final = 100
SEQUENTIAL_TARGET: Final = 1.3
MANY_JOBS: Final = 2_000
QUICK_MANY_JOBS: Final = 500
# The local cluster started when the program has none.
NUM_CPUS: Final = 2
NAMESPACE: Final = "oddjob-bench"
TEMP_DIR: Final = os.environ.get("ODDJOB_BENCH_RAY_TEMP_DIR") or os.path.join(
    tempfile.gettempdir(), "ray-oddjob-bench"
)
# How long any one wait may take before the section gives up on it (never a hang).
WAIT: Final = 120.0
SLOTS_TIMEOUT: Final = 30.0
WARM_ROUNDS: Final = 20
WARM_SLEEP: Final = 0.05
MISSING: Final = "Ray section skipped: Ray is not installed (python -m pip install 'oddjob[ray]')"

_names = itertools.count()


# -- the jobs (module-level: Ray's workers import them by name) --------------------------


def noop(_item: object = None) -> None:
    """The no-op job: what is measured is the cost per job."""


def warm(seconds: float = WARM_SLEEP) -> int:
    """A warm-up job, long enough that the others go to other slots; its process id."""
    time.sleep(seconds)
    return os.getpid()


# -- the parts -----------------------------------------------------------------------------

# Each part's figures, by key: (label, what is timed).
SEQUENTIAL: Final = {
    "oddjob": ("oddjob", "await_(async_perform(pool, noop))"),
    "ray": ("plain Ray", "ray.get(f.remote())"),
}
MANY: Final = {
    "oddjob_many": ("oddjob", "async_perform_many + await_many"),
    "oddjob_each": ("oddjob", "async_perform each + await_many"),
    "ray_all": ("plain Ray", "f.remote(i) each + one ray.get(list)"),
    "ray_bounded": ("plain Ray", f"ray.wait loop, at most {POOL_SIZE} in flight"),
}


def available() -> bool:
    """Whether Ray can be imported here."""
    return importlib.util.find_spec("ray") is not None


def _ray() -> Any:
    return importlib.import_module("ray")  # an optional extra, untyped here


@contextmanager
def _cluster(progress: TextIO | None) -> Iterator[tuple[Any, bool]]:
    """Ray, connected (started here if the program had no cluster), and whether it was
    started here; shut down again at the end if it was."""
    ray = _ray()
    if ray.is_initialized():
        yield ray, False
        return
    show_progress(progress, f"ray: starting a local cluster of {NUM_CPUS} CPUs")
    ray.init(
        address="local",  # a cluster of its own: never someone else's `ray start`
        num_cpus=NUM_CPUS,
        include_dashboard=False,
        log_to_driver=False,
        namespace=NAMESPACE,
        _temp_dir=TEMP_DIR,
    )
    try:
        yield ray, True
    finally:
        ray.shutdown()


def _pool_name() -> str:
    while True:
        name = f"bench-ray-{os.getpid()}-{next(_names)}"
        if oddjob.whereis(name) is None:  # never take over a pool of the caller's
            return name


@contextmanager
def _oddjob_pool(ray: Any) -> Iterator[str]:
    """A started, warmed Ray pool's name; stopped and its slots removed afterwards."""
    name = _pool_name()
    pool = oddjob.Pool(name, backend="ray", pool_size=POOL_SIZE).start()
    try:
        _warm(
            lambda: oddjob.await_many(
                [oddjob.async_perform(name, warm) for _ in range(POOL_SIZE)], WAIT
            )
        )
        yield name
    finally:
        try:
            if pool.running:
                pool.stop(cancel_pending=True, timeout=WAIT)
        finally:
            _ray_worker.remove_slots(name)


@contextmanager
def _plain_remote(ray: Any) -> Iterator[Any]:
    """``ray.remote(noop)`` with oddjob's task options, in a placement group like the
    pool's slots (removed afterwards), warmed."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pgs = importlib.import_module("ray.util.placement_group")
    group = pgs.placement_group(
        [dict(_ray_worker.SLOT) for _ in range(POOL_SIZE)],
        strategy="SPREAD",
        name=f"oddjob.bench.plain-{os.getpid()}-{next(_names)}",
        lifetime="detached",
    )
    try:
        if not group.wait(SLOTS_TIMEOUT):
            raise TimeoutError(f"Ray did not place {POOL_SIZE} bundles in {SLOTS_TIMEOUT} s")
        options = {
            "num_cpus": _ray_worker.SLOT["CPU"],
            "max_retries": 0,
            "retry_exceptions": False,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=-1
            ),
        }
        remote = ray.remote(noop).options(**options)
        warm_remote = ray.remote(warm).options(**options)
        _warm(lambda: ray.get([warm_remote.remote() for _ in range(POOL_SIZE)], timeout=WAIT))
        yield remote
    finally:
        pgs.remove_placement_group(group)


def _warm(run_round: Callable[[], list[int]]) -> None:
    """Rounds of POOL_SIZE sleeping jobs until POOL_SIZE Ray worker processes have run
    one (at most WARM_ROUNDS: Ray may run two slots' jobs in one process over time)."""
    pids: set[int] = set()
    for _ in range(WARM_ROUNDS):
        pids.update(run_round())
        if len(pids) >= POOL_SIZE:
            return


# -- the timed runs ------------------------------------------------------------------------


def _oddjob_sequential(name: str, n: int) -> float:
    async_perform, await_ = oddjob.async_perform, oddjob.await_
    with quiet_gc():
        began = time.perf_counter()
        for _ in range(n):
            await_(async_perform(name, noop), WAIT)
        return time.perf_counter() - began


def _ray_sequential(ray: Any, remote: Any, n: int) -> float:
    get, send = ray.get, remote.remote
    with quiet_gc():
        began = time.perf_counter()
        for _ in range(n):
            get(send(), timeout=WAIT)
        return time.perf_counter() - began


def _oddjob_many(name: str, n: int) -> float:
    with quiet_gc():
        began = time.perf_counter()
        oddjob.await_many(oddjob.async_perform_many(name, range(n), noop), WAIT)
        return time.perf_counter() - began


def _oddjob_each(name: str, n: int) -> float:
    async_perform = oddjob.async_perform
    with quiet_gc():
        began = time.perf_counter()
        jobs = [async_perform(name, noop, i) for i in range(n)]
        oddjob.await_many(jobs, WAIT)
        return time.perf_counter() - began


def _ray_all(ray: Any, remote: Any, n: int) -> float:
    send = remote.remote
    with quiet_gc():
        began = time.perf_counter()
        ray.get([send(i) for i in range(n)], timeout=WAIT)
        return time.perf_counter() - began


def _ray_bounded(ray: Any, remote: Any, n: int) -> float:
    get, wait, send = ray.get, ray.wait, remote.remote
    with quiet_gc():
        began = time.perf_counter()
        pending: list[Any] = []
        for i in range(n):
            if len(pending) >= POOL_SIZE:
                done, pending = wait(pending, num_returns=1, timeout=WAIT)
                if not done:
                    raise TimeoutError(f"no plain Ray task ended within {WAIT} s")
                get(done)
            pending.append(send(i))
        get(pending, timeout=WAIT)
        return time.perf_counter() - began


# -- the result ----------------------------------------------------------------------------


@dataclass
class RayResult:
    """What the section measured: seconds of each timed run, by SEQUENTIAL / MANY key."""

    pool_size: int
    repeat: int
    ray_version: str
    cluster: str  # "local, started here (N CPUs)" or "the program's own"
    cluster_cpus: float
    sequential_jobs: int = 0
    many_jobs: int = 0
    sequential: dict[str, list[float]] = field(default_factory=dict)
    many: dict[str, list[float]] = field(default_factory=dict)

    def us_per_job(self, key: str) -> float:
        return min(self.sequential[key]) / self.sequential_jobs * 1e6

    @property
    def sequential_ratio(self) -> float:
        """oddjob's time per job over plain Ray's (lower is better)."""
        return self.us_per_job("oddjob") / self.us_per_job("ray")

    @property
    def sequential_met(self) -> bool:
        return self.sequential_ratio <= SEQUENTIAL_TARGET

    def rate(self, key: str) -> float:
        return self.many_jobs / min(self.many[key])

    def over(self, key: str, peer: str) -> float:
        """key's jobs per second over peer's (higher is better)."""
        return self.rate(key) / self.rate(peer)

    def to_json(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "repeat": self.repeat,
            "warmup_runs": WARMUP_RUNS,
            "figure": "best of the runs",
            "ray": self.ray_version,
            "cluster": self.cluster,
            "cluster_cpus": self.cluster_cpus,
            "one_at_a_time": {
                "jobs": self.sequential_jobs,
                "calls": {key: call for key, (_, call) in SEQUENTIAL.items()},
                "us_per_job": {key: round(self.us_per_job(key), 1) for key in self.sequential},
                "oddjob_over_ray": round(self.sequential_ratio, 3),
                "target_max": SEQUENTIAL_TARGET,
                "meets_target": self.sequential_met,
            },
            "many": {
                "jobs": self.many_jobs,
                "calls": {key: call for key, (_, call) in MANY.items()},
                "jobs_per_second": {key: round(self.rate(key), 1) for key in self.many},
                "oddjob_over_ray_all": {
                    key: round(self.over(key, "ray_all"), 3)
                    for key in ("oddjob_many", "oddjob_each")
                },
                "oddjob_over_ray_bounded": {
                    key: round(self.over(key, "ray_bounded"), 3)
                    for key in ("oddjob_many", "oddjob_each")
                },
            },
        }


def measure_ray(*, quick: bool = False, progress: TextIO | None = None) -> RayResult:
    """Run the section (Ray must be installed); ``quick``: fewer jobs."""
    sequential_jobs = QUICK_SEQUENTIAL_JOBS if quick else SEQUENTIAL_JOBS
    many_jobs = QUICK_MANY_JOBS if quick else MANY_JOBS
    with ExitStack() as stack:
        ray, started = stack.enter_context(_cluster(progress))
        result = RayResult(
            pool_size=POOL_SIZE,
            repeat=REPEAT,
            ray_version=ray.__version__,
            cluster="local, started here" if started else "the program's own",
            cluster_cpus=ray.cluster_resources().get("CPU", 0.0),
            sequential_jobs=sequential_jobs,
            many_jobs=many_jobs,
        )
        show_progress(progress, f"ray: a pool of {POOL_SIZE} and a placement group, warming")
        name = stack.enter_context(_oddjob_pool(ray))
        remote = stack.enter_context(_plain_remote(ray))
        sequential: dict[str, Callable[[], float]] = {
            "oddjob": lambda: _oddjob_sequential(name, sequential_jobs),
            "ray": lambda: _ray_sequential(ray, remote, sequential_jobs),
        }
        many: dict[str, Callable[[], float]] = {
            "oddjob_many": lambda: _oddjob_many(name, many_jobs),
            "oddjob_each": lambda: _oddjob_each(name, many_jobs),
            "ray_all": lambda: _ray_all(ray, remote, many_jobs),
            "ray_bounded": lambda: _ray_bounded(ray, remote, many_jobs),
        }
        for part, runs, target, jobs in (
            ("one at a time", sequential, result.sequential, sequential_jobs),
            ("many", many, result.many, many_jobs),
        ):
            for turn in range(WARMUP_RUNS + REPEAT):
                for key, run in runs.items():
                    show_progress(
                        progress,
                        f"ray: {part}, {jobs:,} no-op jobs, {key}, run {turn + 1} of "
                        f"{WARMUP_RUNS + REPEAT}",
                    )
                    seconds = run()
                    if turn >= WARMUP_RUNS:
                        target.setdefault(key, []).append(seconds)
    show_progress(progress, None)
    return result


# -- the report ----------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def ray_lines(result: RayResult) -> list[str]:
    """The section as text."""
    width = max(len(f"{label} {call}") for label, call in (*SEQUENTIAL.values(), *MANY.values()))
    runs = "run" if result.repeat == 1 else "runs"
    lines = [
        f"Ray backend (backend='ray', pool_size={result.pool_size}: a placement group of "
        f"{result.pool_size} bundles {_ray_worker.SLOT}; plain Ray: the same task options "
        f"in a group like it; Ray {result.ray_version}, cluster {result.cluster}, "
        f"{result.cluster_cpus:g} CPUs; best of {result.repeat} {runs} after {WARMUP_RUNS} "
        "warm-up)",
        f"  one at a time: {result.sequential_jobs:,} no-op jobs, each awaited before the next",
    ]
    for key, (label, call) in SEQUENTIAL.items():
        text = f"{label} {call}"
        lines.append(f"    {text:<{width}}  {result.us_per_job(key):>10,.0f} µs/job")
    lines += [
        f"    oddjob over plain Ray: {result.sequential_ratio:.2f}x the time per job "
        f"(target <= {SEQUENTIAL_TARGET:g}x: {_verdict(result.sequential_met)})",
        f"  many: {result.many_jobs:,} no-op jobs sent, then every result "
        f"(at most {result.pool_size} run at once)",
    ]
    for key, (label, call) in MANY.items():
        text = f"{label} {call}"
        row = f"    {text:<{width}}  {result.rate(key):>10,.0f} jobs/s"
        if key.startswith("oddjob"):
            row += (
                f"  {result.over(key, 'ray_all'):.2f}x all-at-once, "
                f"{result.over(key, 'ray_bounded'):.2f}x {result.pool_size}-in-flight"
            )
        lines.append(row)
    return lines


def wanted(flag: bool | None) -> bool:
    """--ray / --no-ray, else: off (Ray is an optional extra)."""
    return bool(flag)


if __name__ == "__main__":  # pragma: no cover - a quick look without the main table
    if not available():
        print(MISSING)
        sys.exit(0)
    quick = "--quick" in sys.argv[1:]
    print("\n".join(ray_lines(measure_ray(quick=quick, progress=sys.stderr))))
