"""Bounded queues (contract v2, "Backpressure"): max_queue, on_full, block_timeout and
QueueFullError. A submit to a full queue blocks its thread in line, first come first
served, until the whole submission fits; stop() wakes the line; fired timers and a
pool's own jobs never wait; a call that raises has queued nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import pytest

import oddjob
import support
from oddjob import _config as config
from support import SETTLE, WAIT, Recorder

# Slack for "on time" and "at once" (a loaded CI machine is slow, never this slow).
LATE = 3.0


def until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll predicate until it is true; fail the test, saying what, after timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.001)


class Held:
    """Jobs that record their tag as they start, then wait for a gate of their own:
    the test frees the single worker one job at a time (`release(tag)`)."""

    def __init__(self) -> None:
        self.started = Recorder()
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def gate(self, tag: str) -> threading.Event:
        with self._lock:
            if tag not in self._gates:
                self._gates[tag] = support.gate()  # the core fixture opens it after the test
            return self._gates[tag]

    def __call__(self, tag: str) -> str:
        self.started(tag)
        self.gate(tag).wait(WAIT)
        return tag

    def release(self, *tags: str) -> None:
        for tag in tags:
            self.gate(tag).set()


class InThread:
    """call() on a thread of its own, so that the test can watch it block."""

    def __init__(self, call: Callable[[], Any], name: str = "submitter") -> None:
        self._call = call
        self.result: Any = None
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self.thread = threading.Thread(target=self._run, name=f"test-{name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float = WAIT) -> InThread:
        support.join_all([self.thread], timeout)
        return self

    @property
    def elapsed(self) -> float:
        assert self.ended_at is not None
        return self.ended_at - self.started_at


def bounded(call: Callable[[], Any]) -> Any:
    """call() on a thread of its own, joined with a bound (a submit that should not
    wait fails the test instead of hanging it); its result, or its exception raised."""
    submitter = InThread(call).join()
    if submitter.error is not None:
        raise submitter.error
    return submitter.result


def queue_of(name: str) -> Any:
    pool = oddjob.whereis(name)
    assert pool is not None
    return pool.queue


def tags(name: str) -> list[str]:
    """The tags of the jobs queued in pool `name`, in FIFO order."""
    return [args[0] for _fn, args, _kwargs, _job in queue_of(name).snapshot()]


def in_line(queue: Any, n: int) -> bool:
    return bool(queue.waiting() == n)


def fill(name: str, held: Held, n: int) -> None:
    """Occupy the pool's single worker with "running", then queue q0 .. q(n-1)."""
    oddjob.perform(name, held, "running")
    held.started.wait_for_count(1)
    for i in range(n):
        oddjob.perform(name, held, f"q{i}")
    assert len(queue_of(name)) == n


# One-job submissions of every sending call: module functions with a name, module
# functions with the Pool object, and the Pool object's methods.
SUBMITS: dict[str, Callable[[str, Held, str], object]] = {
    "perform": lambda name, fn, tag: oddjob.perform(name, fn, tag),
    "perform_many": lambda name, fn, tag: oddjob.perform_many(name, [tag], fn),
    "async_perform": lambda name, fn, tag: oddjob.async_perform(name, fn, tag),
    "async_perform_many": lambda name, fn, tag: oddjob.async_perform_many(name, [tag], fn),
    "perform(Pool)": lambda name, fn, tag: oddjob.perform(_pool(name), fn, tag),
    "Pool.perform": lambda name, fn, tag: _pool(name).perform(fn, tag),
    "Pool.perform_many": lambda name, fn, tag: _pool(name).perform_many([tag], fn),
    "Pool.async_perform": lambda name, fn, tag: _pool(name).async_perform(fn, tag),
    "Pool.async_perform_many": lambda name, fn, tag: _pool(name).async_perform_many([tag], fn),
}
SYNC_SUBMITS = ["perform", "perform_many", "async_perform", "async_perform_many"]


def _pool(name: str) -> oddjob.Pool:
    pool = oddjob.whereis(name)
    assert pool is not None
    return pool


# -- blocking: the submitter waits in line, with nothing queued -------------------------


@pytest.mark.parametrize("kind", list(SUBMITS))
def test_a_submit_to_a_full_queue_blocks_until_a_worker_takes_a_job(make_pool, kind):
    held = Held()
    name = make_pool(1, max_queue=2)
    fill(name, held, 2)
    queue = queue_of(name)
    assert queue.max_queue == 2 and queue.on_full == "block"
    submitter = InThread(lambda: SUBMITS[kind](name, held, "blocked"))
    until(lambda: queue.waiting() == 1, "the submitter is in line")
    time.sleep(SETTLE)
    assert submitter.alive(), "the submit returned although the queue is full"
    assert queue.waiting() == 1
    assert tags(name) == ["q0", "q1"], "the blocked submit queued its job"

    held.release("running")  # the worker takes q0 (which holds it): one slot comes free
    submitter.join()
    assert submitter.error is None
    assert held.started.wait_for_count(2) == ["running", "q0"]
    assert tags(name) == ["q1", "blocked"]
    assert queue.waiting() == 0
    if kind.startswith(("async", "Pool.async")):  # the Job of the job now queued
        (job,) = submitter.result if "many" in kind else [submitter.result]
        assert job.args == ("blocked",) and not job.done()
        assert queue.snapshot()[1][3] is job


def test_a_pool_made_with_Pool_honours_its_bound(core):
    """oddjob.Pool(...) started directly: its own perform (bound to the dispatcher)
    waits for room as the module functions do."""
    held = Held()
    pool = oddjob.Pool(support.new_name(), pool_size=1, max_queue=1).start()
    pool.perform(held, "running")
    held.started.wait_for_count(1)
    pool.perform(held, "q0")
    submitter = InThread(lambda: pool.perform(held, "blocked"))
    until(lambda: pool.queue.waiting() == 1, "the submitter is in line")
    time.sleep(SETTLE)
    assert submitter.alive() and len(pool.queue) == 1
    held.release("running")
    submitter.join()
    assert submitter.error is None
    assert tags(pool.name) == ["blocked"]


def test_waiting_submitters_are_served_in_arrival_order(make_pool):
    held = Held()
    name = make_pool(1, max_queue=1)
    fill(name, held, 1)
    queue = queue_of(name)
    submitters = []
    for k in range(1, 6):  # each in line before the next arrives
        submitters.append(InThread(partial(oddjob.perform, name, held, f"s{k}"), f"s{k}"))
        until(partial(in_line, queue, k), f"submitter s{k} is in line")
    time.sleep(SETTLE)
    assert tags(name) == ["q0"] and all(s.alive() for s in submitters)

    previous = ["running", "q0", "s1", "s2", "s3", "s4"]
    for k, submitter in enumerate(submitters, 1):
        held.release(previous[k - 1])  # the worker takes the one queued job: one slot free
        held.started.wait_for_count(k + 1)
        until(lambda: len(queue) == 1, f"a waiting submitter queued its job (round {k})")
        submitter.join()
        assert tags(name) == [f"s{k}"], "a later submitter went before an earlier one"
        assert submitter.error is None
        assert queue.waiting() == 5 - k
        assert all(s.alive() for s in submitters[k:])
    held.release("s4")
    assert held.started.wait_for_count(7) == ["running", "q0", "s1", "s2", "s3", "s4", "s5"]


# -- block_timeout and on_full="raise" ----------------------------------------------------


@pytest.mark.parametrize("timeout", [0.2, timedelta(milliseconds=200)])
@pytest.mark.parametrize("kind", SYNC_SUBMITS)
def test_block_timeout_raises_QueueFullError_with_nothing_queued(make_pool, timeout, kind):
    held = Held()
    name = make_pool(1, max_queue=1, block_timeout=timeout)
    fill(name, held, 1)
    queue = queue_of(name)
    assert queue.block_timeout == pytest.approx(0.2)
    submitter = InThread(lambda: SUBMITS[kind](name, held, "late"))
    until(lambda: queue.waiting() == 1 or not submitter.alive(), "the submitter is in line")
    assert queue.waiting() == 1 and tags(name) == ["q0"]
    submitter.join()
    assert isinstance(submitter.error, oddjob.QueueFullError), submitter.error
    assert "block_timeout" in str(submitter.error)
    assert 0.2 - 0.01 <= submitter.elapsed < 0.2 + LATE
    assert tags(name) == ["q0"] and queue.waiting() == 0
    held.release("running", "q0")
    until(lambda: len(queue) == 0, "the queue drains")
    oddjob.stop(name, timeout=WAIT)
    assert held.started.items == ["running", "q0"], "the timed-out submit ran anyway"


@pytest.mark.parametrize("kind", list(SUBMITS))
def test_on_full_raise_raises_at_once_with_nothing_queued(make_pool, kind):
    held = Held()
    name = make_pool(1, max_queue=2, on_full="raise")
    fill(name, held, 2)
    queue = queue_of(name)
    assert queue.on_full == "raise"
    submitter = InThread(lambda: SUBMITS[kind](name, held, "refused"))
    submitter.join()  # a wait here would fail the join (no block_timeout)
    assert isinstance(submitter.error, oddjob.QueueFullError)
    assert submitter.elapsed < LATE
    assert tags(name) == ["q0", "q1"] and queue.waiting() == 0


def test_on_full_raise_lets_a_submit_through_while_there_is_room(make_pool):
    held = Held()
    name = make_pool(1, max_queue=2, on_full="raise")
    fill(name, held, 1)
    bounded(lambda: oddjob.perform(name, held, "fits"))
    with pytest.raises(oddjob.QueueFullError):
        bounded(lambda: oddjob.perform(name, held, "refused"))
    held.release("running")
    held.started.wait_for_count(2)
    bounded(lambda: oddjob.perform(name, held, "fits again"))  # q0 taken: one slot free
    assert tags(name) == ["fits", "fits again"]


# -- batches: whole or not at all ---------------------------------------------------------

BATCHES: dict[str, Callable[[str, Held, list[str]], object]] = {
    "perform_many": lambda name, fn, items: oddjob.perform_many(name, items, fn),
    "async_perform_many": lambda name, fn, items: oddjob.async_perform_many(name, items, fn),
    "Pool.perform_many": lambda name, fn, items: _pool(name).perform_many(items, fn),
    "Pool.async_perform_many": lambda name, fn, items: _pool(name).async_perform_many(items, fn),
}


@pytest.mark.parametrize("kind", list(BATCHES))
def test_a_batch_larger_than_max_queue_raises_at_once(make_pool, kind):
    """Even into an empty queue, with on_full="block" and no block_timeout."""
    held = Held()
    name = make_pool(1, max_queue=3)
    oddjob.perform(name, held, "running")
    held.started.wait_for_count(1)
    queue = queue_of(name)
    items = [f"b{i}" for i in range(4)]
    submitter = InThread(lambda: BATCHES[kind](name, held, items))
    submitter.join()  # a wait for room here would fail the join
    assert isinstance(submitter.error, oddjob.QueueFullError)
    assert "max_queue=3" in str(submitter.error)
    assert submitter.elapsed < LATE
    assert len(queue) == 0 and queue.waiting() == 0
    held.release("running")
    oddjob.stop(name, timeout=WAIT)
    assert held.started.items == ["running"]


def test_a_batch_of_exactly_max_queue_fits(make_pool):
    held = Held()
    name = make_pool(1, max_queue=3)
    oddjob.perform(name, held, "running")
    held.started.wait_for_count(1)
    bounded(lambda: oddjob.perform_many(name, ["b0", "b1", "b2"], held))
    assert tags(name) == ["b0", "b1", "b2"]


@pytest.mark.parametrize("kind", list(BATCHES))
def test_a_batch_waits_until_it_fits_whole(make_pool, kind):
    held = Held()
    name = make_pool(1, max_queue=4)
    fill(name, held, 3)  # one slot free; the batch needs three
    queue = queue_of(name)
    batch = ["b0", "b1", "b2"]
    seen: list[tuple[int, list[str]]] = []
    stop_sampling = threading.Event()

    def sample() -> None:  # what any observer could see of the queue meanwhile
        while not stop_sampling.is_set():
            seen.append((len(queue), tags(name)))
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, name="test-sampler", daemon=True)
    sampler.start()
    try:
        submitter = InThread(lambda: BATCHES[kind](name, held, batch))
        until(lambda: queue.waiting() == 1, "the batch is in line")
        time.sleep(SETTLE)
        assert submitter.alive() and tags(name) == ["q0", "q1", "q2"]

        held.release("running")  # the worker takes q0: two slots free, still too few
        held.started.wait_for_count(2)
        time.sleep(SETTLE)
        assert submitter.alive(), "the batch entered without room for all of it"
        assert tags(name) == ["q1", "q2"] and queue.waiting() == 1

        held.release("q0")  # the worker takes q1: three slots free, the batch fits
        held.started.wait_for_count(3)
        submitter.join()
        assert submitter.error is None
        assert tags(name) == ["q2", *batch]
        assert queue.waiting() == 0
    finally:
        stop_sampling.set()
        support.join_all([sampler])
    assert len(seen) > 10
    for length, queued in seen:
        assert length <= 4, f"the queue held {length} jobs (max_queue=4)"
        members = [t for t in queued if t.startswith("b")]
        assert members in ([], batch), f"part of the batch was visible: {queued}"


def test_a_small_submit_behind_a_waiting_batch_waits_its_turn(make_pool):
    """First come first served: a single job that would fit does not overtake a batch
    waiting in line before it."""
    held = Held()
    name = make_pool(1, max_queue=2)
    fill(name, held, 1)  # one slot free
    queue = queue_of(name)
    batch = InThread(lambda: oddjob.perform_many(name, ["b0", "b1"], held), "batch")
    until(lambda: queue.waiting() == 1, "the batch is in line")
    single = InThread(lambda: oddjob.perform(name, held, "single"), "single")
    until(lambda: queue.waiting() == 2, "the single job is in line behind it")
    time.sleep(SETTLE)
    assert single.alive(), "a later, smaller submit overtook the waiting batch"
    assert tags(name) == ["q0"]
    held.release("running")  # q0 taken: the queue is empty, the batch enters
    batch.join()
    assert tags(name) == ["b0", "b1"]
    time.sleep(SETTLE)
    assert single.alive()
    held.release("q0")  # b0 taken: one slot, the single job enters
    single.join()
    assert tags(name) == ["b1", "single"]


def test_a_submitter_that_times_out_passes_its_turn_on(make_pool):
    """A batch first in line times out; the single job behind it, which fits, is
    served at once, long before its own block_timeout would end its wait."""
    timeout = 1.6
    held = Held()
    name = make_pool(1, max_queue=2, block_timeout=timeout)
    fill(name, held, 1)  # one slot free: the batch of two waits, the single job would fit
    queue = queue_of(name)
    batch = InThread(lambda: oddjob.perform_many(name, ["b0", "b1"], held), "batch")
    until(lambda: queue.waiting() == 1, "the batch is in line")
    time.sleep(timeout / 2)
    single = InThread(lambda: oddjob.perform(name, held, "single"), "single")
    until(lambda: queue.waiting() == 2, "the single job is in line")
    batch.join()
    assert isinstance(batch.error, oddjob.QueueFullError)
    single.join()
    assert single.error is None
    assert single.elapsed < timeout * 0.75, (
        f"the single job waited {single.elapsed:.2f}s: it was not woken when the batch "
        "before it left the line"
    )
    assert tags(name) == ["q0", "single"] and queue.waiting() == 0


# -- the deadlock guard: a pool's own jobs never wait for its room -----------------------


@pytest.mark.parametrize("kind", SYNC_SUBMITS)
def test_a_job_submitting_to_its_own_full_pool_gets_QueueFullError(make_pool, kind):
    held = Held()
    name = make_pool(2, max_queue=1)  # no block_timeout: a wait would never end
    go = support.gate()

    def submit_to_own_pool() -> tuple[BaseException | None, list[str], int]:
        go.wait(WAIT)
        try:
            SUBMITS[kind](name, held, "from own worker")
        except oddjob.QueueFullError as exc:
            return exc, tags(name), queue_of(name).waiting()
        return None, tags(name), queue_of(name).waiting()

    held_running = oddjob.async_perform(name, held, "running")
    own = oddjob.async_perform(name, submit_to_own_pool)
    until(own.running, "the submitting job runs")
    held.started.wait_for_count(1)
    oddjob.perform(name, held, "q0")  # both workers busy, one job queued: full
    go.set()
    error, queued, waiting = oddjob.await_(own, WAIT)  # a wait for room would run past this
    assert isinstance(error, oddjob.QueueFullError), error
    assert "own workers" in str(error)
    assert queued == ["q0"] and waiting == 0
    held.release("running", "q0")
    assert oddjob.await_(held_running, WAIT) == "running"


def test_a_job_of_another_pool_waits_for_room(make_pool):
    held = Held()
    full = make_pool(1, max_queue=1)
    other = make_pool(1)
    fill(full, held, 1)
    queue = queue_of(full)
    job = oddjob.async_perform(other, lambda: oddjob.perform(full, held, "from other pool"))
    until(lambda: queue.waiting() == 1, "the other pool's job waits in line")
    time.sleep(SETTLE)
    assert not job.done()
    held.release("running")
    assert oddjob.await_(job, WAIT) is None
    assert tags(full) == ["from other pool"]


# -- timers never wait ---------------------------------------------------------------------


def test_fired_timers_enter_a_full_queue_without_blocking_the_scheduler(make_pool):
    held = Held()
    full = make_pool(1, max_queue=1)
    other = make_pool(1)
    fill(full, held, 1)
    queue = queue_of(full)
    oddjob.perform_after(0, full, held, "timer")
    until(lambda: len(queue) == 2, "the fired timer's job is queued past the bound")
    oddjob.perform_many_after(0, full, ["t0", "t1"], held)
    until(lambda: len(queue) == 4, "the fired batch timer's jobs are queued past the bound")
    assert tags(full) == ["q0", "timer", "t0", "t1"] and queue.waiting() == 0

    # The scheduling thread is free: a timer of another pool fires on time while the
    # bounded queue is still over its bound.
    ran = Recorder()
    start = time.monotonic()
    oddjob.perform_after(0.05, other, lambda: ran(time.monotonic()))
    (ran_at,) = ran.wait_for_count(1)
    assert 0.05 <= ran_at - start < 0.05 + LATE
    assert len(queue) == 4 and held.started.items == ["running"]

    # A submit now waits until the queue is back under its bound with room to spare.
    submitter = InThread(lambda: oddjob.perform(full, held, "after the timers"))
    until(lambda: queue.waiting() == 1, "the submitter is in line")
    held.release("running", "q0", "timer")
    held.started.wait_for_count(4)  # t0 runs: t1 is left, the queue still full
    time.sleep(SETTLE)
    assert submitter.alive() and tags(full) == ["t1"]
    held.release("t0")  # t1 runs: the queue is empty
    submitter.join()
    assert submitter.error is None
    assert tags(full) == ["after the timers"]


# -- stop() wakes the line ------------------------------------------------------------------


def test_stop_wakes_blocked_submitters_with_PoolNotFoundError(make_pool):
    held = Held()
    name = make_pool(1, max_queue=1)
    fill(name, held, 1)
    queue = queue_of(name)
    workers = oddjob.workers(name)
    submitters = []
    for k, kind in enumerate(SYNC_SUBMITS, 1):
        submitters.append(InThread(partial(SUBMITS[kind], name, held, kind), kind))
        until(partial(in_line, queue, k), f"{kind} is in line")
    oddjob.stop(name, wait=False)
    for submitter in submitters:
        submitter.join()  # woken, not left waiting
        assert isinstance(submitter.error, oddjob.PoolNotFoundError), submitter.error
    assert queue.waiting() == 0
    held.release("running", "q0")
    support.join_all(workers)
    assert held.started.items == ["running", "q0"], "a woken submitter queued its job"


def test_a_submit_to_a_stopped_bounded_pool_raises_PoolNotFoundError(make_pool):
    name = make_pool(1, max_queue=1)
    queue = queue_of(name)
    oddjob.stop(name, timeout=WAIT)
    with pytest.raises(oddjob.PoolNotFoundError):
        queue.push(print, (), {})


# -- running jobs do not count ------------------------------------------------------------


def test_running_jobs_do_not_count_toward_max_queue(make_pool):
    held = Held()
    name = make_pool(3, max_queue=1, on_full="raise")
    for i in range(3):  # one at a time: each is taken off the queue before the next
        oddjob.perform(name, held, f"r{i}")
        held.started.wait_for_count(i + 1)
    bounded(lambda: oddjob.perform(name, held, "queued"))
    with pytest.raises(oddjob.QueueFullError):
        bounded(lambda: oddjob.perform(name, held, "one too many"))
    assert tags(name) == ["queued"]


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_queue", 0),
        ("max_queue", -1),
        ("max_queue", True),
        ("max_queue", "3"),
        ("max_queue", 2.0),
        ("on_full", "drop"),
        ("on_full", None),
        ("on_full", "BLOCK"),
        ("block_timeout", -1),
        ("block_timeout", "x"),
        ("block_timeout", float("nan")),
        ("block_timeout", timedelta(seconds=-1)),
        ("copy_context", 1),
        ("copy_context", "yes"),
    ],
)
def test_bad_options_raise_ConfigError_naming_the_key(clean_config, key, value):
    name = support.new_name()
    with pytest.raises(oddjob.ConfigError, match=key):
        oddjob.start_link(name, pool_size=1, **{key: value})
    assert oddjob.whereis(name) is None
    with pytest.raises(oddjob.ConfigError, match=key):
        oddjob.Pool(name, **{key: value})
    with pytest.raises(oddjob.ConfigError, match=key):
        oddjob.configure(**{key: value})


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "1.5"])
def test_a_bad_ODDJOB_MAX_QUEUE_raises_ConfigError_naming_it(clean_config, raw):
    clean_config.setenv("ODDJOB_MAX_QUEUE", raw)
    with pytest.raises(oddjob.ConfigError, match="ODDJOB_MAX_QUEUE"):
        oddjob.start_link(support.new_name(), pool_size=1)


def test_ODDJOB_MAX_QUEUE_bounds_a_configured_pool(clean_config):
    clean_config.setenv("ODDJOB_MAX_QUEUE", "10")
    name = support.track("bounded-by-env")
    oddjob.configure(extra_pools={name: {"pool_size": 1, "on_full": "raise"}})
    assert oddjob.whereis(name) is None
    held = Held()
    fill(name, held, 10)  # the first call starts the pool, with the bound from the env
    queue = queue_of(name)
    assert queue.max_queue == 10 and _pool(name).options.max_queue == 10
    with pytest.raises(oddjob.QueueFullError):
        bounded(lambda: oddjob.perform(name, held, "eleventh"))
    assert len(queue) == 10


def test_a_pools_own_max_queue_beats_the_environment(clean_config, make_pool):
    clean_config.setenv("ODDJOB_MAX_QUEUE", "10")
    assert queue_of(make_pool(1, max_queue=3)).max_queue == 3
    assert queue_of(make_pool(1, max_queue=None)).max_queue is None
    assert queue_of(make_pool(1)).max_queue == 10


def test_the_config_file_sets_the_bounded_queue_options(clean_config, tmp_path, make_pool):
    path = tmp_path / "oddjob.toml"
    path.write_text('max_queue = 7\non_full = "raise"\nblock_timeout = 0.5\n', encoding="utf-8")
    clean_config.setenv(config.CONFIG_FILE_VAR, str(path))
    queue = queue_of(make_pool(1))
    assert (queue.max_queue, queue.on_full, queue.block_timeout) == (7, "raise", 0.5)


def test_configure_sets_the_defaults_of_pools_started_later(clean_config, make_pool):
    oddjob.configure(max_queue=5, block_timeout=timedelta(seconds=2), copy_context=False)
    queue = queue_of(make_pool(1))
    assert (queue.max_queue, queue.on_full, queue.block_timeout) == (5, "block", 2.0)
    assert queue.copy_context is False
    unbounded = queue_of(make_pool(1, max_queue=None, copy_context=True))
    assert unbounded.max_queue is None and unbounded.copy_context is True


def test_an_unbounded_pool_is_the_default(clean_config, make_pool):
    queue = queue_of(make_pool(1))
    assert (queue.max_queue, queue.on_full, queue.block_timeout) == (None, "block", None)
    assert queue.copy_context is True


# -- stress -------------------------------------------------------------------------------

PRODUCERS = 8
JOBS_PER_PRODUCER = 2_000
MAX_QUEUE = 50


def test_many_producers_into_a_small_bound_run_every_job_once_never_over_the_bound(make_pool):
    name = make_pool(4, max_queue=MAX_QUEUE)
    queue = queue_of(name)
    counts: Counter[int] = Counter()
    lock = threading.Lock()

    lengths: list[int] = []  # len(queue) as each job starts and after each submit

    def record(i: int) -> None:
        length = len(queue)
        with lock:
            counts[i] += 1
            lengths.append(length)

    def ran() -> int:
        with lock:
            return sum(counts.values())

    def produce(p: int) -> None:
        ids = range(p * JOBS_PER_PRODUCER, (p + 1) * JOBS_PER_PRODUCER)
        jobs: list[Any] = []
        for start in range(ids.start, ids.stop, 20):
            chunk = list(range(start, start + 20))
            form = (start // 20) % 4
            if form == 0:
                for i in chunk:
                    oddjob.perform(name, record, i)
            elif form == 1:
                oddjob.perform_many(name, chunk, record)
            elif form == 2:
                jobs.extend(oddjob.async_perform(name, record, i) for i in chunk)
            else:
                jobs.extend(oddjob.async_perform_many(name, chunk, record))
            lengths.append(len(queue))
        oddjob.await_many(jobs, WAIT)

    samples: list[tuple[int, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((len(queue), queue.waiting()))
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample, name="test-sampler", daemon=True)
    sampler.start()
    try:
        support.run_threads(produce, PRODUCERS, timeout=60.0)
    finally:
        done.set()
        support.join_all([sampler])
    total = PRODUCERS * JOBS_PER_PRODUCER
    until(lambda: ran() >= total, f"all {total} jobs ran")
    time.sleep(SETTLE)
    with lock:
        assert set(counts) == set(range(total))
        assert sum(counts.values()) == total, "a job ran twice"
        highest = max(lengths)
    assert len(samples) > 100
    highest = max(highest, *(length for length, _ in samples))
    assert highest <= MAX_QUEUE, f"the queue was seen holding {highest} jobs"
    assert any(waiting for _, waiting in samples), "no producer ever waited: the test is moot"


# -- Ctrl-C: a blocked main thread is interrupted, and leaves the line ------------------


def test_ctrl_c_interrupts_a_blocked_submit_which_leaves_the_line(make_pool):
    """SIGINT reaches a main thread blocked on a full queue as KeyboardInterrupt; it
    queued nothing, gave its place up, and the submitter behind it is served next."""
    import signal

    assert threading.current_thread() is threading.main_thread()
    held = Held()
    name = make_pool(1, max_queue=1)
    fill(name, held, 1)
    queue = queue_of(name)
    main = threading.main_thread().ident
    assert main is not None

    def interrupt_once_in_line() -> None:
        until(lambda: queue.waiting() == 1, "the main thread is in line")
        time.sleep(SETTLE)
        signal.pthread_kill(main, signal.SIGINT)

    sender = InThread(interrupt_once_in_line, "interrupter")
    with pytest.raises(KeyboardInterrupt):
        oddjob.perform(name, held, "interrupted")
        # Not reached unless the wait ended without the signal: stay here until it comes
        # (or fail), so that the KeyboardInterrupt is not raised outside the block.
        time.sleep(WAIT)
    sender.join()
    assert sender.error is None
    assert queue.waiting() == 0, "the interrupted submitter is still in line"
    assert tags(name) == ["q0"]

    behind = InThread(lambda: oddjob.perform(name, held, "next"), "next")
    until(lambda: queue.waiting() == 1, "the next submitter is in line")
    held.release("running")
    behind.join()
    assert behind.error is None
    assert tags(name) == ["next"]
