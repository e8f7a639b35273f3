"""backend="processes": jobs run in worker processes, with crash isolation, job_timeout,
recycling, setup and teardown in the child, and no child outliving its pool or parent.

Jobs come from process_jobs (a module a child can import by name). Most pools here use
"forkserver", the quickest to start a worker; each start method has its own test.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import oddjob
import process_jobs as jobs
import support

WAIT = 30.0  # bound on any one wait here (worker processes start in well under 1 s)
METHODS = multiprocessing.get_all_start_methods()

pytestmark = pytest.mark.skipif(
    "forkserver" not in METHODS, reason="these tests start workers with forkserver"
)


@pytest.fixture
def process_pool() -> Callable[..., oddjob.Pool]:
    """process_pool(size, **options) starts a process pool under a fresh name."""

    def make(size: int = 1, name: str | None = None, **options: Any) -> oddjob.Pool:
        options.setdefault("start_method", "forkserver")
        name = name or support.new_name("proc")
        pool = oddjob.Pool(name, backend="processes", pool_size=size, **options)
        return pool.start()

    return make


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def worker_pids(pool: oddjob.Pool) -> set[int]:
    """The pids of the pool's live worker processes, asked of the workers themselves, in
    rounds of one 0.2 s job per worker until each has answered: a worker still starting
    its process takes no job yet, and on a loaded machine another may take two."""
    size = pool.options.pool_size
    pids: set[int] = set()
    deadline = time.monotonic() + WAIT
    while len(pids) < size and time.monotonic() < deadline:
        round_ = [pool.async_perform(jobs.pid_after, 0.2) for _ in range(size)]
        pids.update(oddjob.await_many(round_, WAIT))
    return pids


# -- results and exceptions ------------------------------------------------------------


def test_a_job_runs_in_another_process_and_its_result_comes_back(process_pool: Any) -> None:
    pool = process_pool(2)
    assert pool.async_perform(jobs.add, 2, b=3).result(WAIT) == 5
    assert pool.async_perform(jobs.pid).result(WAIT) != os.getpid()
    assert oddjob.await_many(pool.async_perform_many(range(10), jobs.square), WAIT) == [
        x * x for x in range(10)
    ]


def test_lambdas_and_closures_travel(process_pool: Any) -> None:
    pool = process_pool(1)
    offset = 40

    def closure(x: int) -> int:
        return x + offset

    assert pool.async_perform(lambda x: x * 2, 21).result(WAIT) == 42
    assert pool.async_perform(closure, 2).result(WAIT) == 42
    assert oddjob.await_many(pool.async_perform_many([1, 2], lambda x: -x), WAIT) == [-1, -2]


def test_an_exception_keeps_its_type_and_the_remote_traceback_is_its_cause(
    process_pool: Any,
) -> None:
    pool = process_pool(1)
    job = pool.async_perform(jobs.fail, "boom")
    with pytest.raises(ValueError, match="boom") as info:
        job.result(WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, oddjob.RemoteTraceback)
    assert "in fail" in str(cause) and "ValueError: boom" in str(cause)
    with pytest.raises(RuntimeError, match="outer") as chained:
        pool.async_perform(jobs.nested_fail).result(WAIT)
    text = str(chained.value.__cause__)
    assert "KeyError: 'inner'" in text and "RuntimeError: outer" in text


def test_an_exception_that_cannot_travel_becomes_a_remote_error(process_pool: Any) -> None:
    pool = process_pool(1)
    with pytest.raises(oddjob.RemoteError) as info:
        pool.async_perform(jobs.raise_unpicklable).result(WAIT)
    assert info.value.type_name == "process_jobs.Unpicklable"
    assert info.value.message == "holds a lock"
    assert "Unpicklable: holds a lock" in str(info.value.__cause__)
    with pytest.raises(oddjob.RemoteError, match="BadInit: x-y"):
        pool.async_perform(jobs.raise_bad_init).result(WAIT)
    # A RemoteError itself travels on (to a caller that pickles it again, say).
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.type_name, again.message) == (info.value.type_name, info.value.message)


def test_what_does_not_pickle_fails_its_job_and_the_worker_lives_on(process_pool: Any) -> None:
    pool = process_pool(1)
    before = pool.async_perform(jobs.pid).result(WAIT)
    with pytest.raises(pickle.PicklingError, match="cannot pickle"):
        pool.async_perform(jobs.noop, threading.Lock()).result(WAIT)  # an argument
    with pytest.raises((TypeError, pickle.PicklingError)):
        pool.async_perform(jobs.return_unpicklable).result(WAIT)  # a result
    with pytest.raises(ValueError):
        pool.async_perform(jobs.fail, "x").result(WAIT)
    assert pool.async_perform(jobs.pid).result(WAIT) == before
    assert pool.supervisor.crashes == 0


def test_a_fire_and_forget_failure_is_logged_in_the_pool_s_process(
    process_pool: Any, oddjob_log: support.LogWatcher
) -> None:
    pool = process_pool(1)
    pool.perform(jobs.fail, "logged here")
    [record] = oddjob_log.wait_for(
        lambda r: r.exc_info is not None and "logged here" in str(r.exc_info[1])
    )
    assert record.levelname == "ERROR" and "fail" in record.getMessage()


# -- crashes, timeouts, recycling -------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "args", "expected"),
    [
        (jobs.exit_now, (7,), "exited with status 7"),
        (jobs.kill_self, (signal.SIGKILL,), "killed by SIGKILL"),
        (jobs.segfault, (), "killed by SIGSEGV"),
    ],
    ids=["os._exit", "SIGKILL", "segfault"],
)
def test_a_dead_worker_fails_only_its_own_job_and_is_replaced(
    process_pool: Any, job: Any, args: tuple[Any, ...], expected: str
) -> None:
    pool = process_pool(2)
    first = worker_pids(pool)
    slow = pool.async_perform(jobs.pid_after, 0.5)  # on the other worker, unharmed
    doomed = pool.async_perform(job, *args)
    queued = [pool.async_perform(jobs.square, x) for x in range(20)]
    with pytest.raises(oddjob.WorkerCrashedError, match=expected) as info:
        doomed.result(WAIT)
    assert f"job {job.__name__}" in str(info.value)
    assert slow.result(WAIT) in first
    assert oddjob.await_many(queued, WAIT) == [x * x for x in range(20)]
    support.until(lambda: pool.supervisor.crashes == 1, "the crash counted")
    after = worker_pids(pool)
    assert len(after) == 2 and len(after - first) == 1  # one new process, one the same
    gone = first - after
    support.until(lambda: not any(alive(pid) for pid in gone), "the dead worker reaped")


def test_job_timeout_kills_the_overdue_job_s_worker(process_pool: Any) -> None:
    pool = process_pool(1, job_timeout=0.3)
    first = pool.async_perform(jobs.pid).result(WAIT)
    started = time.monotonic()
    job = pool.async_perform(jobs.sleep, 30)
    with pytest.raises(oddjob.JobTimeoutError, match=r"job_timeout=0\.3") as info:
        job.result(WAIT)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 10  # not the 30 s the job would have taken
    support.until(lambda: not alive(first), "the overdue job's worker killed")
    assert pool.async_perform(jobs.pid).result(WAIT) not in (first, os.getpid())
    assert pool.async_perform(jobs.sleep, 0.05).result(WAIT) == 0.05  # within the limit


def test_max_jobs_per_worker_recycles_the_worker_process(process_pool: Any) -> None:
    pool = process_pool(1, max_jobs_per_worker=2)
    pids = [pool.async_perform(jobs.pid).result(WAIT) for _ in range(6)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]
    assert len(set(pids)) == 3
    assert pool.supervisor.crashes == 0  # recycling is no crash


def test_system_exit_in_a_job_crashes_its_worker_which_is_replaced(process_pool: Any) -> None:
    pool = process_pool(1)
    first = pool.async_perform(jobs.pid).result(WAIT)
    with pytest.raises(SystemExit):
        pool.async_perform(jobs.system_exit).result(WAIT)
    support.until(lambda: pool.supervisor.crashes == 1, "the crash counted")
    assert pool.async_perform(jobs.pid).result(WAIT) != first
    support.until(lambda: not alive(first), "the crashed worker's process gone")


def test_restart_on_error_replaces_the_process_after_a_failing_job(process_pool: Any) -> None:
    pool = process_pool(1, restart_on_error=True)
    first = pool.async_perform(jobs.pid).result(WAIT)
    with pytest.raises(ValueError):
        pool.async_perform(jobs.fail, "x").result(WAIT)
    assert pool.async_perform(jobs.pid).result(WAIT) != first


# -- batches: short jobs travel many to a message --------------------------------------


def warm(pool: oddjob.Pool) -> None:
    """Run a few no-op jobs on each worker, so that the pool knows its jobs are short."""
    oddjob.await_many(pool.async_perform_many(range(20 * pool.options.pool_size), jobs.noop), WAIT)


def test_short_jobs_each_run_once_in_fifo_order(process_pool: Any, tmp_path: Path) -> None:
    pool = process_pool(1)
    warm(pool)
    names = [f"j{i:04d}" for i in range(400)]
    for name in names:
        pool.perform(jobs.touch, str(tmp_path), name)
    results = pool.async_perform_many(range(400), jobs.square)
    assert oddjob.await_many(results, WAIT) == [x * x for x in range(400)]
    files = sorted(tmp_path.iterdir(), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    assert [p.name.split(".")[0] for p in files] == names  # each once, in order
    stats = support.settled(pool, lambda s: s.completed == 820)
    assert (stats.submitted, stats.started, stats.running, stats.queued) == (820, 820, 0, 0)


def test_a_crash_inside_a_batch_fails_only_the_running_job(
    process_pool: Any, tmp_path: Path
) -> None:
    pool = process_pool(1)
    warm(pool)
    first = pool.async_perform(jobs.pid).result(WAIT)
    for i in range(50):
        pool.perform(jobs.touch, str(tmp_path), f"before{i:02d}")
    doomed = pool.async_perform(jobs.kill_self, signal.SIGKILL)
    for i in range(50):
        pool.perform(jobs.touch, str(tmp_path), f"after{i:02d}")
    later = pool.async_perform_many(range(30), jobs.square)
    with pytest.raises(oddjob.WorkerCrashedError, match="SIGKILL"):
        doomed.result(WAIT)
    assert oddjob.await_many(later, WAIT) == [x * x for x in range(30)]
    names = sorted(p.name.split(".")[0] for p in tmp_path.iterdir())
    assert names == sorted(
        [f"before{i:02d}" for i in range(50)] + [f"after{i:02d}" for i in range(50)]
    )
    assert pool.async_perform(jobs.pid).result(WAIT) != first
    total = 20 + 1 + 101 + 30 + 1  # warm(), pid, the 101 around the kill, later, pid
    stats = support.settled(pool, lambda s: s.completed + s.failed == total)
    assert (stats.submitted, stats.failed, stats.running, stats.queued) == (total, 1, 0, 0)


def test_a_job_of_a_batch_that_does_not_pickle_fails_alone(process_pool: Any) -> None:
    pool = process_pool(1)
    warm(pool)
    before = [pool.async_perform(jobs.add, i, 1) for i in range(10)]
    bad = pool.async_perform(jobs.add, threading.Lock(), 1)
    after = [pool.async_perform(jobs.add, i, 2) for i in range(10)]
    with pytest.raises(pickle.PicklingError):
        bad.result(WAIT)
    assert oddjob.await_many(before, WAIT) == [i + 1 for i in range(10)]
    assert oddjob.await_many(after, WAIT) == [i + 2 for i in range(10)]


def test_a_job_of_a_batch_that_does_not_unpickle_there_fails_alone(process_pool: Any) -> None:
    import types

    ghost = types.ModuleType("oddjob_ghost_module")  # importable here only
    exec("def twice(x):\n    return 2 * x\n", ghost.__dict__)
    sys.modules[ghost.__name__] = ghost
    try:
        pool = process_pool(1)
        warm(pool)
        before = [pool.async_perform(jobs.square, i) for i in range(10)]
        bad = pool.async_perform(ghost.twice, 3)
        after = [pool.async_perform(jobs.square, i) for i in range(10)]
        with pytest.raises(ModuleNotFoundError, match="oddjob_ghost_module"):
            bad.result(WAIT)
        assert oddjob.await_many(before + after, WAIT) == [i * i for i in range(10)] * 2
    finally:
        del sys.modules[ghost.__name__]


def ran_once_each(path: Path) -> list[str]:
    names = sorted(p.name.split(".")[0] for p in path.iterdir())
    assert len(names) == len(set(names)), f"a job ran twice: {names}"
    return names


def test_a_batch_whose_worker_dies_runs_no_job_twice_and_the_rest_later(
    process_pool: Any, tmp_path: Path
) -> None:
    # One batch (the worker takes them all at once): j0 .. j9 run, j10 kills the
    # process, j11 .. j29 never start there. The results of j1 .. j9 may be lost with
    # the process (they travel back many to a message): such a job fails saying that it
    # ran, and none runs again.
    pool = process_pool(1)
    warm(pool)
    job = functools.partial(jobs.touch_or_die, str(tmp_path), 10)
    handles = pool.async_perform_many(range(30), job)
    outcomes = []
    for handle in handles:
        try:
            outcomes.append(handle.result(WAIT))
        except oddjob.WorkerCrashedError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == 0
    for i in range(1, 10):
        assert outcomes[i] == i or "ran, but its worker process" in str(outcomes[i]), outcomes[i]
    assert "running job touch_or_die was killed by SIGKILL" in str(outcomes[10])
    assert outcomes[11:] == list(range(11, 30))  # started again, on the new worker
    assert ran_once_each(tmp_path) == [f"j{i:02d}" for i in range(30) if i != 10]
    lost = sum(type(outcome) is str for outcome in outcomes[1:10])
    stats = support.settled(pool, lambda s: s.completed + s.failed == 20 * 1 + 30)
    assert (stats.failed, stats.completed) == (1 + lost, 20 + 29 - lost)


def test_fire_and_forget_jobs_that_ran_before_their_worker_died_count_as_completed(
    process_pool: Any, tmp_path: Path
) -> None:
    # As above, with no caller waiting: a job that ran and returned is completed, even
    # if its worker process died before saying so; only the one that killed it failed.
    pool = process_pool(1)
    warm(pool)
    pool.perform_many(range(30), functools.partial(jobs.touch_or_die, str(tmp_path), 10))
    stats = support.settled(pool, lambda s: s.completed + s.failed == 20 + 30)
    assert (stats.failed, stats.completed) == (1, 20 + 29)
    assert ran_once_each(tmp_path) == [f"j{i:02d}" for i in range(30) if i != 10]


def test_a_result_of_a_batch_that_does_not_pickle_there_fails_alone(process_pool: Any) -> None:
    pool = process_pool(1)
    warm(pool)
    before = [pool.async_perform(jobs.square, i) for i in range(10)]
    bad = pool.async_perform(jobs.return_unpicklable)
    after = [pool.async_perform(jobs.square, i) for i in range(10)]
    with pytest.raises((TypeError, pickle.PicklingError)):
        bad.result(WAIT)
    assert oddjob.await_many(before + after, WAIT) == [i * i for i in range(10)] * 2
    assert pool.supervisor.crashes == 0


def test_system_exit_inside_a_batch_crashes_the_worker_after_the_batch(
    process_pool: Any,
) -> None:
    pool = process_pool(1)
    warm(pool)
    first = pool.async_perform(jobs.pid).result(WAIT)
    before = [pool.async_perform(jobs.square, i) for i in range(20)]
    exits = pool.async_perform(jobs.system_exit)
    after = [pool.async_perform(jobs.square, i) for i in range(20)]
    with pytest.raises(SystemExit):
        exits.result(WAIT)
    assert oddjob.await_many(before + after, WAIT) == [i * i for i in range(20)] * 2
    support.until(lambda: pool.supervisor.crashes == 1, "the crash counted")
    assert pool.async_perform(jobs.pid).result(WAIT) != first
    support.until(lambda: not alive(first), "the crashed worker's process stopped")


def test_max_jobs_per_worker_counts_every_job_of_a_batch(process_pool: Any) -> None:
    from collections import Counter

    pool = process_pool(1, max_jobs_per_worker=7)
    pids = oddjob.await_many(pool.async_perform_many(range(35), jobs.pid), WAIT)
    assert sorted(Counter(pids).values()) == [7] * 5


def test_batches_leave_work_for_the_other_workers(process_pool: Any) -> None:
    pool = process_pool(2)
    warm(pool)  # short jobs so far: the pool batches
    pids = oddjob.await_many([pool.async_perform(jobs.pid_after, 0.3) for _ in range(4)], WAIT)
    assert len(set(pids)) == 2


# -- setup and teardown in the child ----------------------------------------------------


def test_the_initializer_runs_in_each_worker_process(process_pool: Any) -> None:
    pool = process_pool(2, initializer="process_jobs:init_resource", initargs=("db",))
    seen = oddjob.await_many([pool.async_perform(jobs.read_resource) for _ in range(4)], WAIT)
    for value, init_pid, job_pid in seen:
        assert value == "db" and init_pid == job_pid != os.getpid()


def test_the_finalizer_runs_in_the_worker_process_when_the_pool_stops(
    process_pool: Any, tmp_path: Path
) -> None:
    from functools import partial

    pool = process_pool(2, finalizer=partial(jobs.write_on_exit, str(tmp_path)))
    pids = worker_pids(pool)
    pool.stop(timeout=WAIT)
    assert {int(p.name) for p in tmp_path.iterdir()} == pids


def test_a_failing_initializer_breaks_the_pool(process_pool: Any, record_events: Any) -> None:
    name = support.new_name("broken")
    events = record_events(name, ["pool.broken"])
    pool = process_pool(1, name=name, initializer=jobs.init_fails, max_restarts=1, max_seconds=30)
    events.wait_for("pool.broken", timeout=WAIT)  # emitted once the queue is closed
    assert pool.broken
    with pytest.raises(oddjob.PoolBrokenError) as info:
        pool.async_perform(jobs.noop)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "initializer failed" in str(info.value.__cause__)


def test_a_failing_finalizer_is_logged_here(
    process_pool: Any, oddjob_log: support.LogWatcher
) -> None:
    pool = process_pool(1, finalizer=jobs.finalizer_fails)
    pool.async_perform(jobs.noop).result(WAIT)
    pool.stop(timeout=WAIT)
    [record] = oddjob_log.wait_for(lambda r: "finalizer" in r.getMessage())
    assert record.exc_info is not None and "finalizer failed" in str(record.exc_info[1])


def test_current_worker_inside_a_worker_process(process_pool: Any) -> None:
    pool = process_pool(1)
    pool.async_perform(jobs.noop).result(WAIT)
    info = pool.async_perform(jobs.worker_info).result(WAIT)
    assert info is not None
    name, worker, index, jobs_run = info
    assert name == pool.name and index == 0 and jobs_run == 2
    assert worker == pool.workers()[0].name


# -- the pool's life and its processes --------------------------------------------------


def test_stop_leaves_no_worker_process(process_pool: Any) -> None:
    pool = process_pool(3)
    pids = worker_pids(pool)
    assert len(pids) == 3
    pool.stop(timeout=WAIT)
    assert not [pid for pid in pids if alive(pid)]
    assert not [p for p in multiprocessing.active_children() if p.pid in pids]


def test_stop_with_cancel_pending_cancels_queued_jobs_and_lets_the_running_one_finish(
    process_pool: Any,
) -> None:
    pool = process_pool(1)
    running = pool.async_perform(jobs.sleep, 0.5)
    support.until(lambda: pool.stats().running == 1, "the first job running")
    queued = [pool.async_perform(jobs.noop) for _ in range(5)]
    pool.stop(timeout=WAIT, cancel_pending=True)
    assert running.result(0) == 0.5
    assert all(job.cancelled() for job in queued)


@pytest.mark.parametrize("method", [m for m in ("spawn", "forkserver", "fork") if m in METHODS])
def test_each_start_method_runs_jobs(method: str) -> None:
    with oddjob.Pool(
        support.new_name("method"), backend="processes", pool_size=1, start_method=method
    ) as pool:
        assert pool.async_perform(jobs.add, 1, 2).result(WAIT) == 3
        assert pool.async_perform(lambda: os.getpid()).result(WAIT) != os.getpid()


def test_spawn_is_the_default_start_method() -> None:
    pool = oddjob.Pool(support.new_name("default"), backend="processes")
    assert pool.options.start_method == "spawn"


def test_a_fork_of_the_pool_s_process_leaves_the_child_without_the_pool(
    process_pool: Any,
) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no os.fork here")
    pool = process_pool(1)
    pool.async_perform(jobs.noop).result(WAIT)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the inherited pool is gone, and nothing here hangs
        code = 0 if oddjob.whereis(pool.name) is None else 1
        os._exit(code)
    os.close(write)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pool.async_perform(jobs.add, 1, 1).result(WAIT) == 2  # the parent's pool works


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import oddjob, process_jobs
    if __name__ == "__main__":
        pool = oddjob.Pool("orphans", backend="processes", pool_size=2, start_method={method!r})
        pool.start()
        pids = oddjob.await_many([pool.async_perform(process_jobs.pid_after, 0.3)
                                  for _ in range(2)], 30)
        for _ in range(2):
            pool.perform(process_jobs.sleep, 60)  # busy when the parent dies
        print(" ".join(map(str, sorted(set(pids)))), flush=True)
        time.sleep(60)
    """
)


@pytest.mark.parametrize("method", [m for m in ("spawn", "forkserver", "fork") if m in METHODS])
def test_worker_processes_do_not_outlive_a_killed_parent(method: str, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        _ORPHAN_SCRIPT.format(tests=str(Path(__file__).parent), method=method), encoding="utf-8"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline() if parent.stdout is not None else ""
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2, f"the parent printed {line!r}"
        assert all(alive(pid) for pid in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(WAIT)
        deadline = time.monotonic() + 5.0
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [pid for pid in pids if alive(pid)], "worker processes outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(WAIT)
        if parent.stdout is not None:
            parent.stdout.close()


# -- the pool's other features over processes --------------------------------------------


def test_stats_and_telemetry_count_process_jobs_in_the_pool_s_process(
    process_pool: Any, record_events: Any
) -> None:
    pool = process_pool(2)
    events = record_events(pool.name, ["job.start", "job.stop", "job.exception"])
    oddjob.await_many(pool.async_perform_many(range(10), jobs.square), WAIT)
    with pytest.raises(ValueError):
        pool.async_perform(jobs.fail, "x").result(WAIT)
    stats = support.settled(pool, lambda s: s.completed + s.failed == 11)
    assert (stats.completed, stats.failed, stats.running) == (10, 1, 0)
    assert len(events.wait_for("job.start", 11)) == 11
    assert len(events.wait_for("job.stop", 10)) == 10
    assert len(events.wait_for("job.exception", 1)) == 1


def test_retries_of_a_job_failing_in_its_worker_process(process_pool: Any, tmp_path: Path) -> None:
    pool = process_pool(1, retry=oddjob.Retry(attempts=3, on=(ValueError,), backoff=0.01))
    job = pool.async_perform(jobs.fails_twice, str(tmp_path / "runs"))
    assert job.result(WAIT) == 3
    assert job.attempts == 3


def test_a_bounded_process_pool_pushes_back(process_pool: Any) -> None:
    pool = process_pool(1, max_queue=2, on_full="raise")
    blocker = pool.async_perform(jobs.sleep, 0.5)
    support.until(lambda: pool.stats().running == 1, "the first job running")
    queued = [pool.async_perform(jobs.noop) for _ in range(2)]
    with pytest.raises(oddjob.QueueFullError):
        pool.async_perform(jobs.noop)
    assert blocker.result(WAIT) == 0.5
    assert oddjob.await_many(queued, WAIT) == [None, None]


def test_aio_awaits_process_jobs(process_pool: Any) -> None:
    import asyncio

    from oddjob import aio

    pool = process_pool(2)

    async def main() -> list[int]:
        first = await aio.run(pool, jobs.add, 1, 2)
        rest = await asyncio.gather(*(aio.run(pool, jobs.square, x) for x in range(5)))
        return [first, *rest]

    assert asyncio.run(main()) == [3, 0, 1, 4, 9, 16]


def test_contextvars_do_not_travel_to_a_worker_process(process_pool: Any) -> None:
    pool = process_pool(1)
    token = jobs.VAR.set("submitter's")
    try:
        assert pool.async_perform(jobs.read_var).result(WAIT) == "unset"
    finally:
        jobs.VAR.reset(token)


def test_timers_queue_process_jobs(process_pool: Any, tmp_path: Path) -> None:
    pool = process_pool(1)
    started = time.monotonic()
    pool.perform_after(0.1, jobs.touch, str(tmp_path), "timer")
    support.until(lambda: any(tmp_path.iterdir()), "the timer's job ran", timeout=WAIT)
    assert time.monotonic() - started >= 0.1


def test_a_process_pool_s_workers_are_its_driver_threads(process_pool: Any) -> None:
    pool = process_pool(2)
    threads = oddjob.workers(pool.name)
    assert len(threads) == 2 and all(t.is_alive() for t in threads)
    assert list(oddjob.pool(pool.name).workers) == threads
