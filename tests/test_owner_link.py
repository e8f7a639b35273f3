"""Linking: a queued async job whose owner thread died before it started is dropped."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate, in_thread_that_exits, join_all


def test_queued_async_jobs_of_a_dead_owner_thread_are_dropped(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()

    def create():
        jobs = [oddjob.async_perform(pool, ran, ("single", i)) for i in range(3)]
        return jobs + oddjob.async_perform_many(pool, [("batch", 0), ("batch", 1)], ran)

    orphans = in_thread_that_exits(create)
    mine = oddjob.async_perform(pool, ran, "live owner")
    release.set()
    oddjob.await_(mine, timeout=WAIT)  # FIFO: the orphans' turn came before this job
    assert ran.items == ["live owner"]
    for job in orphans:
        assert job.cancelled()
        assert job.done()
        with pytest.raises(CancelledError):
            oddjob.await_(job, timeout=WAIT)


def test_async_job_of_an_owner_that_died_while_it_ran_still_completes(make_pool):
    pool = make_pool(1)
    release = gate()
    started = threading.Event()

    def job():
        started.set()
        release.wait(WAIT)
        return "completed"

    def create():
        j = oddjob.async_perform(pool, job)
        assert started.wait(WAIT)
        return j

    running = in_thread_that_exits(create)
    release.set()
    assert oddjob.await_(running, timeout=WAIT) == "completed"
    assert not running.cancelled()


def test_finished_job_of_a_dead_owner_keeps_its_result(make_pool):
    pool = make_pool(1)

    def create():
        j = oddjob.async_perform(pool, lambda: "kept")
        oddjob.await_(j, timeout=WAIT)
        return j

    job = in_thread_that_exits(create)
    assert oddjob.await_(job, timeout=WAIT) == "kept"


def test_fire_and_forget_jobs_of_a_dead_thread_still_run(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()

    def submit():
        oddjob.perform(pool, ran, "perform")
        oddjob.perform_many(pool, ["many 0", "many 1"], ran)

    in_thread_that_exits(submit)
    release.set()
    assert ran.wait_for_count(3) == ["perform", "many 0", "many 1"]


def test_jobs_of_a_live_owner_thread_run_even_when_created_in_another_thread(make_pool):
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    created = threading.Event()
    finish = threading.Event()
    jobs = []

    def owner():
        jobs.append(oddjob.async_perform(pool, ran, "owner alive"))
        created.set()
        finish.wait(WAIT)

    t = threading.Thread(target=owner, name="test-owner")
    t.start()
    try:
        assert created.wait(WAIT)
        release.set()
        assert oddjob.await_(jobs[0], timeout=WAIT) is None
        assert ran.items == ["owner alive"]
    finally:
        finish.set()
        join_all([t])
