"""Introspection: frozen PoolState snapshots, ids named as OddJob names them."""

from __future__ import annotations

import dataclasses
import threading

import pytest

import oddjob
from support import WAIT, block_workers, gate


def test_pool_state_during_load_lists_busy_workers_and_queued_jobs_in_fifo_order(make_pool):
    name = make_pool(3)
    release = gate()
    block_workers(name, 2, release)
    state = oddjob.pool(name)
    assert state.id == f"{name}_pool"
    assert state.pool == name
    assert len(state.workers) == 3
    assert all(isinstance(t, threading.Thread) and t.is_alive() for t in state.workers)
    assert len(state.assigned) == 2
    assert set(state.assigned) <= set(state.workers)

    block_workers(name, 1, release)  # now every worker is busy: the next jobs queue
    oddjob.perform(name, print, "first", sep="")
    job = oddjob.async_perform(name, abs, -2)
    oddjob.perform_many(name, ["a", "b"], len)
    cancelled = oddjob.async_perform(name, abs, -3)
    assert cancelled.cancel()
    state = oddjob.pool(name)
    assert len(state.assigned) == 3
    assert [(j.function, j.args, j.async_) for j in state.jobs] == [
        (print, ("first",), False),
        (abs, (-2,), True),
        (len, ("a",), False),
        (len, ("b",), False),
    ]
    assert state.jobs[0].kwargs == {"sep": ""}
    assert state.jobs[1] is job
    release.set()
    assert oddjob.await_(job, WAIT) == 2


def test_pool_state_is_a_frozen_snapshot(make_pool):
    name = make_pool(1)
    state = oddjob.pool(name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.pool = "other"  # type: ignore[misc]
    assert isinstance(state.workers, tuple) and isinstance(state.jobs, tuple)


def test_ids_follow_oddjobs_names(make_pool):
    name = make_pool(2)
    assert oddjob.pool_id(name) == f"{name}_pool"
    assert oddjob.supervisor_id(name) == f"{name}_pool_sup"
    sup = oddjob.supervisor(name)
    assert isinstance(sup, oddjob.WorkerSupervisor)
    assert sup.id == f"{name}_pool_sup"
    assert sup.pool == name


def test_the_default_pool_is_named_job_pool():
    assert oddjob.pool_id("job") == "job_pool"
    assert oddjob.supervisor_id("job") == "job_pool_sup"
    assert len(oddjob.pool("job").workers) == 5


def test_introspection_of_unknown_pools_raises(make_pool):
    for call in (oddjob.pool, oddjob.pool_id, oddjob.supervisor, oddjob.supervisor_id):
        with pytest.raises(oddjob.PoolNotFoundError):
            call("no-such-pool")
        with pytest.raises(TypeError):
            call(123)


def test_introspection_accepts_a_pool_object(make_pool):
    name = make_pool(1)
    pool = oddjob.whereis(name)
    assert pool is not None
    assert oddjob.pool(pool).pool == name
    assert oddjob.pool_id(pool) == f"{name}_pool"
