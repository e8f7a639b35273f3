"""The Pool object's scheduled-job methods: the module functions without the pool."""

from __future__ import annotations

import datetime as dt

import oddjob
from support import WAIT, Recorder


def test_pool_object_schedules_jobs_and_batches(make_pool):
    pool = oddjob.whereis(make_pool(1))
    assert pool is not None
    ran = Recorder()
    pool.perform_after(0, ran, "after")
    pool.perform_many_after(dt.timedelta(0), ["b1", "b2"], ran)
    soon = dt.datetime.now() + dt.timedelta(milliseconds=50)
    pool.perform_at(soon, ran, "at")
    pool.perform_many_at(soon, ["m1"], ran)
    assert sorted(ran.wait_for_count(5, WAIT)) == ["after", "at", "b1", "b2", "m1"]


def test_stopping_the_pool_object_cancels_its_timers(make_pool):
    pool = oddjob.whereis(make_pool(1))
    assert pool is not None
    ref = pool.perform_after(60, print, "never")
    assert 0 < ref.remaining() <= 60
    pool.stop()
    assert ref.remaining() is False
    assert oddjob.cancel_timer(ref) is False
