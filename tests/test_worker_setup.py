"""Worker setup and teardown (contract v2): initializer, initargs, finalizer,
current_worker() and WorkerInfo, and the broken-pool rule with PoolBrokenError."""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from collections.abc import Iterator

import pytest

import oddjob
import support
from support import WAIT, Recorder, block_workers, gate


class Connections:
    """A stand-in for a database driver: counts the connections opened and closed, and
    which worker thread holds each. Jobs use the connection of the worker they run on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.opened: list[int] = []  # thread idents, one per connection opened
        self.closed: list[int] = []
        self.local = threading.local()

    def connect(self, dsn: str) -> None:
        assert dsn == "postgresql://test"
        with self._lock:
            self.opened.append(threading.get_ident())
        self.local.conn = ("conn", threading.get_ident())

    def close(self) -> None:
        conn = self.local.conn
        del self.local.conn
        with self._lock:
            self.closed.append(conn[1])

    def query(self, i: int) -> int:
        conn = self.local.conn  # AttributeError if this worker never connected
        assert conn[1] == threading.get_ident()
        if i % 5 == 0:  # 20% of the queries fail, as SQL errors do
            raise ValueError(f"syntax error in query {i}")
        return i


def test_per_worker_connections_survive_failing_jobs(make_pool):
    """The issue's PostgreSQL-shaped run: a pool of 4, 20% of 500 queries failing.
    Exactly 4 connections are opened, the failures reach their callers, and the 4 are
    closed when the pool stops."""
    db = Connections()
    name = make_pool(4, initializer=db.connect, initargs=("postgresql://test",), finalizer=db.close)
    jobs = oddjob.async_perform_many(name, range(500), db.query)
    ok, failed = [], []
    for job in jobs:
        try:
            ok.append(oddjob.await_(job, WAIT))
        except ValueError:
            failed.append(job)
    assert len(failed) == 100 and len(ok) == 400
    assert len(db.opened) == 4
    workers = oddjob.workers(name)
    assert sorted(db.opened) == sorted(t.ident for t in workers)
    assert db.closed == []
    oddjob.stop(name, timeout=WAIT)
    assert sorted(db.closed) == sorted(db.opened), "each worker closed its own connection"
    assert not any(t.is_alive() for t in workers)


def test_initializer_runs_once_per_worker_before_its_first_job(make_pool):
    started = Recorder()
    ready = threading.local()

    def init(tag: str, n: int) -> None:
        ready.value = (tag, n)
        started(threading.get_ident())

    name = make_pool(3, initializer=init, initargs=("db", 7))
    results = oddjob.await_many(
        oddjob.async_perform_many(name, range(30), lambda _: ready.value), WAIT
    )
    assert set(results) == {("db", 7)}
    assert sorted(started.wait_for_count(3)) == sorted(t.ident for t in oddjob.workers(name))
    assert len(started) == 3


def test_finalizer_runs_in_each_worker_when_the_pool_stops(make_pool):
    finalized = Recorder()
    name = make_pool(3, finalizer=lambda: finalized(threading.current_thread()))
    workers = oddjob.workers(name)
    assert finalized.items == []
    oddjob.stop(name, timeout=WAIT)
    assert sorted(t.name for t in finalized.items) == sorted(t.name for t in workers)


def test_a_retired_worker_runs_its_finalizer_and_its_replacement_its_initializer(
    make_pool, oddjob_log
):
    inits, finals = Recorder(), Recorder()
    name = make_pool(
        2,
        restart_on_error=True,
        max_restarts=0,
        max_seconds=60,
        initializer=lambda: inits(threading.get_ident()),
        finalizer=lambda: finals(threading.get_ident()),
    )
    first = oddjob.workers(name)
    inits.wait_for_count(2)
    with pytest.raises(RuntimeError):  # 1 crash > max_restarts=0: every worker is replaced
        oddjob.await_(oddjob.async_perform(name, _boom), WAIT)
    support.join_all(first)
    assert sorted(finals.wait_for_count(2)) == sorted(t.ident for t in first)
    new = [t.ident for t in oddjob.workers(name)]
    assert sorted(inits.wait_for_count(4)[2:]) == sorted(new)


def _boom() -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("exc_type", [ValueError, SystemExit])
def test_a_raising_finalizer_is_logged_never_raised(make_pool, oddjob_log, exc_type):
    def fin() -> None:
        raise exc_type("finalizer trouble")

    name = make_pool(1, finalizer=fin)
    oddjob.stop(name, timeout=WAIT)  # does not raise
    (record,) = oddjob_log.wait_for(lambda r: "finalizer" in r.getMessage())
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is exc_type


def test_a_crashed_workers_finalizer_runs_before_its_replacement_starts(make_pool, oddjob_log):
    events = Recorder()
    name = make_pool(
        1,
        initializer=lambda: events(("init", threading.get_ident())),
        finalizer=lambda: events(("final", threading.get_ident())),
    )

    def bail() -> None:
        raise SystemExit("crash the worker")

    (first,) = oddjob.workers(name)
    oddjob.perform(name, bail)
    items = events.wait_for_count(3)
    assert items[:2] == [("init", first.ident), ("final", first.ident)]
    assert items[2][0] == "init" and items[2][1] != first.ident


def test_a_failed_initializer_has_no_finalizer_run(make_pool, oddjob_log):
    calls = Recorder()
    attempts = [0]

    def init() -> None:
        attempts[0] += 1
        if attempts[0] == 1:
            raise OSError("database starting up")
        calls("init ok")

    name = make_pool(1, initializer=init, finalizer=lambda: calls("final"))
    assert oddjob.await_(oddjob.async_perform(name, lambda: "ran"), WAIT) == "ran"
    oddjob.stop(name, timeout=WAIT)
    assert calls.items == ["init ok", "final"]
    assert oddjob_log.wait_for(lambda r: "initializer" in r.getMessage())


# -- import strings ---------------------------------------------------------------------


@pytest.fixture
def setup_module() -> Iterator[types.ModuleType]:
    """A module that the config file's import strings can name."""
    module = types.ModuleType("oddjob_test_setup")
    module.calls = Recorder()  # type: ignore[attr-defined]

    def init(*args: object) -> None:
        module.calls(("init", args))

    def fin() -> None:
        module.calls("final")

    module.init = init  # type: ignore[attr-defined]
    module.hooks = types.SimpleNamespace(fin=fin)  # type: ignore[attr-defined]
    module.not_callable = 3  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        yield module
    finally:
        del sys.modules[module.__name__]


def test_import_strings_name_the_initializer_and_finalizer(make_pool, setup_module):
    name = make_pool(
        1,
        initializer="oddjob_test_setup:init",
        initargs=["a", 1],
        finalizer="oddjob_test_setup:hooks.fin",
    )
    assert oddjob.await_(oddjob.async_perform(name, lambda: 1), WAIT) == 1
    oddjob.stop(name, timeout=WAIT)
    assert setup_module.calls.items == [("init", ("a", 1)), "final"]


def test_import_strings_from_the_config_file(tmp_path, monkeypatch, setup_module):
    path = tmp_path / "oddjob.toml"
    path.write_text(
        '[extra_pools.db]\npool_size = 2\ninitializer = "oddjob_test_setup:init"\n'
        'initargs = ["dsn"]\nfinalizer = "oddjob_test_setup:hooks.fin"\n'
    )
    monkeypatch.setenv("ODDJOB_CONFIG", str(path))
    support.track("db")
    assert oddjob.await_(oddjob.async_perform("db", lambda: "lazy"), WAIT) == "lazy"
    oddjob.stop("db", timeout=WAIT)
    items = setup_module.calls.items
    assert items.count(("init", ("dsn",))) == 2 and items.count("final") == 2


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("no_such_module_here:init", "cannot import it (ModuleNotFoundError"),
        ("oddjob_test_setup:missing", "cannot import it (AttributeError"),
        ("oddjob_test_setup:not_callable", "names a int; expected a callable"),
    ],
)
def test_a_bad_import_string_fails_start_naming_it(setup_module, value, shown):
    name = support.new_name()
    with pytest.raises(oddjob.ConfigError, match="initializer=") as caught:
        oddjob.start_link(name, initializer=value)
    assert shown in str(caught.value) and value in str(caught.value)
    assert oddjob.whereis(name) is None


# -- current_worker --------------------------------------------------------------------------


def test_current_worker_describes_the_worker_running_the_job(make_pool):
    name = make_pool(2)
    release = gate()
    started = Recorder()

    def job() -> oddjob.WorkerInfo | None:
        started(1)
        release.wait(WAIT)
        return oddjob.current_worker()

    jobs = [oddjob.async_perform(name, job) for _ in range(2)]
    started.wait_for_count(2)
    release.set()
    results = oddjob.await_many(jobs, WAIT)
    infos = [info for info in results if isinstance(info, oddjob.WorkerInfo)]
    assert len(infos) == len(results)
    assert sorted(info.index for info in infos) == [0, 1]
    assert {info.pool for info in infos} == {name}
    assert sorted(info.name for info in infos) == sorted(t.name for t in oddjob.workers(name))
    assert all(info.jobs_run == 1 for info in infos)
    again = oddjob.await_many([oddjob.async_perform(name, oddjob.current_worker)], WAIT)[0]
    assert isinstance(again, oddjob.WorkerInfo)
    assert again.jobs_run == 2
    with pytest.raises(AttributeError):
        again.jobs_run = 5  # type: ignore[misc]  # a frozen snapshot


def test_current_worker_is_none_outside_a_pool_worker(make_pool):
    assert oddjob.current_worker() is None
    with oddjob.Executor(max_workers=1) as executor:
        assert executor.submit(oddjob.current_worker).result(WAIT) is None
    thread_result: list[object] = []
    t = threading.Thread(target=lambda: thread_result.append(oddjob.current_worker()))
    t.start()
    support.join_all([t])
    assert thread_result == [None]


def test_current_worker_in_the_initializer_and_a_replacement_keeps_the_index(make_pool, oddjob_log):
    seen = Recorder()
    name = make_pool(1, restart_on_error=True, initializer=lambda: seen(oddjob.current_worker()))
    (first,) = seen.wait_for_count(1)
    assert (first.pool, first.index, first.jobs_run) == (name, 0, 0)
    with pytest.raises(RuntimeError):
        oddjob.await_(oddjob.async_perform(name, _boom), WAIT)
    replacement = seen.wait_for_count(2)[1]
    assert replacement.index == 0 and replacement.name != first.name
    assert replacement.jobs_run == 0


# -- the broken pool -------------------------------------------------------------------------


def test_an_initializer_that_keeps_failing_breaks_the_pool(make_pool, oddjob_log):
    attempts = Recorder()

    def init() -> None:
        attempts(1)
        raise OSError("the database refuses connections")

    name = support.new_name()
    oddjob.start_link(name, pool_size=2, max_restarts=2, max_seconds=60, initializer=init)
    queued = oddjob.async_perform(name, lambda: "never runs")
    with pytest.raises(oddjob.PoolBrokenError) as caught:
        oddjob.await_(queued, WAIT)
    assert isinstance(caught.value.__cause__, OSError)
    assert len(attempts) == 3, "more than max_restarts=2 failures break it, and no more run"
    for submit in (
        lambda: oddjob.perform(name, print),
        lambda: oddjob.async_perform(name, print),
        lambda: oddjob.perform_many(name, [1], print),
        lambda: oddjob.async_perform_many(name, [1], print),
    ):
        with pytest.raises(oddjob.PoolBrokenError) as again:
            submit()
        assert isinstance(again.value.__cause__, OSError)
    pool = oddjob.whereis(name)
    assert pool is not None and pool.broken and "broken" in repr(pool)
    records = oddjob_log.wait_for(lambda r: "is broken" in r.getMessage())
    assert records[0].levelno == logging.ERROR
    # No worker is left spinning: they have all gone, and no more attempts are made.
    support.join_all(oddjob.workers(name))
    assert len(attempts) == 3
    # Stopped and started again, the pool works (once its initializer does).
    oddjob.stop(name, timeout=WAIT)
    oddjob.start_link(name, pool_size=2)
    assert oddjob.await_(oddjob.async_perform(name, lambda: "back"), WAIT) == "back"


def test_a_broken_pool_lets_running_jobs_finish(make_pool, oddjob_log):
    lock = threading.Lock()
    attempts = [0]
    fail_now = gate()
    release = gate()

    def init() -> None:
        with lock:
            attempts[0] += 1
            first = attempts[0] == 1
        if not first:  # the first worker starts; every later one fails, when told to
            fail_now.wait(WAIT)
            raise OSError("no more connections")

    name = support.new_name()
    oddjob.start_link(name, pool_size=2, max_restarts=1, max_seconds=60, initializer=init)
    (running,) = block_workers(name, 1, release)
    queued = oddjob.async_perform(name, lambda: "queued")
    fail_now.set()
    with pytest.raises(oddjob.PoolBrokenError):
        oddjob.await_(queued, WAIT)
    assert not running.done(), "the running job goes on while the pool breaks"
    release.set()
    assert oddjob.await_(running, WAIT) == "blocker 0"
    support.join_all(oddjob.workers(name))


def test_a_broken_pool_says_how_many_queued_jobs_it_dropped(make_pool, oddjob_log):
    queued = gate()

    def init() -> None:
        queued.wait(WAIT)  # fail once the jobs are in: none of them can have run
        raise OSError("the database refuses connections")

    name = support.new_name()
    oddjob.start_link(name, pool_size=1, max_restarts=2, max_seconds=60, initializer=init)
    for _ in range(3):
        oddjob.perform(name, print, "never printed")
    async_job = oddjob.async_perform(name, print, "never printed either")
    queued.set()
    with pytest.raises(oddjob.PoolBrokenError):
        oddjob.await_(async_job, WAIT)
    (record,) = oddjob_log.wait_for(lambda r: "queued jobs dropped" in r.getMessage())
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"pool {name!r} is broken: 4 queued jobs dropped"
    pool = oddjob.whereis(name)
    assert pool is not None
    stats = pool.stats()
    assert (stats.failed, stats.completed, stats.queued, stats.submitted) == (4, 0, 0, 4)


def test_initializer_failures_are_retried_with_backoff_not_spun(make_pool, oddjob_log):
    attempts = Recorder()

    def init() -> None:
        attempts(time.monotonic())
        raise OSError("down")

    # A window too short to ever hold more than max_restarts failures: the pool never
    # breaks, so only the backoff (10 ms, doubling) keeps it from spinning.
    name = support.new_name()
    oddjob.start_link(name, pool_size=1, max_restarts=3, max_seconds=0.001, initializer=init)
    times = attempts.wait_for_count(6)
    assert times[5] - times[0] >= 0.9 * (0.01 + 0.02 + 0.04 + 0.08 + 0.16), times
    assert times[5] - times[4] >= 0.9 * 0.16
    assert not oddjob.whereis(name).broken  # type: ignore[union-attr]
    oddjob.stop(name, timeout=WAIT)
