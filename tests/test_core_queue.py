"""A hypothesis state machine drives a core Queue (no workers) against a deque model.

Runs over both cores through the autouse `core` fixture. With no worker threads nothing
is ever dequeued, so the model is the queue's exact contents: after every rule
len(q) and q.snapshot() (FIFO order, cancelled jobs left out) must match it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import oddjob


def job_a(*args, **kwargs):
    return ("a", args, kwargs)


def job_b(*args, **kwargs):
    return ("b", args, kwargs)


FUNCTIONS = st.sampled_from([job_a, job_b, print, len])
VALUES = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.tuples(st.integers()))
ARGS = st.lists(VALUES, max_size=3).map(tuple)
KWARGS = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["x", "y", "pool", "fn"]), VALUES, max_size=2),
)
ITEMS = st.lists(VALUES, max_size=6)
# push_many takes any iterable: a list, a tuple or a one-shot iterator.
ITERABLE_KINDS = st.sampled_from([list, tuple, iter])


@dataclass
class Entry:
    """One queued job of the model."""

    fn: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    job: Any = None  # the Job of an async job
    cancelled: bool = False

    def snapshot_row(self):
        return (self.fn, self.args, self.kwargs, self.job)


class QueueMachine(RuleBasedStateMachine):
    core: Any = None  # set by the test: the core module under test

    def __init__(self):
        super().__init__()
        self.queue = self.core.Queue("machine")
        self.model: deque[Entry] = deque()

    def live_jobs(self):
        return [e for e in self.model if e.job is not None and not e.cancelled]

    # -- submitting ---------------------------------------------------------------

    @rule(fn=FUNCTIONS, args=ARGS, kwargs=KWARGS)
    def push(self, fn, args, kwargs):
        assert self.queue.push(fn, args, kwargs) is None
        self.model.append(Entry(fn, args, dict(kwargs or {})))

    @rule(fn=FUNCTIONS, items=ITEMS, kind=ITERABLE_KINDS)
    def push_many(self, fn, items, kind):
        assert self.queue.push_many(fn, kind(items)) is None
        self.model.extend(Entry(fn, (item,), {}) for item in items)

    @rule(fn=FUNCTIONS, args=ARGS, kwargs=KWARGS)
    def push_async(self, fn, args, kwargs):
        job = self.queue.push_async(fn, args, kwargs)
        assert type(job) is self.core.Job
        assert job.function is fn
        assert job.args == args
        assert job.kwargs == (kwargs or {})
        assert job.pool == "machine"
        assert not job.done()
        self.model.append(Entry(fn, args, dict(kwargs or {}), job))

    @rule(fn=FUNCTIONS, items=ITEMS, kind=ITERABLE_KINDS)
    def push_async_many(self, fn, items, kind):
        jobs = self.queue.push_async_many(fn, kind(items))
        assert isinstance(jobs, list)
        assert len(jobs) == len(items)
        assert [job.args for job in jobs] == [(item,) for item in items]
        self.model.extend(
            Entry(fn, (item,), {}, job) for item, job in zip(items, jobs, strict=True)
        )

    # -- cancelling ---------------------------------------------------------------

    @precondition(lambda self: self.live_jobs())
    @rule(data=st.data())
    def cancel(self, data):
        entry = data.draw(st.sampled_from(self.live_jobs()))
        assert entry.job.cancel() is True
        assert entry.job.cancelled()
        assert entry.job.done()
        entry.cancelled = True

    @precondition(lambda self: any(e.cancelled for e in self.model))
    @rule(data=st.data())
    def cancelled_job_stays_cancelled(self, data):
        entry = data.draw(st.sampled_from([e for e in self.model if e.cancelled]))
        entry.job.cancel()
        assert entry.job.cancelled()

    # -- rejected input leaves the queue as it was --------------------------------

    @rule(bad=st.sampled_from([None, 1, "fn"]), args=ARGS)
    def push_non_callable(self, bad, args):
        with pytest.raises(TypeError):
            self.queue.push(bad, args, None)
        with pytest.raises(TypeError):
            self.queue.push_async(bad, args, None)
        with pytest.raises(TypeError):
            self.queue.push_many(bad, [1])
        with pytest.raises(TypeError):
            self.queue.push_async_many(bad, [1])

    @rule(fn=FUNCTIONS, bad=st.sampled_from([None, 1, 2.5]))
    def push_many_non_iterable(self, fn, bad):
        with pytest.raises(TypeError):
            self.queue.push_many(fn, bad)
        with pytest.raises(TypeError):
            self.queue.push_async_many(fn, bad)

    # -- checks ---------------------------------------------------------------------

    @invariant()
    def length_counts_every_queued_slot(self):
        # Cancelled jobs still hold their slot until a worker skips them.
        assert len(self.queue) == len(self.model)

    @invariant()
    def snapshot_is_the_live_jobs_in_fifo_order(self):
        expected = [e.snapshot_row() for e in self.model if not e.cancelled]
        snapshot = self.queue.snapshot()
        assert len(snapshot) == len(expected)
        for got, want in zip(snapshot, expected, strict=True):
            fn, args, kwargs, job = got
            assert fn is want[0]
            assert args == want[1]
            assert kwargs == want[2]
            assert job is want[3]

    @invariant()
    def queued_jobs_are_pending(self):
        for entry in self.model:
            if entry.job is not None:
                assert entry.job.cancelled() == entry.cancelled
                assert entry.job.done() == entry.cancelled

    def teardown(self):
        live = sum(1 for entry in self.model if not entry.cancelled)
        assert self.queue.close(cancel_pending=True) == live
        assert len(self.queue) == 0
        assert self.queue.snapshot() == []
        for entry in self.model:
            if entry.job is not None:
                assert entry.job.cancelled()
                assert entry.job.done()
        with pytest.raises(oddjob.PoolNotFoundError):
            self.queue.push(job_a, (), None)
        with pytest.raises(oddjob.PoolNotFoundError):
            self.queue.push_async(job_a, (), None)
        assert self.queue.close(cancel_pending=True) == 0


def test_core_queue_matches_a_deque_model(core):
    machine = type(f"QueueMachine_{core.IMPLEMENTATION}", (QueueMachine,), {"core": core})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=150,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_core_refs_are_unique_across_queues(core):
    q1, q2 = core.Queue("one"), core.Queue("two")
    jobs = [q1.push_async(job_a, (), None) for _ in range(100)]
    jobs += q2.push_async_many(job_b, range(100))
    jobs += q1.push_async_many(job_b, range(100))
    assert len({job.ref for job in jobs}) == 300
    assert q1.close(cancel_pending=True) == 200
    assert q2.close(cancel_pending=True) == 100
