"""Queue.take / finish / putback, the core's primitives for a process worker that sends
several queued jobs to its child in one message. Over both cores (the `core` fixture),
on bare queues: the test plays the worker."""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import Any

import pytest

import support


def make(core: ModuleType, **options: Any) -> tuple[Any, Any]:
    return core.Queue("take", **options), core.Worker("taker")


def stats(queue: Any) -> dict[str, int]:
    names = ("queued", "running", "submitted", "started", "completed", "failed")
    return dict(zip(names, queue.stats()[:6], strict=True))


def drain(queue: Any, worker: Any) -> None:
    queue.close(False)
    assert queue.work(worker) is None


def test_take_starts_queued_jobs_in_fifo_order(core: ModuleType) -> None:
    queue, worker = make(core)
    queue.push(len, ("a",), None)
    job = queue.push_async(divmod, (7, 2), None)
    queue.push_many(abs, [-1, -2])
    taken = queue.take(worker, 10)
    assert [(fn, args, kwargs) for _, fn, args, kwargs, _ in taken] == [
        (len, ("a",), None),
        (divmod, (7, 2), None),
        (abs, (-1,), None),
        (abs, (-2,), None),
    ]
    assert job.running() and not job.cancel()  # started: no longer cancellable
    assert stats(queue) == {
        "queued": 0,
        "running": 4,
        "submitted": 4,
        "started": 4,
        "completed": 0,
        "failed": 0,
    }
    assert worker.jobs_run == 4 and len(queue) == 0
    for item, fn, args, _, wait in taken:
        assert queue.finish(worker, item, True, fn(*args), wait, 1000) is None
    assert job.result(0) == (3, 1)
    assert stats(queue)["completed"] == 4 and stats(queue)["running"] == 0


def test_take_takes_at_most_most_and_leaves_the_rest(core: ModuleType) -> None:
    queue, worker = make(core)
    queue.push_many(abs, list(range(5)))
    assert queue.take(worker, 0) == []
    taken = queue.take(worker, 2)
    assert [args for _, _, args, _, _ in taken] == [(0,), (1,)]
    assert len(queue) == 3
    for item, *_ in taken:
        queue.finish(worker, item, True, None)
    drain(queue, worker)
    assert stats(queue)["completed"] == 5


@pytest.mark.parametrize(
    "options", [{"rate_limit": (10, 1.0)}, {"max_queue_time": 5.0}], ids=["rate", "deadline"]
)
def test_take_takes_nothing_from_a_gated_queue(core: ModuleType, options: Any) -> None:
    queue, worker = make(core, **options)
    queue.push(len, ("a",), None)
    assert queue.take(worker, 5) == []
    assert len(queue) == 1
    drain(queue, worker)


def test_take_takes_nothing_for_a_retired_worker(core: ModuleType) -> None:
    queue, worker = make(core)
    queue.push(len, ("a",), None)
    queue.retire(worker)
    assert queue.take(worker, 5) == []
    assert len(queue) == 1


def test_take_stops_at_a_cancelled_job_which_work_then_settles(core: ModuleType) -> None:
    queue, worker = make(core)
    first = queue.push_async(abs, (-1,), None)
    cancelled = queue.push_async(abs, (-2,), None)
    queue.push(len, ("c",), None)
    assert cancelled.cancel()
    taken = queue.take(worker, 5)
    assert [args for _, _, args, _, _ in taken] == [(-1,)]
    queue.finish(worker, taken[0][0], True, 1)
    drain(queue, worker)  # skips the cancelled one, runs the last
    assert first.result(0) == 1 and cancelled.cancelled()
    assert stats(queue)["completed"] == 2


def test_take_stops_at_a_job_whose_owner_is_gone(core: ModuleType) -> None:
    queue, worker = make(core)
    orphan = support.in_thread_that_exits(lambda: queue.push_async(abs, (-1,), None))
    mine = queue.push_async(abs, (-2,), None)
    assert queue.take(worker, 5) == []  # the orphan is first: work() drops it
    drain(queue, worker)
    assert orphan.cancelled() and mine.result(0) == 2


def test_finish_fails_an_async_job_and_logs_a_fire_and_forget_one(
    core: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="oddjob")
    queue, worker = make(core)
    job = queue.push_async(divmod, (1, 0), None)
    queue.push(len, ("ff",), None)
    (job_item, *_), (ff_item, *_) = queue.take(worker, 2)
    boom = ZeroDivisionError("remote")
    queue.finish(worker, job_item, False, boom)
    queue.finish(worker, ff_item, False, ValueError("ff failed"))
    with pytest.raises(ZeroDivisionError, match="remote"):
        job.result(0)
    assert any("ff failed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    assert stats(queue)["failed"] == 2 and stats(queue)["running"] == 0


def test_finish_twice_or_a_stranger_is_refused(core: ModuleType) -> None:
    queue, worker = make(core)
    job = queue.push_async(abs, (-1,), None)
    ((item, *_),) = queue.take(worker, 1)
    queue.finish(worker, item, True, 1)
    with pytest.raises(ValueError, match="take"):
        queue.finish(worker, item, True, 2)
    with pytest.raises(ValueError, match="take"):
        queue.finish(worker, object(), True, 2)
    assert job.result(0) == 1


def test_finish_runs_done_callbacks(core: ModuleType) -> None:
    queue, worker = make(core)
    job = queue.push_async(abs, (-5,), None)
    seen: list[Any] = []
    job.add_done_callback(lambda j: seen.append(j.result(0)))
    ((item, *_),) = queue.take(worker, 1)
    queue.finish(worker, item, True, 5)
    assert seen == [5]


def test_finish_retries_under_the_queue_s_policy(core: ModuleType) -> None:
    later: list[tuple[Any, int]] = []

    def retry_later(q: Any, item: Any, attempt: int, exc: Any, fn: Any, ref: Any) -> None:
        later.append((item, attempt))

    queue, worker = make(core, retry_attempts=2, retry_on=(ValueError,), retry_later=retry_later)
    job = queue.push_async(abs, (-1,), None)
    queue.push(len, ("ff",), None)
    (job_item, *_), (ff_item, *_) = queue.take(worker, 2)
    queue.finish(worker, job_item, False, ValueError("once"))
    queue.finish(worker, ff_item, False, ValueError("once"))
    assert [attempt for _, attempt in later] == [1, 1]
    assert not job.done() and job.attempts == 1
    for item, _ in later:
        assert queue.requeue(item)  # the backoff is over: back in the queue
    drain(queue, worker)
    assert job.result(0) == 1 and job.attempts == 2
    counted = queue.stats()
    assert counted[4] == 2 and counted[9] == 2  # completed, retried


def test_finish_without_retry_fails_at_once(core: ModuleType) -> None:
    queue, worker = make(
        core, retry_attempts=3, retry_on=(ValueError,), retry_later=lambda *a: None
    )
    job = queue.push_async(abs, (-1,), None)
    ((item, *_),) = queue.take(worker, 1)
    queue.finish(worker, item, False, ValueError("no retry"), -1, -1, False)
    with pytest.raises(ValueError, match="no retry"):
        job.result(0)


OK, FAILED = 1, 2  # result kinds, as a process worker's results carry them


def test_finish_results_ends_a_run_of_successes_and_stops_at_the_first_other(
    core: ModuleType,
) -> None:
    queue, worker = make(core)
    jobs = [queue.push_async(abs, (-i,), None) for i in range(6)]
    queue.push(len, ("ff",), None)
    taken = queue.take(worker, 10)
    results = [(OK, 0, 10), (OK, 1, 10), (FAILED, "packed", 10), (OK, 3, 10)]
    assert queue.finish_results(worker, taken, 0, results, 0, OK) == (2, None)
    assert [job.result(0) for job in jobs[:2]] == [0, 1] and not jobs[2].done()
    assert queue.finish_results(worker, taken, 2, results, 2, OK) == (0, None)  # a failure
    queue.finish(worker, taken[2][0], False, ValueError("2"), -1, 10)
    # From an offset in both lists, up to where the shorter one ends.
    assert queue.finish_results(worker, taken, 3, results, 3, OK) == (1, None)
    assert queue.finish_results(
        worker, taken, 4, [(OK, 4, 1), (OK, 5, 1), (OK, None, 1)], 0, OK
    ) == (3, None)
    assert [job.result(0) for job in jobs[3:]] == [3, 4, 5]
    with pytest.raises(ValueError, match="2"):
        jobs[2].result(0)
    assert queue.finish_results(worker, taken, 7, results, 0, OK) == (0, None)  # nothing left
    counted = stats(queue)
    assert (counted["completed"], counted["failed"], counted["running"]) == (6, 1, 0)


def test_finish_results_returns_what_a_done_callback_raised_and_ends_the_rest(
    core: ModuleType,
) -> None:
    queue, worker = make(core)
    jobs = [queue.push_async(abs, (-i,), None) for i in range(3)]

    def stop(_job: Any) -> None:
        raise SystemExit(4)

    jobs[0].add_done_callback(stop)
    taken = queue.take(worker, 3)
    ended, raised = queue.finish_results(worker, taken, 0, [(OK, i, 1) for i in range(3)], 0, OK)
    assert ended == 3 and type(raised) is SystemExit and raised.code == 4
    assert [job.result(0) for job in jobs] == [0, 1, 2]


def test_finish_results_refuses_bad_arguments(core: ModuleType) -> None:
    queue, worker = make(core)
    job = queue.push_async(abs, (-1,), None)
    taken = queue.take(worker, 1)
    with pytest.raises(ValueError, match=">= 0"):
        queue.finish_results(worker, taken, -1, [(OK, 1, 1)], 0, OK)
    with pytest.raises(ValueError, match=">= 0"):
        queue.finish_results(worker, taken, 0, [(OK, 1, 1)], -1, OK)
    with pytest.raises(TypeError):
        queue.finish_results(worker, taken, 0, [(OK, 1)], 0, OK)
    with pytest.raises(TypeError):
        queue.finish_results(worker, [(object(),)], 0, [(OK, 1, 1)], 0, OK)
    assert queue.finish_results(worker, taken, 0, [(OK, 1, 1)], 0, OK) == (1, None)
    with pytest.raises(ValueError, match="take"):  # a job already ended
        queue.finish_results(worker, taken, 0, [(OK, 2, 1)], 0, OK)
    assert job.result(0) == 1


def test_putback_returns_jobs_to_the_head_in_their_order(core: ModuleType) -> None:
    queue, worker = make(core)
    first = queue.push_async(abs, (-1,), None)
    queue.push_many(abs, [-2, -3])
    queue.push(abs, (-4,), None)  # queued behind the taken ones
    taken = queue.take(worker, 3)
    assert queue.putback(worker, [item for item, *_ in taken])
    assert not first.running() and first.attempts == 0
    assert [row[1] for row in queue.snapshot()][:4] == [(-1,), (-2,), (-3,), (-4,)]
    assert stats(queue) == {
        "queued": 4,
        "running": 0,
        "submitted": 4,
        "started": 0,
        "completed": 0,
        "failed": 0,
    }
    assert worker.jobs_run == 0
    assert first.cancel()  # queued again: cancellable again
    drain(queue, worker)
    assert stats(queue)["completed"] == 3 and first.cancelled()


def test_putback_refuses_what_take_did_not_give(core: ModuleType) -> None:
    queue, worker = make(core)
    job = queue.push_async(abs, (-1,), None)
    with pytest.raises(ValueError):
        queue.putback(worker, [job])  # still queued, never taken
    with pytest.raises(ValueError):
        queue.putback(worker, ["stranger"])
    assert len(queue) == 1 and queue.putback(worker, [])


def test_take_makes_room_in_a_bounded_queue(core: ModuleType) -> None:
    queue, worker = make(core, max_queue=2, block_timeout=support.WAIT)
    queue.push_many(abs, [-1, -2])
    pushed = threading.Event()

    def blocked_push() -> None:
        queue.push(abs, (-3,), None)  # waits for room
        pushed.set()

    thread = threading.Thread(target=blocked_push)
    thread.start()
    support.until(lambda: queue.waiting() == 1, "the submitter waiting for room")
    taken = queue.take(worker, 2)
    assert pushed.wait(support.WAIT)
    thread.join(support.WAIT)
    for item, *_ in taken:
        queue.finish(worker, item, True, None)
    drain(queue, worker)
    assert stats(queue)["completed"] == 3


def test_taken_jobs_emit_their_events(core: ModuleType, record_events: Any) -> None:
    events = record_events("take", ["job.start", "job.stop", "job.exception"])
    queue, worker = make(core)
    job = queue.push_async(abs, (-1,), None)
    queue.push(len, ("x",), None)
    (a, *_), (b, *_) = queue.take(worker, 2)
    queue.finish(worker, a, True, 1, 5_000, 7_000)
    queue.finish(worker, b, False, ValueError("x"), 5_000, 7_000)
    starts = events.wait_for("job.start", 2)
    stop = events.wait_for("job.stop", 1)[0]
    failure = events.wait_for("job.exception", 1)[0]
    assert starts[0].metadata["ref"] == job.ref and starts[1].metadata["ref"] is None
    assert stop.measurements["duration"] == pytest.approx(7e-6)
    assert isinstance(failure.metadata["exception"], ValueError)
