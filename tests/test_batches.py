"""perform_many / async_perform_many: one job per item, in order, entering the queue at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate, run_threads

SUBMITTERS = 6
BATCHES_PER_SUBMITTER = 20
BATCH_SIZE = 25


def assert_batches_contiguous(ran, expected_batches):
    """Each batch's members appear next to each other, in order, and nothing else is lost."""
    assert sorted(ran) == sorted(item for batch in expected_batches for item in batch)
    position = {item: i for i, item in enumerate(ran)}
    for batch in expected_batches:
        first = position[batch[0]]
        assert ran[first : first + len(batch)] == batch, f"batch {batch[0][:2]} was interleaved"


def run_submitters(target):
    start = threading.Barrier(SUBMITTERS)
    run_threads(lambda t: target(t, start), SUBMITTERS)


def make_batches():
    return {
        (t, b): [(t, b, i) for i in range(BATCH_SIZE)]
        for t in range(SUBMITTERS)
        for b in range(BATCHES_PER_SUBMITTER)
    }


def test_perform_many_batches_from_concurrent_submitters_run_contiguously(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    batches = make_batches()

    def submit(t, start):
        start.wait(WAIT)
        for b in range(BATCHES_PER_SUBMITTER):
            oddjob.perform_many(pool, batches[t, b], ran)

    run_submitters(submit)
    total = SUBMITTERS * BATCHES_PER_SUBMITTER * BATCH_SIZE
    assert_batches_contiguous(ran.wait_for_count(total), list(batches.values()))


def test_perform_many_batches_stay_contiguous_between_other_callers_jobs(make_pool):
    # Everything one worker runs goes through one recorder: a single job from another
    # caller must never land between the members of a batch.
    pool = make_pool(1)
    ran = Recorder()
    batches = make_batches()

    def submit(t, start):
        start.wait(WAIT)
        for b in range(BATCHES_PER_SUBMITTER):
            oddjob.perform_many(pool, batches[t, b], ran)
            oddjob.perform(pool, ran, ("single", t, b))

    run_submitters(submit)
    total = SUBMITTERS * BATCHES_PER_SUBMITTER * (BATCH_SIZE + 1)
    order = ran.wait_for_count(total)
    for batch in batches.values():
        first = order.index(batch[0])
        assert order[first : first + BATCH_SIZE] == batch, f"batch {batch[0][:2]} was interleaved"


def test_async_perform_many_batches_from_concurrent_submitters_run_contiguously(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    batches = make_batches()
    results: dict[tuple[int, int], Any] = {}  # each batch's Jobs, then their results

    def submit(t, start):
        start.wait(WAIT)
        for b in range(BATCHES_PER_SUBMITTER):
            results[t, b] = oddjob.async_perform_many(pool, batches[t, b], ran)
        # The submitter owns its jobs: it must outlive them, or queued ones are dropped.
        for b in range(BATCHES_PER_SUBMITTER):
            results[t, b] = oddjob.await_many(results[t, b], timeout=WAIT)

    run_submitters(submit)
    assert all(results[key] == [None] * BATCH_SIZE for key in batches)
    total = SUBMITTERS * BATCHES_PER_SUBMITTER * BATCH_SIZE
    assert_batches_contiguous(ran.wait_for_count(total), list(batches.values()))


def test_perform_many_calls_fn_with_each_item_as_its_single_argument(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    items = [(1, 2), "ab", None, [3]]
    # Typed "-> None", so mypy rejects using the result: check it at run time.
    perform_many: Callable[..., object] = oddjob.perform_many
    assert perform_many(pool, items, ran) is None
    assert ran.wait_for_count(4) == items


def test_perform_many_accepts_any_iterable_including_generators(make_pool):
    pool = make_pool(1)
    ran = Recorder()
    oddjob.perform_many(pool, (i * i for i in range(5)), ran)
    oddjob.perform_many(pool, range(5, 8), ran)
    oddjob.perform_many(pool, {"x": 1}, ran)
    assert ran.wait_for_count(9) == [0, 1, 4, 9, 16, 5, 6, 7, "x"]


def test_async_perform_many_returns_jobs_in_input_order_with_matching_results(make_pool, core):
    pool = make_pool(3)
    jobs = oddjob.async_perform_many(pool, (i for i in range(50)), lambda x: x * 10)
    assert isinstance(jobs, list)
    assert len(jobs) == 50
    assert all(isinstance(job, core.Job) for job in jobs)
    assert [job.args for job in jobs] == [(i,) for i in range(50)]
    assert oddjob.await_many(jobs, timeout=WAIT) == [i * 10 for i in range(50)]


def test_empty_batches_queue_nothing(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    # Typed "-> None", so mypy rejects using the result: check it at run time.
    perform_many: Callable[..., object] = oddjob.perform_many
    assert perform_many(pool, [], ran) is None
    assert perform_many(pool, iter(()), ran) is None
    assert oddjob.async_perform_many(pool, [], ran) == []
    assert oddjob.async_perform_many(pool, iter(()), ran) == []
    oddjob.perform(pool, ran, "sentinel")
    release.set()
    assert ran.wait_for_count(1) == ["sentinel"]


@pytest.mark.parametrize("send", ["perform_many", "async_perform_many"])
def test_batch_whose_iterable_raises_midway_queues_nothing(make_pool, send):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()

    class Boom(Exception):
        pass

    def items():
        yield 1
        yield 2
        raise Boom

    with pytest.raises(Boom):
        getattr(oddjob, send)(pool, items(), ran)
    oddjob.perform(pool, ran, "sentinel")
    release.set()
    # FIFO with one worker: once "after" has run, anything queued before it has run too.
    oddjob.await_(oddjob.async_perform(pool, ran, "after"), timeout=WAIT)
    assert ran.items == ["sentinel", "after"]
