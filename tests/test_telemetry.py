"""Telemetry (contract v2): attach, detach and handlers(); the pool and worker events,
with their measurements, metadata and the thread each runs on; a raising handler is
detached and logged once."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import oddjob
import support
from oddjob import _config, telemetry
from support import WAIT, Events, Recorder, block_workers, gate

POOL_EVENTS = ("pool.start", "pool.stop", "pool.restart", "pool.broken")
WORKER_EVENTS = ("worker.start", "worker.stop", "worker.crash")
# Every event name of API.md's Observability section.
CONTRACT_EVENTS = {
    "job.start",
    "job.stop",
    "job.exception",
    "job.retry",
    "job.cancelled",
    "job.dropped",
    "job.expired",
    "worker.start",
    "worker.stop",
    "worker.crash",
    "pool.start",
    "pool.stop",
    "pool.restart",
    "pool.broken",
    "queue.full",
}


@pytest.fixture
def attach() -> Iterator[Any]:
    """telemetry.attach, detaching whatever the test attached when it ends."""
    ids: list[Any] = []

    def attach_(handler_id: Any, events: Any, handler: Any) -> None:
        telemetry.attach(handler_id, events, handler)
        ids.append(handler_id)

    yield attach_
    for handler_id in ids:
        telemetry.detach(handler_id)
    assert telemetry.handlers() == [], "a test left a handler attached"


@pytest.fixture
def record(attach) -> Any:
    """record(pool) attaches an Events recorder of every pool and worker event of pool."""

    def record_(pool: str) -> Events:
        events = Events(pool)
        attach(("record", pool), [*POOL_EVENTS, *WORKER_EVENTS], events.handler)
        return events

    return record_


def noop(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    pass


# -- attach, detach, handlers ---------------------------------------------------------------


def test_events_lists_every_event_of_the_contract():
    assert telemetry.EVENTS == CONTRACT_EVENTS
    assert isinstance(telemetry.EVENTS, frozenset)


def test_attach_lists_the_handler_and_detach_removes_it(attach):
    attach("a", "pool.start", noop)
    attach(("b", 2), ["worker.start", "worker.stop", "worker.start"], noop)
    first, second = telemetry.handlers()
    assert first == ("a", ("pool.start",), noop)
    assert (second.id, second.events, second.handler) == (
        ("b", 2),
        ("worker.start", "worker.stop"),
        noop,
    )
    with pytest.raises(AttributeError):
        setattr(first, "id", "changed")  # noqa: B010 (frozen: the setattr must fail)
    assert telemetry.detach("a") is True
    assert telemetry.detach("a") is False
    assert [info.id for info in telemetry.handlers()] == [("b", 2)]
    assert telemetry.detach(("b", 2)) is True
    assert telemetry.handlers() == []


def test_handlers_returns_a_copy(attach):
    attach("a", "pool.start", noop)
    listed = telemetry.handlers()
    listed.clear()
    assert len(telemetry.handlers()) == 1


@pytest.mark.parametrize(
    "handler_id, events, handler, error, match",
    [
        ("x", "pool.begin", noop, ValueError, "unknown telemetry event 'pool.begin'"),
        ("x", ["pool.start", "job.done"], noop, ValueError, "'job.done'"),
        ("x", [], noop, ValueError, "at least one event"),
        ("x", 42, noop, TypeError, "iterable"),
        ("x", ["pool.start", 42], noop, TypeError, "must be a str"),
        ("x", "pool.start", "not callable", TypeError, "callable"),
        ("x", "pool.start", None, TypeError, "callable"),
        (["not", "hashable"], "pool.start", noop, TypeError, "hashable"),
        ({}, "pool.start", noop, TypeError, "hashable"),
    ],
)
def test_a_bad_attach_raises_and_changes_nothing(attach, handler_id, events, handler, error, match):
    attach("kept", "pool.stop", noop)
    before = telemetry.handlers()
    with pytest.raises(error, match=match):
        telemetry.attach(handler_id, events, handler)
    assert telemetry.handlers() == before


def test_an_id_already_attached_raises_and_keeps_the_first(attach, make_pool):
    first, second = Recorder(), Recorder()
    attach("dup", "pool.start", lambda *args: first(args[0]))
    with pytest.raises(ValueError, match="'dup' is already attached"):
        telemetry.attach("dup", "pool.start", lambda *args: second(args[0]))
    assert len(telemetry.handlers()) == 1
    make_pool(1)
    assert first.wait_for_count(1) == ["pool.start"]
    assert second.items == []


def test_attach_and_detach_from_many_threads(attach):
    def churn(i: int) -> None:
        for n in range(50):
            telemetry.attach((i, n), "pool.start", noop)
        for n in range(0, 50, 2):
            assert telemetry.detach((i, n))

    support.run_threads(churn, 8)
    ids = [info.id for info in telemetry.handlers()]
    assert len(ids) == 8 * 25
    assert set(ids) == {(i, n) for i in range(8) for n in range(1, 50, 2)}
    for handler_id in ids:
        telemetry.detach(handler_id)


def test_a_detached_handler_is_not_called(record, make_pool):
    name = support.new_name()
    events = record(name)
    telemetry.detach(("record", name))
    oddjob.start_link(name, pool_size=1)
    oddjob.stop(name, timeout=WAIT)
    assert events.items == []


def test_importing_oddjob_imports_no_asyncio_and_attaches_nothing(core):
    result = support.run_child(
        core,
        """
        import sys, threading
        import oddjob
        assert "oddjob.telemetry" in sys.modules, "import oddjob brings oddjob.telemetry"
        assert callable(oddjob.telemetry.attach)
        assert "asyncio" not in sys.modules, "importing oddjob imported asyncio"
        assert oddjob.telemetry.handlers() == []
        assert threading.active_count() == 1
        """,
    )
    assert result.returncode == 0, result.stderr


# -- pool events ------------------------------------------------------------------------------


def test_pool_start_and_stop_on_the_calling_thread(record):
    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=3)
    (start,) = events.named("pool.start")
    assert start.measurements == {"pool_size": 3}
    assert start.metadata == {"pool": name}
    assert start.thread is threading.current_thread()
    events.wait_for("worker.start", 3)
    assert not events.named("pool.stop")

    oddjob.stop(name, timeout=WAIT)
    (stop,) = events.named("pool.stop")
    assert stop.measurements == {} and stop.metadata == {"pool": name}
    assert stop.thread is threading.current_thread()
    # stop() waited for the workers: their worker.stop events all came first.
    assert [e.event for e in events.items][-4:] == ["worker.stop"] * 3 + ["pool.stop"]


def test_pool_start_and_stop_with_a_pool_object_and_a_configured_pool(record):
    name = support.new_name()
    events = record(name)
    with oddjob.Pool(name, pool_size=2):
        assert [e.event for e in events.named(*POOL_EVENTS)] == ["pool.start"]
    assert [e.event for e in events.named(*POOL_EVENTS)] == ["pool.start", "pool.stop"]

    configured = support.new_name()
    lazy = record(configured)
    oddjob.configure(extra_pools={configured: {"pool_size": 4}})
    try:
        oddjob.perform(configured, print, end="")  # starts it
    finally:
        _config.reset()
    (start,) = lazy.named("pool.start")
    assert start.measurements == {"pool_size": 4}


def test_pool_stop_comes_even_when_the_join_times_out(record):
    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=1)
    release = gate()
    block_workers(name, 1, release)
    with pytest.raises(TimeoutError):
        oddjob.stop(name, timeout=0.01)
    assert [e.event for e in events.named("pool.stop")] == ["pool.stop"]
    release.set()
    events.wait_for("worker.stop")


def test_pool_restart_when_crashes_exceed_the_intensity(record):
    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=2, max_restarts=1, max_seconds=60, restart_on_error=True)

    def boom() -> None:
        raise RuntimeError("boom")

    for _ in range(2):  # 2 crashes > max_restarts=1
        with pytest.raises(RuntimeError):
            oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    (restart,) = events.wait_for("pool.restart")
    assert restart.measurements == {"crashes": 2}
    assert restart.metadata == {"pool": name}
    assert oddjob.supervisor(name).restarts == 1
    # It runs on the worker whose crash restarted the pool, after that worker.crash.
    crashes = events.named("worker.crash")
    assert restart.thread is crashes[-1].thread
    assert events.items.index(crashes[-1]) < events.items.index(restart)


def test_pool_broken_carries_the_initializers_exception(record, oddjob_log):
    error = OSError("the database refuses connections")

    def init() -> None:
        raise error

    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=2, max_restarts=1, max_seconds=60, initializer=init)
    (broken,) = events.wait_for("pool.broken")
    assert broken.measurements == {}
    assert broken.metadata == {"pool": name, "exception": error}
    assert broken.thread.name.startswith(f"oddjob-{name}-")
    assert oddjob.whereis(name).broken  # type: ignore[union-attr]
    assert not events.named("worker.start"), "no worker got past its initializer"


# -- worker events ----------------------------------------------------------------------------


def test_worker_start_on_each_worker_after_its_initializer(record):
    initialized = Recorder()

    def init() -> None:
        initialized(threading.current_thread())

    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=3, initializer=init)
    starts = events.wait_for("worker.start", 3)
    assert sorted(e.metadata["index"] for e in starts) == [0, 1, 2]
    for start in starts:
        assert start.measurements == {}
        assert set(start.metadata) == {"pool", "worker", "index"}
        assert start.metadata["worker"] == start.thread.name
        assert start.thread.name.startswith(f"oddjob-{name}-")
        assert start.thread in initialized.items, "the initializer ran on it first"
        assert start.worker is not None and start.worker.index == start.metadata["index"]
    assert set(oddjob.workers(name)) == {e.thread for e in starts}


def test_worker_stop_counts_the_jobs_it_ran(record):
    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=1)
    oddjob.await_many(oddjob.async_perform_many(name, range(7), abs), WAIT)
    (worker,) = oddjob.workers(name)
    oddjob.stop(name, timeout=WAIT)
    (stop,) = events.named("worker.stop")
    assert stop.measurements == {"jobs_run": 7}
    assert stop.metadata == {"pool": name, "worker": worker.name, "index": 0}
    assert stop.thread is worker


def test_worker_stop_for_each_worker_retired_by_a_restart(record):
    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=3, max_restarts=0, max_seconds=60, restart_on_error=True)
    events.wait_for("worker.start", 3)

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    events.wait_for("pool.restart")
    stops = events.wait_for("worker.stop", 2)  # the two that did not crash are retired
    (crash,) = events.named("worker.crash")
    assert {e.metadata["index"] for e in stops} | {crash.metadata["index"]} == {0, 1, 2}
    events.wait_for("worker.start", 6)  # every worker replaced


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_worker_crash_on_a_base_exception_and_its_replacement_starts(record, oddjob_log, exc_type):
    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=1)
    (first,) = events.wait_for("worker.start")
    error = exc_type("raised inside a job")

    def bail() -> None:
        raise error

    oddjob.perform(name, bail)
    (crash,) = events.wait_for("worker.crash")
    assert crash.measurements == {}
    assert crash.metadata == {
        "pool": name,
        "worker": first.metadata["worker"],
        "index": 0,
        "exception": error,
    }
    assert crash.thread is first.thread
    second = events.wait_for("worker.start", 2)[1]
    assert second.metadata["index"] == 0 and second.thread is not first.thread
    assert not events.named("worker.stop"), "a crashed worker does not also stop"


def test_worker_crash_when_its_initializer_raises(record, oddjob_log):
    attempts = Recorder()

    def init() -> None:
        attempts(1)
        if len(attempts) == 1:
            raise ValueError("first connection refused")

    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=1, max_restarts=3, max_seconds=60, initializer=init)
    (crash,) = events.wait_for("worker.crash")
    assert isinstance(crash.metadata["exception"], ValueError)
    assert crash.metadata["index"] == 0
    (start,) = events.wait_for("worker.start")  # the replacement, whose initializer works
    assert start.thread is not crash.thread
    assert events.items.index(crash) < events.items.index(start)


def test_worker_events_without_an_initializer_carry_the_worker_name(record):
    name = support.new_name()
    events = record(name)
    oddjob.start_link(name, pool_size=2)
    starts = events.wait_for("worker.start", 2)
    assert {e.metadata["worker"] for e in starts} == {t.name for t in oddjob.workers(name)}


# -- a handler that raises ---------------------------------------------------------------------


def test_a_raising_handler_is_detached_and_logged_once(attach, record, oddjob_log, caplog):
    calls = Recorder()
    error = RuntimeError("the metrics backend is down")

    def broken(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        calls(event)
        raise error

    name = support.new_name()
    attach("broken", ["worker.start", "pool.stop"], broken)
    events = record(name)  # attached after it: sees each event once broken has failed
    oddjob.start_link(name, pool_size=4)
    events.wait_for("worker.start", 4)  # every worker went on despite the handler
    assert [info.id for info in telemetry.handlers()] == [("record", name)]
    oddjob.stop(name, timeout=WAIT)
    assert events.named("pool.stop"), "the other handler still gets events"

    records = [r for r in caplog.records if "telemetry handler" in r.getMessage()]
    assert len(records) == 1, records
    (logged,) = records
    assert logged.levelno == logging.ERROR and logged.name == "oddjob"
    assert "'broken'" in logged.getMessage() and "'worker.start'" in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[1] is error
    assert 1 <= len(calls) <= 4 and set(calls.items) == {"worker.start"}


def test_a_raising_handler_on_the_calling_thread_does_not_fail_the_call(attach, oddjob_log):
    def broken(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        raise ValueError("bad handler")

    attach("broken", "pool.start", broken)
    name = support.new_name()
    pool = oddjob.start_link(name, pool_size=1)
    assert pool.running
    oddjob_log.wait_for(lambda r: "telemetry handler 'broken'" in r.getMessage())
    assert telemetry.handlers() == []


def test_a_handler_reattached_after_failing_is_called_again(attach, oddjob_log, make_pool):
    calls = Recorder()

    def flaky(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        calls(event)
        if len(calls) == 1:
            raise ValueError("only the first time")

    attach("flaky", "pool.start", flaky)
    make_pool(1)
    assert telemetry.handlers() == []
    attach("flaky", "pool.start", flaky)
    make_pool(1)
    assert calls.items == ["pool.start", "pool.start"]
    assert len(telemetry.handlers()) == 1


def test_a_handler_raising_systemexit_on_a_worker_is_detached_and_the_worker_lives(
    attach, record, oddjob_log
):
    def bail(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        raise SystemExit("a handler must not take the worker down")

    name = support.new_name()
    attach("bail", "worker.start", bail)
    events = record(name)
    oddjob.start_link(name, pool_size=1)
    (start,) = events.wait_for("worker.start")
    assert oddjob.await_(oddjob.async_perform(name, threading.current_thread), WAIT) is start.thread
    assert not events.named("worker.crash")
    assert [info.id for info in telemetry.handlers()] == [("record", name)]
    oddjob_log.wait_for(lambda r: "telemetry handler 'bail'" in r.getMessage())


def test_ctrl_c_in_a_handler_on_the_calling_thread_is_not_swallowed(attach):
    def interrupted(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    attach("interrupted", "pool.start", interrupted)
    name = support.new_name()
    with pytest.raises(KeyboardInterrupt):
        oddjob.start_link(name, pool_size=1)
    assert [info.id for info in telemetry.handlers()] == ["interrupted"]


# -- events of the core, through attach ------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def record_jobs(attach, name: str, events: tuple[str, ...]) -> Events:
    recorder = Events(name)

    def handler(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        recorder.handler(event, measurements, {**metadata, "request_id": request_id.get()})

    attach(("jobs", name), events, handler)
    return recorder


def test_job_start_and_stop_run_on_the_worker_in_the_jobs_context(attach, make_pool):
    name = make_pool(1)
    events = record_jobs(attach, name, ("job.start", "job.stop"))

    def job(x: int) -> int:
        time.sleep(0.01)
        return x

    request_id.set("req-42")
    try:
        handle = oddjob.async_perform(name, job, 7)
    finally:
        request_id.set("none")
    assert oddjob.await_(handle, WAIT) == 7
    events.wait_for("job.stop")
    start, stop = events.named("job.start", "job.stop")
    (worker,) = oddjob.workers(name)
    for event in (start, stop):
        assert event.thread is worker
        assert event.metadata == {
            "pool": name,
            "function": job,
            "ref": handle.ref,
            "request_id": "req-42",
        }
    assert set(start.measurements) == {"queue_wait"}
    assert set(stop.measurements) == {"duration", "queue_wait"}
    assert 0.01 <= stop.measurements["duration"] < WAIT
    assert 0 <= stop.measurements["queue_wait"] < WAIT


def test_job_exception_carries_the_exception_and_fire_and_forget_has_no_ref(
    attach, make_pool, oddjob_log
):
    name = make_pool(1)
    events = record_jobs(attach, name, ("job.stop", "job.exception"))
    error = ValueError("bad row")

    def fails() -> None:
        raise error

    oddjob.perform(name, fails)
    (failed,) = events.wait_for("job.exception")
    assert failed.metadata["exception"] is error
    assert failed.metadata["ref"] is None and failed.metadata["function"] is fails
    assert failed.measurements["duration"] >= 0
    assert not events.named("job.stop")


def test_job_cancelled_where_the_cancel_happens(attach, make_pool):
    name = make_pool(1)
    events = record_jobs(attach, name, ("job.cancelled",))
    release = gate()
    block_workers(name, 1, release)
    job = oddjob.async_perform(name, abs, -1)
    assert job.cancel()
    (cancelled,) = events.wait_for("job.cancelled")
    assert cancelled.thread is threading.current_thread()
    assert cancelled.measurements == {}
    assert (cancelled.metadata["ref"], cancelled.metadata["function"]) == (job.ref, abs)


def test_queue_full_on_the_submitting_thread(attach, make_pool):
    name = make_pool(1, max_queue=1, on_full="raise")
    events = record_jobs(attach, name, ("queue.full",))
    release = gate()
    block_workers(name, 1, release)
    oddjob.perform(name, abs, 1)
    with pytest.raises(oddjob.QueueFullError):
        oddjob.perform_many(name, [1], abs)
    (full,) = events.named("queue.full")
    assert full.thread is threading.current_thread()
    assert full.measurements == {"queued": 1, "max_queue": 1, "jobs": 1}
    assert full.metadata == {"pool": name, "on_full": "raise", "request_id": "none"}


def test_a_raising_job_handler_is_detached_and_logged_once_and_the_jobs_run(
    attach, make_pool, oddjob_log, caplog
):
    name = make_pool(4)

    def broken(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        raise RuntimeError("the tracer is down")

    attach("broken-jobs", "job.stop", broken)
    results = oddjob.await_many(oddjob.async_perform_many(name, range(50), abs), WAIT)
    assert results == list(range(50))
    deadline = time.monotonic() + WAIT
    while telemetry.handlers():
        assert time.monotonic() < deadline, "the raising handler was never detached"
        time.sleep(0.002)
    oddjob_log.wait_for(lambda r: "telemetry handler 'broken-jobs'" in r.getMessage())
    logged = [r for r in caplog.records if "telemetry handler" in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "'job.stop'" in logged[0].getMessage()
