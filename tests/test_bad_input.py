"""A call that raises has queued nothing: bad fn, bad batch, bad or unknown pool name."""

from __future__ import annotations

import pytest

import oddjob
from support import WAIT, Recorder, block_workers, gate

SENDERS = {
    "perform": lambda pool, fn: oddjob.perform(pool, fn, 1),
    "perform_many": lambda pool, fn: oddjob.perform_many(pool, [1, 2], fn),
    "async_perform": lambda pool, fn: oddjob.async_perform(pool, fn, 1),
    "async_perform_many": lambda pool, fn: oddjob.async_perform_many(pool, [1, 2], fn),
}


@pytest.fixture
def queued_pool(make_pool):
    """A one-worker pool whose worker is blocked, with three jobs queued behind it.
    check() releases it and asserts that exactly those three jobs ran, in order."""
    pool = make_pool(1)
    release = gate()
    block_workers(pool, 1, release)
    ran = Recorder()
    oddjob.perform(pool, ran, "queued 1")
    oddjob.perform_many(pool, ["queued 2"], ran)
    oddjob.async_perform(pool, ran, "queued 3")

    def check():
        release.set()
        # FIFO with one worker: when this marker has run, everything before it has too.
        oddjob.await_(oddjob.async_perform(pool, ran, "marker"), timeout=WAIT)
        assert ran.items == ["queued 1", "queued 2", "queued 3", "marker"]

    return pool, ran, check


@pytest.mark.parametrize("send", SENDERS)
@pytest.mark.parametrize("fn", [None, 42, "print", [print]], ids=repr)
def test_non_callable_fn_raises_type_error_and_queues_nothing(queued_pool, send, fn):
    pool, _, check = queued_pool
    with pytest.raises(TypeError):
        SENDERS[send](pool, fn)
    check()


@pytest.mark.parametrize("send", ["perform_many", "async_perform_many"])
@pytest.mark.parametrize("batch", [None, 5, 3.5, object()], ids=repr)
def test_non_iterable_batch_raises_type_error_and_queues_nothing(queued_pool, send, batch):
    pool, ran, check = queued_pool
    with pytest.raises(TypeError):
        getattr(oddjob, send)(pool, batch, ran)
    check()


@pytest.mark.parametrize("send", SENDERS)
@pytest.mark.parametrize("name", [123, None, b"job", ("job",)], ids=repr)
def test_pool_name_that_is_not_a_str_raises_type_error_and_queues_nothing(queued_pool, send, name):
    _, ran, check = queued_pool
    with pytest.raises(TypeError):
        SENDERS[send](name, ran)
    check()


@pytest.mark.parametrize("send", SENDERS)
def test_unknown_pool_raises_pool_not_found_error_and_runs_nothing(queued_pool, send):
    _, ran, check = queued_pool
    with pytest.raises(oddjob.PoolNotFoundError) as info:
        SENDERS[send]("no-such-pool", ran)
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, oddjob.OddJobError)
    check()
    assert oddjob.whereis("no-such-pool") is None


def test_unknown_pool_error_names_the_pool():
    with pytest.raises(oddjob.PoolNotFoundError, match="no-such-pool"):
        oddjob.perform("no-such-pool", print)


def test_unknown_pool_error_can_be_caught_as_lookup_error():
    ran = Recorder()
    with pytest.raises(LookupError):
        oddjob.perform("no-such-pool", ran, 1)
    with pytest.raises(LookupError):
        oddjob.async_perform("no-such-pool", ran, 1)
    assert oddjob.whereis("no-such-pool") is None
    assert ran.items == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: oddjob.workers("no-such-pool"),
        lambda: oddjob.stop("no-such-pool"),
    ],
    ids=["workers", "stop"],
)
def test_other_calls_on_an_unknown_pool_raise_pool_not_found_error(call):
    with pytest.raises(oddjob.PoolNotFoundError):
        call()


def test_whereis_of_an_unknown_pool_is_none_not_an_error():
    assert oddjob.whereis("no-such-pool") is None


@pytest.mark.parametrize("bad_timeout", ["1", [1]], ids=repr)
def test_await_with_a_timeout_of_the_wrong_type_raises_type_error(make_pool, bad_timeout):
    pool = make_pool(1)
    job = oddjob.async_perform(pool, lambda: "ok")
    with pytest.raises(TypeError):
        oddjob.await_(job, timeout=bad_timeout)
    assert oddjob.await_(job, timeout=WAIT) == "ok"


def test_errors_form_the_documented_hierarchy():
    assert issubclass(oddjob.PoolNotFoundError, oddjob.OddJobError)
    assert issubclass(oddjob.PoolNotFoundError, LookupError)
    assert issubclass(oddjob.PoolAlreadyStartedError, oddjob.OddJobError)
    assert issubclass(oddjob.ConfigError, oddjob.OddJobError)
    assert issubclass(oddjob.ConfigError, ValueError)
    assert issubclass(oddjob.OddJobError, Exception)


def test_rejected_calls_leave_a_working_pool(make_pool):
    pool = make_pool(1)
    for bad in (None, 1):
        with pytest.raises(TypeError):
            oddjob.perform(pool, bad)  # type: ignore[arg-type]
    assert oddjob.await_(oddjob.async_perform(pool, lambda: "works"), timeout=WAIT) == "works"
