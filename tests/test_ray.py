"""backend="ray": what the shared suite (test_backends.py) cannot show. One limit for
every program using a pool's name, slots given back when a worker dies or a job times
out, and the options this backend refuses. On the session's local Ray cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import oddjob
import process_jobs as jobs
import support
from oddjob import _ray_worker

WAIT = 60.0
TESTS = Path(__file__).parent


@pytest.fixture
def ray_pool(ray_cluster: str) -> Iterator[Callable[..., oddjob.Pool]]:
    """ray_pool(size, **options): a started Ray pool under a fresh name; its slots are
    removed from the cluster after the test."""
    made: list[oddjob.Pool] = []

    def make(size: int = 1, name: str | None = None, **options: Any) -> oddjob.Pool:
        pool = oddjob.Pool(
            name or support.new_name("ray"), backend="ray", pool_size=size, **options
        )
        made.append(pool)
        return pool.start()

    yield make
    support.remove_ray_pools(made)


def most_at_once(spool: Path) -> tuple[int, set[str]]:
    """The most jobs whose recorded intervals overlap (an end before a start at the same
    instant), and the tags of the programs whose jobs left intervals."""
    events: list[tuple[float, int]] = []
    tags = set()
    for path in spool.iterdir():
        start, end = map(float, path.read_text().split())
        events += [(start, 1), (end, -1)]
        tags.add(path.name.split(".", 1)[0])
    running = most = 0
    for _, step in sorted(events):  # (t, -1) sorts before (t, 1)
        running += step
        most = max(most, running)
    return most, tags


def test_two_programs_sharing_a_pool_name_share_its_limit(
    ray_cluster: str, tmp_path: Path, core: ModuleType
) -> None:
    # Each program has 3 worker threads of its own, so 6 jobs are sent at once: Ray's
    # slots, shared by name, let 3 run. Both connect by address as a user would (the
    # cluster's auth token is found by oddjob).
    name = support.new_name("shared")
    env = support.child_env(core, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    env.pop("RAY_AUTH_MODE", None)
    command = [sys.executable, str(TESTS / "ray_driver.py"), ray_cluster, name, "3"]
    drivers = [
        subprocess.Popen(
            [*command, str(tmp_path), tag, "8"],  # pool_size 3, 8 jobs each
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for tag in ("a", "b")
    ]
    try:
        for driver in drivers:
            out, _ = driver.communicate(timeout=120)
            assert driver.returncode == 0, out
    finally:
        for driver in drivers:
            driver.kill()
        _ray_worker.remove_slots(name)
    most, tags = most_at_once(tmp_path)
    assert len(list(tmp_path.iterdir())) == 16 and tags == {"a", "b"}
    assert most == 3  # never more, and the limit was reached


def test_a_second_start_with_another_pool_size_is_refused(ray_pool: Any) -> None:
    pool = ray_pool(2)
    pool.stop(timeout=WAIT)  # the slots stay on the cluster for other programs
    with pytest.raises(oddjob.ConfigError, match=r"number 2, .* not 3"):
        ray_pool(3, name=pool.name)
    assert oddjob.whereis(pool.name) is None
    again = ray_pool(2, name=pool.name)  # the same size joins them
    assert again.async_perform(jobs.add, 1, 2).result(WAIT) == 3


def test_a_worker_killed_mid_job_fails_it_and_gives_its_slot_back(
    ray_pool: Any, tmp_path: Path
) -> None:
    pool = ray_pool(1)
    pid_file = str(tmp_path / "pid")
    doomed = pool.async_perform(jobs.pid_to_file_then_sleep, pid_file, 60)
    support.until(lambda: os.path.exists(pid_file), "the job running", timeout=WAIT)
    pid = int(Path(pid_file).read_text())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(oddjob.WorkerCrashedError, match="Ray worker running job"):
        doomed.result(WAIT)
    # The only slot is free again: the next job runs, in another Ray worker process.
    assert pool.async_perform(jobs.pid).result(WAIT) != pid
    # The job failed; the pool's worker thread did not crash (the process was Ray's).
    stats = support.settled(pool, lambda s: s.failed + s.completed == 2)
    assert (stats.failed, stats.completed, stats.crashes) == (1, 1, 0)
    assert pool.supervisor.crashes == 0


def test_a_job_that_kills_its_process_fails_and_the_next_one_runs(ray_pool: Any) -> None:
    pool = ray_pool(1)
    with pytest.raises(oddjob.WorkerCrashedError):
        pool.async_perform(jobs.kill_self, signal.SIGKILL).result(WAIT)
    assert pool.async_perform(jobs.square, 5).result(WAIT) == 25


def test_job_timeout_cancels_the_task_and_frees_its_slot(ray_pool: Any) -> None:
    pool = ray_pool(1, job_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(oddjob.JobTimeoutError, match=r"job_timeout=0\.5"):
        pool.async_perform(jobs.sleep, 60).result(WAIT)
    assert time.monotonic() - started < 30
    assert pool.async_perform(jobs.sleep, 0.0).result(WAIT) == 0.0


def test_job_timeout_counts_from_the_start_not_the_wait_for_a_slot(
    ray_pool: Any, tmp_path: Path
) -> None:
    # Another program's task holds the only slot for 1.5 s: the job waits for it in
    # Ray's queue, then runs 0.2 s, well within its 1 s.
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pool = ray_pool(1, job_timeout=1.0)
    group = ray.util.get_placement_group(_ray_worker.slots_name(pool.name))
    holder = (
        ray.remote(jobs.pid_to_file_then_sleep)
        .options(
            num_cpus=_ray_worker.SLOT["CPU"],
            scheduling_strategy=PlacementGroupSchedulingStrategy(group),
        )
        .remote(str(tmp_path / "pid"), 1.5)
    )
    try:
        support.until(lambda: (tmp_path / "pid").exists(), "the slot taken", timeout=WAIT)
        started = time.monotonic()
        assert pool.async_perform(jobs.sleep, 0.2).result(WAIT) == 0.2
        assert time.monotonic() - started >= 1.0  # it did wait for the slot
    finally:
        assert ray.get(holder, timeout=WAIT) != os.getpid()


def test_a_job_s_exception_keeps_its_type_with_the_ray_traceback_as_cause(
    ray_pool: Any,
) -> None:
    pool = ray_pool(1)
    with pytest.raises(RuntimeError, match="outer") as info:
        pool.async_perform(jobs.nested_fail).result(WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, oddjob.RemoteTraceback)
    assert "nested_fail" in str(cause) and "KeyError" in str(cause)


def test_closures_travel_with_each_job_and_see_what_they_hold_now(ray_pool: Any) -> None:
    # A closure is not exported once and kept (that would freeze what it captured).
    pool = ray_pool(1)
    box = {"value": 1}

    def read() -> int:
        return box["value"]

    assert pool.async_perform(read).result(WAIT) == 1
    box["value"] = 2
    assert pool.async_perform(read).result(WAIT) == 2
    assert pool.async_perform(lambda x: x * 3, 4).result(WAIT) == 12


def test_removed_slots_fail_the_jobs_waiting_for_them(ray_pool: Any) -> None:
    pool = ray_pool(1)
    running = pool.async_perform(jobs.sleep, 60)
    support.until(lambda: pool.stats().running == 1, "the job running")
    assert _ray_worker.remove_slots(pool.name) is True
    with pytest.raises(oddjob.WorkerCrashedError):
        running.result(WAIT)


@pytest.mark.parametrize(
    ("option", "value"),
    [("initializer", "process_jobs:noop"), ("finalizer", jobs.noop)],
)
def test_worker_setup_is_refused_when_the_pool_is_made(option: str, value: Any) -> None:
    with pytest.raises(oddjob.ConfigError, match=f"{option} is not supported"):
        oddjob.Pool(support.new_name("ray"), backend="ray", **{option: value}).start()


def test_max_jobs_per_worker_is_refused() -> None:
    with pytest.raises(oddjob.ConfigError, match="max_jobs_per_worker needs backend='processes'"):
        oddjob.Pool(support.new_name("ray"), backend="ray", max_jobs_per_worker=3).start()


def test_without_ray_installed_the_pool_says_how_to_get_it(core: ModuleType) -> None:
    done = support.run_child(
        core,
        """
        import sys
        sys.modules["ray"] = None  # as if not installed
        import oddjob
        try:
            oddjob.Pool("r", backend="ray").start()
        except oddjob.ConfigError as exc:
            print(exc)
        """,
    )
    assert "pip install 'oddjob[ray]'" in done.stdout, done.stderr


def test_an_address_nobody_answers_fails_at_once(core: ModuleType) -> None:
    started = time.monotonic()
    done = support.run_child(
        core,
        """
        import oddjob
        try:
            oddjob.Pool("r", backend="ray", address="127.0.0.1:9").start()
        except ConnectionError as exc:
            print("ConnectionError:", exc)
        print("registered:", oddjob.whereis("r"))
        """,
    )
    assert "ConnectionError: backend='ray': nothing answers at address" in done.stdout, done.stderr
    assert "registered: None" in done.stdout
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_a_node_lost_mid_run_keeps_the_limit_and_its_slots_come_back(core: ModuleType) -> None:
    # bench/ray_cluster_sim.py: three raylets on this host (ray.cluster_utils), a pool
    # of 4 slots spread over them, one node removed while it runs jobs. Its own cluster,
    # its files (and address file) in a directory of its own: the session's cluster is
    # not touched. A short path: Ray's socket paths under it must fit in 107 bytes.
    script = TESTS.parent / "bench" / "ray_cluster_sim.py"
    with tempfile.TemporaryDirectory(prefix="oddjob-ray-") as temp_dir:
        done = subprocess.run(
            [sys.executable, str(script), "--temp-dir", temp_dir, "--jobs", "20"],
            capture_output=True,
            text=True,
            timeout=300,
            env=support.child_env(core),
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(limit 4: kept)" in done.stdout
    assert "0 unfinished, 0 never started" in done.stdout
    assert "4 jobs at once again" in done.stdout  # the removed node's slots came back
