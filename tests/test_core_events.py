"""Telemetry events of both cores, through core.set_handlers (oddjob.telemetry's
internal interface): job.start / job.stop / job.exception on the worker, inside the
job's context, before its result is published; job.cancelled and job.dropped where they
happen; queue.full on the submitting thread; handlers that raise are reported to
on_error and never lose a job."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from types import ModuleType
from typing import Any, NamedTuple

import pytest

import oddjob
import support
from support import WAIT, Recorder, block_workers, in_thread_that_exits, join_all

JOB_EVENTS = ("job.start", "job.stop", "job.exception")

# Set by a submitter: visible to the handlers of its job's events.
REQUEST: ContextVar[str | None] = ContextVar("REQUEST", default=None)
# Set by a job: visible to its job.stop handler, never to another job's.
SET_IN_JOB: ContextVar[Any] = ContextVar("SET_IN_JOB", default=None)


class Seen(NamedTuple):
    event: str
    measurements: dict[str, Any]
    metadata: dict[str, Any]
    thread: threading.Thread
    request: str | None
    set_in_job: Any


class Events:
    """Installs a recording handler for some events (and more handlers if asked) on
    one core; what it saw, and what on_error was told."""

    def __init__(self, core: ModuleType) -> None:
        self.core = core
        self._cond = threading.Condition()
        self._seen: list[Seen] = []
        self.errors = Recorder()

    def record(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        seen = Seen(
            event,
            dict(measurements),
            dict(metadata),
            threading.current_thread(),
            REQUEST.get(),
            SET_IN_JOB.get(),
        )
        with self._cond:
            self._seen.append(seen)
            self._cond.notify_all()

    def on_error(self, handler_id: object, event: str, exc: BaseException) -> None:
        self.errors((handler_id, event, exc))

    def install(self, *names: str, table: dict[str, Any] | None = None) -> None:
        full: dict[str, Any] = {name: (("recorder", self.record),) for name in names}
        full.update(table or {})
        self.core.set_handlers(full, self.on_error)

    @property
    def items(self) -> list[Seen]:
        with self._cond:
            return list(self._seen)

    def of(self, *names: str) -> list[Seen]:
        return [seen for seen in self.items if seen.event in names]

    def wait_for(self, n: int, *names: str) -> list[Seen]:
        """Wait until n events named `names` are recorded; those events."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(seen.event in names for seen in self._seen) >= n, WAIT
            )
            seen = list(self._seen)
        assert ok, f"not {n} of {names} within {WAIT}s: {seen}"
        return [s for s in seen if s.event in names]


def empty_table(core: ModuleType) -> None:
    core.set_handlers({}, lambda *report: None)


@pytest.fixture
def events(core: ModuleType) -> Iterator[Events]:
    """An Events on the test's core; the empty table is installed before and after."""
    empty_table(core)
    try:
        yield Events(core)
    finally:
        empty_table(core)


def noop(*args: Any) -> None:
    pass


def worker_thread(*args: Any) -> threading.Thread:
    return threading.current_thread()


def until(predicate: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, f"not within {WAIT}s: {what}"
        time.sleep(0.001)


def test_core_events_names_the_seven_events(core):
    assert (
        frozenset(
            {
                "job.start",
                "job.stop",
                "job.exception",
                "job.cancelled",
                "job.dropped",
                "queue.full",
                "job.expired",
            }
        )
        == core.CORE_EVENTS
    )
    assert type(core.CORE_EVENTS) is frozenset


# ----------------------------------------------------------------------------
# job.start, job.stop, job.exception


def assert_time(value: object) -> float:
    assert type(value) is float and value >= 0, value
    return value


def test_start_and_stop_of_an_async_job_on_its_worker(core, make_pool, events):
    events.install(*JOB_EVENTS)
    name = make_pool(1)

    def job(x: int) -> tuple[threading.Thread, int]:
        time.sleep(0.02)
        return threading.current_thread(), x

    handle = oddjob.async_perform(name, job, 5)
    worker, x = oddjob.await_(handle, timeout=WAIT)
    assert x == 5
    start, stop = events.items  # no waiting: both ran before the result was published
    assert (start.event, stop.event) == ("job.start", "job.stop")
    assert set(start.measurements) == {"queue_wait"}
    assert set(stop.measurements) == {"duration", "queue_wait"}
    assert assert_time(stop.measurements["duration"]) >= 0.019
    assert assert_time(start.measurements["queue_wait"]) == stop.measurements["queue_wait"]
    assert type(handle.ref) is int
    for seen in (start, stop):
        assert seen.metadata == {"pool": name, "function": job, "ref": handle.ref}
        assert seen.thread is worker
    assert worker is not threading.current_thread()


@pytest.mark.parametrize("many", [False, True], ids=["perform", "perform_many"])
def test_start_and_stop_of_fire_and_forget_jobs(core, make_pool, events, many):
    events.install(*JOB_EVENTS)
    name = make_pool(1)
    workers = Recorder()

    def job(i: int) -> None:
        workers(threading.current_thread())

    if many:
        oddjob.perform_many(name, range(3), job)
    else:
        for i in range(3):
            oddjob.perform(name, job, i)
    events.wait_for(3, "job.stop")
    assert [seen.event for seen in events.items] == ["job.start", "job.stop"] * 3
    for seen in events.items:
        assert seen.metadata == {"pool": name, "function": job, "ref": None}
        assert seen.thread is workers.items[0]
        assert assert_time(seen.measurements["queue_wait"]) < WAIT
    for stop in events.of("job.stop"):
        assert assert_time(stop.measurements["duration"]) < WAIT


def test_exception_of_an_async_job_carries_the_raised_object(core, make_pool, events):
    events.install(*JOB_EVENTS)
    name = make_pool(1)
    boom = ValueError("boom")

    def job() -> None:
        time.sleep(0.02)
        raise boom

    handle = oddjob.async_perform(name, job)
    with pytest.raises(ValueError) as raised:
        oddjob.await_(handle, timeout=WAIT)
    assert raised.value is boom
    start, failure = events.items  # no waiting; and no job.stop
    assert (start.event, failure.event) == ("job.start", "job.exception")
    assert set(failure.measurements) == {"duration", "queue_wait"}
    assert assert_time(failure.measurements["duration"]) >= 0.019
    assert_time(failure.measurements["queue_wait"])
    assert failure.metadata == {
        "pool": name,
        "function": job,
        "ref": handle.ref,
        "exception": boom,
    }
    assert failure.metadata["exception"] is boom
    assert failure.thread is start.thread is not threading.current_thread()


def test_exception_of_a_fire_and_forget_job(core, make_pool, events, oddjob_log):
    events.install(*JOB_EVENTS)
    name = make_pool(1)
    boom = KeyError("boom")

    def job() -> None:
        raise boom

    oddjob.perform(name, job)
    [failure] = events.wait_for(1, "job.exception")
    assert failure.metadata == {"pool": name, "function": job, "ref": None, "exception": boom}
    assert failure.metadata["exception"] is boom
    assert_time(failure.measurements["duration"])
    assert [seen.event for seen in events.items] == ["job.start", "job.exception"]
    oddjob_log.wait_for(lambda r: r.exc_info is not None and r.exc_info[1] is boom)


def test_job_events_run_inside_the_jobs_context(core, make_pool, events):
    events.install(*JOB_EVENTS)
    name = make_pool(1)

    def job(tag: str) -> str | None:
        SET_IN_JOB.set(tag)
        return REQUEST.get()

    token = REQUEST.set("request 1")
    try:
        handle = oddjob.async_perform(name, job, "set by job 1")
        failing = oddjob.async_perform(name, lambda: SET_IN_JOB.set("x") and 1 / 0)
    finally:
        REQUEST.reset(token)
    assert oddjob.await_(handle, timeout=WAIT) == "request 1"
    with pytest.raises(ZeroDivisionError):
        oddjob.await_(failing, timeout=WAIT)
    plain = oddjob.async_perform(name, job, "set by job 2")
    assert oddjob.await_(plain, timeout=WAIT) is None
    got = [(seen.event, seen.request, seen.set_in_job) for seen in events.items]
    assert got == [
        ("job.start", "request 1", None),
        ("job.stop", "request 1", "set by job 1"),
        ("job.start", "request 1", None),  # not the previous job's var
        ("job.exception", "request 1", "x"),
        ("job.start", None, None),  # a later submit, without the var
        ("job.stop", None, "set by job 2"),
    ]
    assert SET_IN_JOB.get() is None  # nothing leaked into the submitter's context


@pytest.mark.parametrize("many", [False, True], ids=["perform", "perform_many"])
def test_each_fire_and_forget_job_and_its_events_run_in_a_copy_of_the_context(
    core, make_pool, events, many
):
    events.install(*JOB_EVENTS)
    name = make_pool(1)
    token = REQUEST.set("batch")
    try:
        if many:
            oddjob.perform_many(name, ["a", "b"], SET_IN_JOB.set)
        else:
            oddjob.perform(name, SET_IN_JOB.set, "a")
            oddjob.perform(name, SET_IN_JOB.set, "b")
    finally:
        REQUEST.reset(token)
    events.wait_for(2, "job.stop")
    got = [(seen.event, seen.request, seen.set_in_job) for seen in events.items]
    assert got == [
        ("job.start", "batch", None),
        ("job.stop", "batch", "a"),
        ("job.start", "batch", None),  # job b's copy is not job a's
        ("job.stop", "batch", "b"),
    ]


def test_job_stop_has_run_before_await_returns(core, make_pool, events):
    events.install("job.stop", "job.exception")
    name = make_pool(2)
    seen_by_callbacks = Recorder()

    def callback(job: oddjob.Job[Any]) -> None:
        refs = [seen.metadata["ref"] for seen in events.items]
        seen_by_callbacks(job.ref in refs)

    def job(i: int) -> int:
        if i % 5 == 4:
            raise ValueError(i)
        return i

    for i in range(60):
        handle = oddjob.async_perform(name, job, i)
        handle.add_done_callback(callback)
        if i % 5 == 4:
            with pytest.raises(ValueError):
                oddjob.await_(handle, timeout=WAIT)
        else:
            assert oddjob.await_(handle, timeout=WAIT) == i
        last = events.items[-1]
        assert last.metadata["ref"] == handle.ref, i
        assert last.event == ("job.exception" if i % 5 == 4 else "job.stop")
    seen_by_callbacks.wait_for_count(60)
    assert all(seen_by_callbacks.items)

    batch = oddjob.async_perform_many(name, range(10), job)
    with pytest.raises(ValueError):  # the first failure of the batch: job 4
        oddjob.await_many(batch, timeout=WAIT)
    for member in batch:  # waits for each (and reads the failures)
        failed = isinstance(member.exception(timeout=WAIT), ValueError)
        assert failed == (member.args[0] % 5 == 4)
    # Every job of the batch is done now: each one's event is recorded already.
    refs = {seen.metadata["ref"] for seen in events.items}
    assert {member.ref for member in batch} <= refs


# ----------------------------------------------------------------------------
# job.cancelled, job.dropped


def test_job_cancel_emits_job_cancelled_on_the_cancelling_thread(core, make_pool, events):
    name = make_pool(1)
    release = support.gate()
    [blocker] = block_workers(name, 1, release)
    queued = oddjob.async_perform(name, noop, "queued")
    later = oddjob.async_perform(name, noop, "later")
    events.install("job.cancelled", *JOB_EVENTS)
    assert queued.cancel()
    [cancelled] = events.items
    assert cancelled.event == "job.cancelled"
    assert cancelled.measurements == {}
    assert cancelled.metadata == {"pool": name, "function": noop, "ref": queued.ref}
    assert cancelled.thread is threading.current_thread()
    assert queued.cancel()  # cancelled already: no second event
    assert not blocker.cancel()  # running: none either
    assert len(events.of("job.cancelled")) == 1
    release.set()
    oddjob.await_many([blocker, later], timeout=WAIT)
    # The worker skips the cancelled job without any event of its own.
    assert [seen.metadata["ref"] for seen in events.of(*JOB_EVENTS)] == [later.ref] * 2
    assert len(events.of("job.cancelled")) == 1


def test_stop_cancel_pending_emits_job_cancelled_for_every_queued_job(core, make_pool, events):
    name = make_pool(1)
    pool = oddjob.whereis(name)
    assert pool is not None
    release = support.gate()
    [blocker] = block_workers(name, 1, release)

    def a(*args: Any) -> None:
        pass

    def b(*args: Any) -> None:
        pass

    events.install("job.cancelled", "job.start")
    early = oddjob.async_perform(name, a)
    assert early.cancel()  # its event now, none at the stop
    oddjob.perform(name, a, 1)
    oddjob.perform_many(name, [1, 2], b)
    single = oddjob.async_perform(name, a)
    batch = oddjob.async_perform_many(name, [1, 2], b)
    pool.stop(wait=False, cancel_pending=True)
    got = [(s.event, s.metadata["function"], s.metadata["ref"]) for s in events.items]
    assert got == [
        ("job.cancelled", a, early.ref),
        ("job.cancelled", a, None),
        ("job.cancelled", b, None),
        ("job.cancelled", b, None),
        ("job.cancelled", a, single.ref),
        ("job.cancelled", b, batch[0].ref),
        ("job.cancelled", b, batch[1].ref),
    ]
    for seen in events.items:
        assert seen.measurements == {}
        assert seen.metadata["pool"] == name
        assert seen.thread is threading.current_thread()
    release.set()
    pool.join(time.monotonic() + WAIT)
    assert oddjob.await_(blocker, timeout=WAIT) == "blocker 0"
    assert len(events.items) == 7  # nothing started after the stop


def test_job_dropped_when_the_owner_thread_died_before_the_job_started(core, make_pool, events):
    name = make_pool(1)
    release = support.gate()
    block_workers(name, 1, release)
    events.install("job.dropped", "job.cancelled", *JOB_EVENTS)

    def create() -> list[oddjob.Job[Any]]:
        return [
            oddjob.async_perform(name, noop, "single"),
            *oddjob.async_perform_many(name, ["batch 0", "batch 1"], worker_thread),
        ]

    orphans = in_thread_that_exits(create)
    mine = oddjob.async_perform(name, worker_thread)
    assert events.items == []  # dropped when the worker reaches them, not before
    release.set()
    worker = oddjob.await_(mine, timeout=WAIT)  # FIFO: the orphans came first
    assert [(s.event, s.metadata["ref"]) for s in events.items] == [
        ("job.dropped", orphans[0].ref),
        ("job.dropped", orphans[1].ref),
        ("job.dropped", orphans[2].ref),
        ("job.start", mine.ref),
        ("job.stop", mine.ref),
    ]
    dropped = events.of("job.dropped")
    assert [s.metadata["function"] for s in dropped] == [noop, worker_thread, worker_thread]
    for seen in dropped:
        assert seen.measurements == {}
        assert seen.metadata["pool"] == name
        assert seen.thread is worker
    assert all(job.cancelled() for job in orphans)


# ----------------------------------------------------------------------------
# queue.full


def full_pool(make_pool: Callable[..., str], **options: Any) -> tuple[str, threading.Event]:
    """A pool of 1 whose worker is held (until the gate returned is set) and whose queue
    (max_queue=1) is full."""
    name = make_pool(1, max_queue=1, **options)
    release = support.gate()
    block_workers(name, 1, release)
    oddjob.perform(name, noop)
    return name, release


def test_queue_full_on_raise_once_per_refused_submit(core, make_pool, events):
    name = make_pool(1, max_queue=2, on_full="raise")
    release = support.gate()
    block_workers(name, 1, release)
    events.install("queue.full")
    oddjob.perform(name, noop)  # fits: no event
    assert events.items == []
    with pytest.raises(oddjob.QueueFullError):
        oddjob.perform_many(name, range(3), noop)  # can never fit
    oddjob.perform(name, noop)  # full now
    refusals: list[tuple[Callable[[], object], int]] = [
        (lambda: oddjob.perform(name, noop), 1),
        (lambda: oddjob.async_perform(name, noop), 1),
        (lambda: oddjob.perform_many(name, [1, 2], noop), 2),
        (lambda: oddjob.async_perform_many(name, [1], noop), 1),
    ]
    for submit, _n in refusals:
        with pytest.raises(oddjob.QueueFullError):
            submit()
    got = [(s.measurements, s.metadata, s.thread) for s in events.items]
    me = threading.current_thread()
    fields = {"pool": name, "on_full": "raise"}
    assert got == [
        ({"queued": 1, "max_queue": 2, "jobs": 3}, fields, me),
        *[({"queued": 2, "max_queue": 2, "jobs": n}, fields, me) for _submit, n in refusals],
    ]
    assert {s.event for s in events.items} == {"queue.full"}


def test_queue_full_on_block_is_emitted_before_the_submitter_blocks(core, make_pool, events):
    name, release = full_pool(make_pool, on_full="block")
    queue = oddjob.whereis(name).queue  # type: ignore[union-attr]
    events.install("queue.full")
    ran = Recorder()
    submitter = threading.Thread(
        target=lambda: oddjob.perform_many(name, ["late"], ran), name="test-submitter"
    )
    submitter.start()
    try:
        [full] = events.wait_for(1, "queue.full")
        until(lambda: queue.waiting() == 1, "the submitter waits in line")
        assert submitter.is_alive()  # still blocked, and told already
        assert full.thread is submitter
        assert full.measurements == {"queued": 1, "max_queue": 1, "jobs": 1}
        assert full.metadata == {"pool": name, "on_full": "block"}
        assert ran.items == []
    finally:
        release.set()
    join_all([submitter])
    assert ran.wait_for_count(1) == ["late"]
    assert len(events.items) == 1  # once per submit: not again as it gets in


def test_queue_full_on_block_timeout_once_per_submit(core, make_pool, events):
    name, _release = full_pool(make_pool, on_full="block", block_timeout=0.05)
    events.install("queue.full")
    with pytest.raises(oddjob.QueueFullError, match="block_timeout"):
        oddjob.perform(name, noop)
    with pytest.raises(oddjob.QueueFullError, match="block_timeout"):
        oddjob.async_perform_many(name, [1], noop)
    assert [s.measurements["jobs"] for s in events.items] == [1, 1]
    assert all(s.metadata["on_full"] == "block" for s in events.items)


# ----------------------------------------------------------------------------
# Handlers that raise, and set_handlers' checks


class Abort(BaseException):
    """Not an Exception: what SystemExit or KeyboardInterrupt would do in a handler."""


def raising(exc: BaseException) -> Callable[..., None]:
    def handler(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        raise exc

    return handler


@pytest.mark.parametrize("event", JOB_EVENTS)
@pytest.mark.parametrize("exc_type", [RuntimeError, Abort], ids=["Exception", "BaseException"])
def test_a_worker_side_handler_that_raises_is_reported_and_loses_no_job(
    core, make_pool, events, event, exc_type
):
    exc = exc_type(f"{event} handler fails")
    table = {event: (("bad", raising(exc)), ("recorder", events.record))}
    events.install(*JOB_EVENTS, table=table)
    name = make_pool(1)
    fails = event == "job.exception"

    def job(x: int) -> tuple[threading.Thread, int]:
        if fails:
            raise ValueError(x)
        return threading.current_thread(), x

    handle = oddjob.async_perform(name, job, 1)
    if fails:
        with pytest.raises(ValueError):
            oddjob.await_(handle, timeout=WAIT)
    else:
        assert oddjob.await_(handle, timeout=WAIT)[1] == 1
    assert events.errors.items == [("bad", event, exc)]  # before the result was published
    # The handler after the one that raised still ran.
    assert event in [seen.event for seen in events.items]

    # Fire-and-forget jobs too; the same worker lives on.
    ran = Recorder()

    def fire_and_forget() -> None:
        ran(threading.current_thread())
        if fails:
            raise ValueError("fire and forget")

    oddjob.perform(name, fire_and_forget)
    ran.wait_for_count(1)
    events.errors.wait_for_count(2)
    assert events.errors.items[1][:2] == ("bad", event)
    after = oddjob.async_perform(name, worker_thread)
    worker = oddjob.await_(after, timeout=WAIT)
    assert ran.items == [worker]
    if not fails:
        assert oddjob.await_(handle, timeout=WAIT)[0] is worker


def test_a_queue_full_handler_that_raises_is_reported_and_the_submit_still_refused(
    core, make_pool, events
):
    name, _release = full_pool(make_pool, on_full="raise")
    exc = RuntimeError("queue.full handler fails")
    events.install(table={"queue.full": (("bad", raising(exc)), ("recorder", events.record))})
    with pytest.raises(oddjob.QueueFullError):
        oddjob.perform(name, noop)
    assert events.errors.items == [("bad", "queue.full", exc)]
    assert [seen.event for seen in events.items] == ["queue.full"]


# A handler raising a BaseException (KeyboardInterrupt, SystemExit) must not skip the
# release of the job's waiters and callbacks: job.cancelled and job.dropped come after
# it. job.dropped runs on a worker, so there it is reported like any job event's.
RAISING_KINDS = [
    pytest.param(RuntimeError, id="Exception"),
    pytest.param(Abort, id="BaseException"),
]


@pytest.mark.parametrize("exc_type", RAISING_KINDS)
def test_a_job_cancelled_handler_that_raises_leaves_the_job_cancelled_and_settled(
    core, make_pool, events, exc_type
):
    name = make_pool(1)
    release = support.gate()
    block_workers(name, 1, release)
    job = oddjob.async_perform(name, noop)
    callbacks = Recorder()
    job.add_done_callback(callbacks)
    exc = exc_type("job.cancelled handler fails")
    events.install(table={"job.cancelled": (("bad", raising(exc)), ("recorder", events.record))})
    try:
        assert job.cancel()
    except Abort:
        pass  # may reach the cancelling thread: it is not a worker
    assert job.cancelled()
    assert callbacks.items == [job]  # its waiters and callbacks were released
    if exc_type is RuntimeError:
        assert events.errors.items == [("bad", "job.cancelled", exc)]
        assert [seen.event for seen in events.items] == ["job.cancelled"]


@pytest.mark.parametrize("exc_type", RAISING_KINDS)
def test_a_job_cancelled_handler_that_raises_during_stop_leaves_every_job_settled(
    core, make_pool, events, exc_type
):
    name = make_pool(1)
    pool = oddjob.whereis(name)
    assert pool is not None
    release = support.gate()
    block_workers(name, 1, release)
    oddjob.perform(name, noop)
    jobs = oddjob.async_perform_many(name, range(3), noop)
    callbacks = Recorder()
    for job in jobs:
        job.add_done_callback(callbacks)
    exc = exc_type("job.cancelled handler fails")
    events.install(table={"job.cancelled": (("bad", raising(exc)),)})
    try:
        pool.stop(wait=False, cancel_pending=True)
    except Abort:
        pass  # may reach the stopping thread: it is not a worker
    release.set()
    pool.join(time.monotonic() + WAIT)
    assert all(job.cancelled() for job in jobs)
    assert sorted(callbacks.items, key=lambda job: job.ref) == jobs
    if exc_type is RuntimeError:
        assert events.errors.items == [("bad", "job.cancelled", exc)] * 4


@pytest.mark.parametrize("exc_type", RAISING_KINDS)
def test_a_job_dropped_handler_that_raises_is_reported_and_settles_the_job(
    core, make_pool, events, exc_type
):
    name = make_pool(1)
    release = support.gate()
    [blocker] = block_workers(name, 1, release)
    orphan = in_thread_that_exits(lambda: oddjob.async_perform(name, noop))
    callbacks = Recorder()
    orphan.add_done_callback(callbacks)
    exc = exc_type("job.dropped handler fails")
    events.install(table={"job.dropped": (("bad", raising(exc)),)})
    before = oddjob.workers(name)
    release.set()
    assert oddjob.await_(blocker, timeout=WAIT) == "blocker 0"
    mine = oddjob.async_perform(name, worker_thread)
    assert [oddjob.await_(mine, timeout=WAIT)] == before  # the worker lived on
    assert orphan.cancelled()
    assert callbacks.items == [orphan]
    assert events.errors.items == [("bad", "job.dropped", exc)]


def test_an_on_error_that_raises_does_not_lose_the_job(core, make_pool, events):
    def on_error(*report: object) -> None:
        raise RuntimeError("telemetry's own report failed")

    core.set_handlers({"job.stop": (("bad", raising(RuntimeError("handler"))),)}, on_error)
    name = make_pool(1)
    assert oddjob.await_(oddjob.async_perform(name, lambda: "kept"), timeout=WAIT) == "kept"


MALFORMED_TABLES = [
    pytest.param({"job.stop": (("id", 42),)}, id="handler not callable"),
    pytest.param({"job.stop": ("id", noop)}, id="a pair, not a tuple of pairs"),
    pytest.param({"job.stop": (["id", noop],)}, id="a list, not a pair"),
    pytest.param({"job.stop": (("id", noop, "extra"),)}, id="three items"),
    pytest.param({"job.stop": (("id",),)}, id="one item"),
    pytest.param({"job.stop": 5}, id="not a tuple"),
    pytest.param({"job.start": (("ok", noop),), "queue.full": ((1, None),)}, id="one bad event"),
]


@pytest.mark.parametrize("table", MALFORMED_TABLES)
def test_set_handlers_rejects_a_malformed_table_and_keeps_the_last(core, make_pool, events, table):
    events.install("job.stop")
    with pytest.raises(TypeError):
        core.set_handlers(table, events.on_error)
    name = make_pool(1)
    handle = oddjob.async_perform(name, noop)
    oddjob.await_(handle, timeout=WAIT)
    assert [(s.event, s.metadata["ref"]) for s in events.items] == [("job.stop", handle.ref)]


@pytest.mark.parametrize("on_error", [None, 42, "logger"])
def test_set_handlers_rejects_an_on_error_that_is_not_callable(core, events, on_error):
    with pytest.raises(TypeError, match="on_error"):
        core.set_handlers({"job.stop": (("id", noop),)}, on_error)


def test_the_empty_table_detaches_every_handler(core, make_pool, events):
    events.install(*core.CORE_EVENTS)
    name = make_pool(1)
    oddjob.await_(oddjob.async_perform(name, noop), timeout=WAIT)
    assert len(events.items) == 2
    empty_table(core)
    oddjob.await_(oddjob.async_perform(name, noop), timeout=WAIT)
    oddjob.await_(oddjob.async_perform(name, noop), timeout=WAIT)
    assert len(events.items) == 2
