"""Hosting pools: child_spec, Supervisor, start_link forms, stop's options."""

from __future__ import annotations

import threading
import time

import pytest

import oddjob
import support
from support import WAIT, block_workers, gate


def test_child_spec_has_the_otp_shape_and_starts_the_pool():
    name = support.new_name()
    spec = oddjob.child_spec((name, {"pool_size": 2}))
    assert spec["id"] == f"{name}_sup"
    assert spec["type"] == "supervisor"
    start, args = spec["start"]
    pool = start(*args)
    assert oddjob.whereis(name) is pool
    assert len(oddjob.workers(name)) == 2


def test_child_spec_accepts_a_name_and_a_dict():
    a, b = support.new_name(), support.new_name()
    assert oddjob.child_spec(a)["id"] == f"{a}_sup"
    assert oddjob.child_spec({"name": b, "pool_size": 1})["id"] == f"{b}_sup"


def test_child_spec_rejects_bad_options_at_once():
    with pytest.raises(oddjob.ConfigError, match="pool_size"):
        oddjob.child_spec(("x", {"pool_size": 0}))
    with pytest.raises(TypeError):
        oddjob.child_spec(42)


def test_supervisor_starts_and_stops_every_kind_of_child():
    names = [support.new_name() for _ in range(4)]
    children = [
        names[0],
        {"name": names[1], "pool_size": 2},
        (names[2], {"pool_size": 3}),
        oddjob.child_spec((names[3], {"pool_size": 1})),
    ]
    with oddjob.Supervisor(children) as sup:
        assert [p.name for p in sup.children] == names
        assert [len(oddjob.workers(n)) for n in names] == [5, 2, 3, 1]
    assert all(oddjob.whereis(n) is None for n in names)


def test_supervisor_hands_its_restart_intensity_to_children_without_their_own():
    a, b = support.new_name(), support.new_name()
    with oddjob.Supervisor([a, (b, {"max_restarts": 7})], max_restarts=1, max_seconds=2):
        assert oddjob.supervisor(a).options.max_restarts == 1
        assert oddjob.supervisor(a).options.max_seconds == 2
        assert oddjob.supervisor(b).options.max_restarts == 7


def test_a_failing_child_stops_the_children_already_started():
    a, b = support.new_name(), support.new_name()
    oddjob.start_link(b)  # the second child's name is taken
    sup = oddjob.Supervisor([a, b])
    with pytest.raises(oddjob.PoolAlreadyStartedError):
        sup.start()
    assert oddjob.whereis(a) is None
    assert oddjob.whereis(b) is not None


def test_supervisor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="strategy"):
        oddjob.Supervisor(["x"], strategy="one_for_all_of_them")
    with pytest.raises(oddjob.ConfigError, match="max_restarts"):
        oddjob.Supervisor(["x"], max_restarts=-1)
    with pytest.raises(oddjob.ConfigError):
        oddjob.Supervisor(["x", "x"])
    with pytest.raises(TypeError):
        oddjob.Supervisor([3.5])


def test_stop_without_waiting_returns_while_a_job_runs(make_pool):
    name = make_pool(1)
    release = gate()
    (job,) = block_workers(name, 1, release)
    started = time.monotonic()
    oddjob.stop(name, wait=False)
    assert time.monotonic() - started < 1.0
    assert oddjob.whereis(name) is None
    assert not job.done()
    release.set()
    assert oddjob.await_(job, WAIT) == "blocker 0"


def test_stop_with_a_timeout_raises_timeout_error_but_stops_the_pool(make_pool):
    name = make_pool(1)
    release = gate()
    (job,) = block_workers(name, 1, release)
    with pytest.raises(TimeoutError):
        oddjob.stop(name, timeout=0.05)
    assert oddjob.whereis(name) is None
    release.set()
    assert oddjob.await_(job, WAIT) == "blocker 0"


def test_stopping_a_pool_from_one_of_its_own_jobs_does_not_deadlock(make_pool):
    name = make_pool(2)
    job = oddjob.async_perform(name, oddjob.stop, name)
    assert oddjob.await_(job, WAIT) is None
    assert oddjob.whereis(name) is None
    deadline = time.monotonic() + WAIT
    while any(t.name.startswith(f"oddjob-{name}-") for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
