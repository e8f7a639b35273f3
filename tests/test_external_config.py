"""Configuration of the options for calling external services: oddjob.Retry, and the pool
options rate_limit, retry and max_queue_time through every source. (What the options do
to running jobs is tested with the cores; here only what each source accepts, refuses and
resolves to.)"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import threading
import urllib.error
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import oddjob
import support
from oddjob import _config as config
from oddjob._config import PoolOptions
from oddjob._errors import ConfigError
from oddjob._retry import Retry
from support import Hostile, HostileError

KEYS = ("rate_limit", "retry", "max_queue_time")
ENV = {
    "rate_limit": "ODDJOB_RATE_LIMIT",
    "retry": "ODDJOB_RETRY",
    "max_queue_time": "ODDJOB_MAX_QUEUE_TIME",
}


# Each test starts with no configure() call, no oddjob variable and no file.
pytestmark = pytest.mark.usefixtures("clean_config")


class HostileMeta(type):
    """A metaclass whose classes' truth and equality raise."""

    def __bool__(cls) -> bool:
        raise HostileError("class __bool__")

    def __eq__(cls, other: object) -> bool:
        raise HostileError("class __eq__")

    __hash__ = type.__hash__


class HostileClassError(Exception, metaclass=HostileMeta):
    """A sound Exception subclass, though its class's truth and equality raise."""


class HostileClass(metaclass=HostileMeta):
    """Not an exception, and comparing or testing the class raises."""


# -- Retry: fields ------------------------------------------------------------------------


def test_retry_defaults() -> None:
    policy = Retry()
    assert (policy.attempts, policy.on, policy.backoff, policy.max_backoff, policy.jitter) == (
        3,
        (Exception,),
        0.1,
        30.0,
        True,
    )
    assert oddjob.Retry is Retry


def test_retry_is_a_frozen_slots_value() -> None:
    policy = Retry(5, ValueError, 1, 2, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.attempts = 1  # type: ignore[misc]
    assert not hasattr(policy, "__dict__")
    assert policy == Retry(attempts=5, on=(ValueError,), backoff=1.0, max_backoff=2.0, jitter=False)
    assert hash(policy) == hash(Retry(5, [ValueError], 1.0, 2.0, False))
    assert policy != Retry(5, ValueError, 1, 2, True)
    assert pickle.loads(pickle.dumps(policy)) == policy
    assert "attempts=5" in repr(policy)


def test_replace_validates_too() -> None:
    policy = Retry(on=OSError)
    assert dataclasses.replace(policy, attempts=9) == Retry(9, OSError)
    with pytest.raises(ConfigError, match=r"Retry\(attempts=0\)"):
        dataclasses.replace(policy, attempts=0)


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("attempts", 1, 1),
        ("attempts", 1_000_000, 1_000_000),
        ("attempts", 10**30, 10**30),
        ("on", ValueError, (ValueError,)),
        ("on", [ValueError, OSError], (ValueError, OSError)),
        ("on", (ConnectionError,), (ConnectionError,)),
        ("on", (TimeoutError, json.JSONDecodeError), (TimeoutError, json.JSONDecodeError)),
        ("on", HostileClassError, (HostileClassError,)),
        ("on", [HostileClassError, ValueError], (HostileClassError, ValueError)),
        ("on", oddjob.JobExpiredError, (oddjob.JobExpiredError,)),
        ("backoff", 0, 0.0),
        ("backoff", 2, 2.0),
        ("backoff", 0.25, 0.25),
        ("backoff", timedelta(milliseconds=250), 0.25),
        ("backoff", timedelta(0), 0.0),
        ("backoff", 1e300, 1e300),
        ("max_backoff", 0, 0.0),
        ("max_backoff", 0.01, 0.01),  # below the default backoff: a cap need not exceed it
        ("max_backoff", timedelta(minutes=2), 120.0),
        ("jitter", False, False),
        ("jitter", True, True),
    ],
    ids=repr,
)
def test_retry_good_field(field: str, value: Any, stored: Any) -> None:
    policy = Retry(**{field: value})
    assert getattr(policy, field) == stored
    assert type(getattr(policy, field)) is type(stored)


RETRY_BAD: list[tuple[str, Any]] = [
    ("attempts", 0),
    ("attempts", -1),
    ("attempts", True),
    ("attempts", False),
    ("attempts", 1.0),
    ("attempts", "3"),
    ("attempts", None),
    ("attempts", Hostile()),
    ("on", ()),
    ("on", []),
    ("on", None),
    ("on", "ValueError"),
    ("on", ValueError("an instance")),
    ("on", KeyboardInterrupt),
    ("on", SystemExit),
    ("on", GeneratorExit),
    ("on", BaseException),
    ("on", (ValueError, KeyboardInterrupt)),
    ("on", (ValueError, 3)),
    ("on", object),
    ("on", int),
    ("on", HostileClass),
    ("on", Hostile()),
    ("on", [Hostile()]),
    ("on", {ValueError}),  # a set: unordered, and not one of the accepted forms
    ("on", (e for e in [ValueError])),
    ("backoff", -0.1),
    ("backoff", math.nan),
    ("backoff", math.inf),
    ("backoff", -math.inf),
    ("backoff", True),
    ("backoff", "0.1"),
    ("backoff", None),
    ("backoff", timedelta(seconds=-1)),
    ("backoff", 10**400),  # beyond float range: not finite
    ("backoff", Hostile()),
    ("max_backoff", -1),
    ("max_backoff", math.nan),
    ("max_backoff", math.inf),
    ("max_backoff", False),
    ("max_backoff", "30"),
    ("max_backoff", None),
    ("max_backoff", Hostile()),
    ("jitter", 1),
    ("jitter", 0),
    ("jitter", "yes"),
    ("jitter", None),
    ("jitter", Hostile()),
]


@pytest.mark.parametrize(("field", "value"), RETRY_BAD, ids=repr)
def test_retry_bad_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match="expected") as caught:
        Retry(**{field: value})
    message = str(caught.value)
    assert message.startswith(f"Retry({field}={value!r}): ")


def test_retry_bad_field_message_names_the_culprit() -> None:
    with pytest.raises(ConfigError, match=r"KeyboardInterrupt.* is not an Exception subclass"):
        Retry(on=(ValueError, KeyboardInterrupt))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"3 is not a class"):
        Retry(on=[ValueError, 3])  # type: ignore[list-item]
    with pytest.raises(ValueError):  # a ConfigError is a ValueError
        Retry(attempts=0)


# -- Retry.delay ----------------------------------------------------------------------------


def test_delay_doubles_from_backoff() -> None:
    policy = Retry(backoff=0.1, max_backoff=1e9, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert policy.delay(11) == 0.1 * 2**10
    assert type(policy.delay(1)) is float


def test_delay_is_capped_by_max_backoff() -> None:
    policy = Retry(backoff=1, max_backoff=5, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert Retry(backoff=10, max_backoff=3, jitter=False).delay(1) == 3.0
    assert Retry(backoff=1, max_backoff=0, jitter=False).delay(1) == 0.0


@pytest.mark.parametrize("attempt", [1_100, 10**6, 2**63, 2**64 + 1, 10**100])
def test_delay_of_a_huge_attempt_is_the_cap(attempt: int) -> None:
    assert Retry(backoff=0.1, max_backoff=30, jitter=False).delay(attempt) == 30.0
    assert Retry(backoff=1e300, max_backoff=1e308, jitter=False).delay(attempt) == 1e308
    assert Retry(backoff=0, jitter=False).delay(attempt) == 0.0
    assert 0.0 <= Retry(backoff=0.1, max_backoff=30).delay(attempt) <= 30.0


def test_delay_with_a_tiny_backoff_is_exact() -> None:
    tiny = 5e-324  # the smallest float: 2**-1074
    policy = Retry(backoff=tiny, max_backoff=1e9, jitter=False)
    assert policy.delay(1) == tiny
    assert policy.delay(1_075) == 1.0


@pytest.mark.parametrize("attempt", [0, -1, -(10**100)])
def test_delay_of_no_run_is_a_value_error(attempt: int) -> None:
    with pytest.raises(ValueError, match=f"attempt={attempt}"):
        Retry().delay(attempt)


@pytest.mark.parametrize("attempt", [1, 3, 9, 10**9])
def test_full_jitter_stays_within_the_schedule(attempt: int) -> None:
    policy = Retry(backoff=0.5, max_backoff=10)
    bound = Retry(backoff=0.5, max_backoff=10, jitter=False).delay(attempt)
    delays = [policy.delay(attempt) for _ in range(2_000)]
    assert all(0.0 <= d <= bound for d in delays)
    # Full jitter spreads over the whole range (a wrong one, e.g. +-10%, would not).
    assert min(delays) < bound * 0.1
    assert max(delays) > bound * 0.9
    assert len(set(delays)) > 1_000


def test_jitter_of_a_zero_delay_is_zero() -> None:
    assert Retry(backoff=0).delay(4) == 0.0
    assert Retry(max_backoff=0).delay(4) == 0.0


# -- the pool options: defaults and good values from every source --------------------------


def test_the_options_default_to_none() -> None:
    options = PoolOptions()
    assert (options.rate_limit, options.retry, options.max_queue_time) == (None, None, None)
    assert config.settings().defaults == options
    assert config.pool_options("any") == options
    assert set(KEYS) <= set(config.ENV_VARS)
    assert {key: config.ENV_VARS[key] for key in KEYS} == ENV


# (key, value as configure() and Pool(...) take it, what is stored)
GOOD: list[tuple[str, Any, Any]] = [
    ("rate_limit", None, None),
    ("rate_limit", (200, 1.0), (200, 1.0)),
    ("rate_limit", [5, 2], (5, 2.0)),
    ("rate_limit", (1, timedelta(milliseconds=10)), (1, 0.01)),
    ("rate_limit", (1_000_000, 1e-6), (1_000_000, 1e-6)),
    ("rate_limit", (3, 86_400 * 365), (3, 86_400.0 * 365)),
    ("retry", None, None),
    ("retry", Retry(2, ValueError), Retry(2, ValueError)),
    ("retry", 1, Retry(attempts=1)),
    ("retry", 5, Retry(attempts=5)),
    ("retry", {}, Retry()),
    ("retry", {"attempts": 4, "backoff": 0.5}, Retry(4, backoff=0.5)),
    ("retry", {"on": ConnectionError}, Retry(on=ConnectionError)),
    ("retry", {"on": "ConnectionError"}, Retry(on=ConnectionError)),
    ("retry", {"on": "json:JSONDecodeError"}, Retry(on=json.JSONDecodeError)),
    ("retry", {"on": "urllib.error:HTTPError"}, Retry(on=urllib.error.HTTPError)),
    (
        "retry",
        {"on": ["TimeoutError", "json.decoder:JSONDecodeError", OSError]},
        Retry(on=(TimeoutError, json.JSONDecodeError, OSError)),
    ),
    ("retry", {"on": ("oddjob:JobExpiredError",)}, Retry(on=oddjob.JobExpiredError)),
    (
        "retry",
        {"attempts": 2, "on": "ValueError", "backoff": 1, "max_backoff": 2, "jitter": False},
        Retry(2, ValueError, 1.0, 2.0, False),
    ),
    ("max_queue_time", None, None),
    ("max_queue_time", 2.5, 2.5),
    ("max_queue_time", 3, 3.0),
    ("max_queue_time", 1e-9, 1e-9),
    ("max_queue_time", timedelta(minutes=1), 60.0),
    ("max_queue_time", math.inf, math.inf),
    ("max_queue_time", 10**400, math.inf),  # beyond float range: no limit
]


def good_id(case: Any) -> str:
    return repr(case)[:60]


@pytest.mark.parametrize(("key", "value", "stored"), GOOD, ids=good_id)
def test_configure_sets_the_option(key: str, value: Any, stored: Any) -> None:
    config.configure(**{key: value})
    assert getattr(config.settings().defaults, key) == stored
    assert getattr(config.pool_options("any"), key) == stored
    if isinstance(stored, float):
        assert type(getattr(config.settings().defaults, key)) is float


@pytest.mark.parametrize(("key", "value", "stored"), GOOD, ids=good_id)
def test_pool_and_build_take_the_option(key: str, value: Any, stored: Any) -> None:
    pool = oddjob.Pool(support.new_name(), **{key: value})  # made, not started
    assert getattr(pool.options, key) == stored
    assert getattr(PoolOptions.build(**{key: value}), key) == stored
    assert getattr(config.pool_options("any", **{key: value}), key) == stored


@pytest.mark.parametrize(("key", "value", "stored"), GOOD, ids=good_id)
def test_extra_pool_overrides_set_the_option(key: str, value: Any, stored: Any) -> None:
    config.configure(extra_pools={"api": {key: value}})
    api = config.options_for("api")
    assert api is not None and getattr(api, key) == stored
    assert getattr(config.settings().defaults, key) is None
    assert getattr(config.pool_options("api"), key) == stored


def test_stored_options_are_hashable() -> None:
    config.configure(rate_limit=[5, 1], retry={"on": ["ValueError"]}, max_queue_time=1)
    hash(config.settings())
    assert config.settings() == config.settings()


@pytest.mark.parametrize(
    ("key", "raw", "stored"),
    [
        ("rate_limit", "200/1.0", (200, 1.0)),
        ("rate_limit", "5/2", (5, 2.0)),
        ("rate_limit", " 10 / 0.5 ", (10, 0.5)),
        ("rate_limit", "1000000/1e-6", (1_000_000, 1e-6)),
        ("rate_limit", "none", None),
        ("rate_limit", " NONE ", None),
        ("retry", "5", Retry(attempts=5)),
        ("retry", " 1 ", Retry(attempts=1)),
        ("retry", "None", None),
        ("max_queue_time", "2.5", 2.5),
        ("max_queue_time", "3", 3.0),
        ("max_queue_time", "inf", math.inf),
        ("max_queue_time", "1e-3", 0.001),
        ("max_queue_time", "none", None),
    ],
)
def test_environment_sets_the_option(
    monkeypatch: pytest.MonkeyPatch, key: str, raw: str, stored: Any
) -> None:
    monkeypatch.setenv(ENV[key], raw)
    assert getattr(config.settings().defaults, key) == stored
    assert getattr(oddjob.Pool(support.new_name()).options, key) == stored


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("raw", ["", "  "])
def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch, key: str, raw: str) -> None:
    monkeypatch.setenv(ENV[key], raw)
    assert config.settings().defaults == PoolOptions()


def test_the_file_sets_every_option_top_level_and_per_pool(
    config_file: Callable[[str], Path],
) -> None:
    config_file(
        """
        rate_limit = [200, 1.0]
        retry = 4
        max_queue_time = 2.5

        [extra_pools.api]
        rate_limit = [5, 2]
        max_queue_time = inf

        [extra_pools.api.retry]
        attempts = 6
        on = ["ConnectionError", "json:JSONDecodeError"]
        backoff = 0.5
        max_backoff = 8
        jitter = false

        [extra_pools.db]
        retry = { on = "TimeoutError" }
        """
    )
    s = config.settings()
    assert (s.defaults.rate_limit, s.defaults.retry, s.defaults.max_queue_time) == (
        (200, 1.0),
        Retry(attempts=4),
        2.5,
    )
    api = s.extra_pools["api"]
    assert api.rate_limit == (5, 2.0)
    assert api.max_queue_time == math.inf
    assert api.retry == Retry(6, (ConnectionError, json.JSONDecodeError), 0.5, 8.0, False)
    db = s.extra_pools["db"]
    assert db.retry == Retry(on=TimeoutError)
    assert (db.rate_limit, db.max_queue_time) == ((200, 1.0), 2.5), "top-level values reach it"


def test_the_file_retry_table_at_top_level(config_file: Callable[[str], Path]) -> None:
    config_file(
        """
        [retry]
        attempts = 2
        on = "urllib.error:HTTPError"
        """
    )
    assert config.settings().defaults.retry == Retry(2, urllib.error.HTTPError)


# -- precedence -----------------------------------------------------------------------------

# A distinct value of each option for each source: (as set there, as stored). The
# environment's is its variable's text.
LAYERS: dict[str, dict[str, tuple[Any, Any]]] = {
    "rate_limit": {
        "file": ("[1, 1.0]", (1, 1.0)),
        "env": ("2/1", (2, 1.0)),
        "configure": ((3, 1), (3, 1.0)),
        "extra": ((4, 1), (4, 1.0)),
        "own": ((5, 1), (5, 1.0)),
    },
    "retry": {
        "file": ("1", Retry(1)),
        "env": ("2", Retry(2)),
        "configure": (3, Retry(3)),
        "extra": ({"attempts": 4}, Retry(4)),
        "own": (Retry(5), Retry(5)),
    },
    "max_queue_time": {
        "file": ("1.0", 1.0),
        "env": ("2", 2.0),
        "configure": (3, 3.0),
        "extra": (4, 4.0),
        "own": (timedelta(seconds=5), 5.0),
    },
}


@pytest.mark.parametrize("key", KEYS)
def test_precedence(
    key: str, monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    """own > extra pool overrides > configure() > environment > file > built-in, per key."""
    layer = LAYERS[key]

    def now(pool: str = "api", own: dict[str, Any] | None = None) -> Any:
        return getattr(config.pool_options(pool, **(own or {})), key)

    assert now() is None
    config_file(f"{key} = {layer['file'][0]}\n")
    assert now() == layer["file"][1]
    monkeypatch.setenv(ENV[key], layer["env"][0])
    assert now() == layer["env"][1]
    config.configure(**{key: layer["configure"][0]})
    assert now() == layer["configure"][1]
    config.configure(extra_pools={"api": {key: layer["extra"][0]}})
    assert now() == layer["extra"][1]
    assert now("other") == layer["configure"][1]
    assert now(own={key: layer["own"][0]}) == layer["own"][1]
    assert getattr(oddjob.Pool("api", **{key: layer["own"][0]}).options, key) == layer["own"][1]
    # None is a setting too: it wins where it is set.
    assert now(own={key: None}) is None
    config.configure(extra_pools={})
    config.configure(**{key: None})
    assert now() is None


@pytest.mark.parametrize("key", KEYS)
def test_none_in_the_environment_beats_the_file(
    key: str, monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file(f"{key} = {LAYERS[key]['file'][0]}\n")
    monkeypatch.setenv(ENV[key], "none")
    assert getattr(config.settings().defaults, key) is None


def test_precedence_is_per_key(
    monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file("rate_limit = [1, 1.0]\nretry = 1\nmax_queue_time = 1.0\n")
    monkeypatch.setenv("ODDJOB_RETRY", "2")
    config.configure(max_queue_time=3)
    options = config.pool_options("any")
    assert (options.rate_limit, options.retry, options.max_queue_time) == ((1, 1.0), Retry(2), 3.0)


# -- bad values -----------------------------------------------------------------------------

# (key, value, a further part the message must show, if any)
BAD: list[tuple[str, Any, str]] = [
    ("rate_limit", 5, ""),
    ("rate_limit", "200/1.0", ""),
    ("rate_limit", (), ""),
    ("rate_limit", (5,), ""),
    ("rate_limit", (5, 1, 1), ""),
    ("rate_limit", {"count": 5, "per": 1}, ""),
    ("rate_limit", {5, 1}, ""),
    ("rate_limit", (0, 1), ""),
    ("rate_limit", (-1, 1), ""),
    ("rate_limit", (1_000_001, 1), ""),
    ("rate_limit", (True, 1), ""),
    ("rate_limit", (5.0, 1), ""),
    ("rate_limit", ("5", 1), ""),
    ("rate_limit", (None, 1), ""),
    ("rate_limit", (5, 0), ""),
    ("rate_limit", (5, -1), ""),
    ("rate_limit", (5, math.nan), ""),
    ("rate_limit", (5, math.inf), ""),
    ("rate_limit", (5, 10**400), ""),
    ("rate_limit", (5, True), ""),
    ("rate_limit", (5, "1"), ""),
    ("rate_limit", (5, None), ""),
    ("rate_limit", (5, timedelta(0)), ""),
    ("rate_limit", Hostile(), ""),
    ("rate_limit", (Hostile(), 1), ""),
    ("rate_limit", (5, Hostile()), ""),
    ("retry", 0, "Retry(attempts=0)"),
    ("retry", -1, "Retry(attempts=-1)"),
    ("retry", True, ""),
    ("retry", 1.5, ""),
    ("retry", "3", ""),
    ("retry", [3], ""),
    ("retry", Retry, ""),
    ("retry", Hostile(), ""),
    ("retry", {"attempts": 0}, "Retry(attempts=0)"),
    ("retry", {"attempts": True}, "Retry(attempts=True)"),
    ("retry", {"atempts": 3}, "unknown Retry field 'atempts'"),
    ("retry", {1: 3}, "unknown Retry field 1"),
    ("retry", {"on": ()}, "Retry(on=())"),
    ("retry", {"on": 3}, "Retry(on=3)"),
    ("retry", {"on": "Bogus"}, "Retry(on='Bogus'): no builtin has that name"),
    ("retry", {"on": "print"}, "is not a class"),
    ("retry", {"on": "object"}, "is not an Exception subclass"),
    ("retry", {"on": "KeyboardInterrupt"}, "is not an Exception subclass"),
    ("retry", {"on": ["ValueError", "SystemExit"]}, "SystemExit"),
    ("retry", {"on": "a b"}, "Retry(on='a b'): expected"),
    ("retry", {"on": "json:"}, "Retry(on='json:'): expected"),
    ("retry", {"on": "json:dumps"}, "is not a class"),
    ("retry", {"on": "json:NoSuchError"}, "cannot import it (AttributeError"),
    ("retry", {"on": "no_such_module_xyz:Error"}, "cannot import it (ModuleNotFoundError"),
    ("retry", {"on": [ValueError, "Bogus"]}, "Retry(on='Bogus')"),
    ("retry", {"backoff": -1}, "Retry(backoff=-1)"),
    ("retry", {"backoff": "1"}, "Retry(backoff='1')"),
    ("retry", {"max_backoff": math.nan}, "Retry(max_backoff=nan)"),
    ("retry", {"jitter": "yes"}, "Retry(jitter='yes')"),
    ("retry", {"jitter": Hostile()}, "Retry(jitter=<Hostile>)"),
    ("max_queue_time", 0, ""),
    ("max_queue_time", -1, ""),
    ("max_queue_time", math.nan, ""),
    ("max_queue_time", -math.inf, ""),
    ("max_queue_time", True, ""),
    ("max_queue_time", "2", ""),
    ("max_queue_time", [1], ""),
    ("max_queue_time", timedelta(0), ""),
    ("max_queue_time", timedelta(seconds=-1), ""),
    ("max_queue_time", Hostile(), ""),
]
BAD_IDS = [f"{key}={value!r}"[:60] for key, value, _ in BAD]


def check_message(message: str, where: str, key: str, value: Any, detail: str) -> None:
    assert f"{where}{key}={value!r}: " in message
    assert "expected" in message
    assert detail in message


@pytest.mark.parametrize(("key", "value", "detail"), BAD, ids=BAD_IDS)
def test_configure_bad_value(key: str, value: Any, detail: str) -> None:
    config.configure(pool_size=2)
    before = config.settings()
    with pytest.raises(ConfigError) as caught:
        config.configure(pool_size=3, **{key: value})
    check_message(str(caught.value), "configure(): ", key, value, detail)
    assert config.settings() == before, "a failing configure() applies nothing"


@pytest.mark.parametrize(("key", "value", "detail"), BAD, ids=BAD_IDS)
def test_extra_pool_bad_value(key: str, value: Any, detail: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.configure(extra_pools={"api": {key: value}})
    check_message(str(caught.value), "configure(): extra_pools['api'].", key, value, detail)
    assert dict(config.settings().extra_pools) == {}


@pytest.mark.parametrize(("key", "value", "detail"), BAD, ids=BAD_IDS)
def test_pool_bad_value(key: str, value: Any, detail: str) -> None:
    name = support.new_name()
    for make in (
        lambda: oddjob.Pool(name, **{key: value}),
        lambda: PoolOptions.build(**{key: value}),
        lambda: config.pool_options(name, **{key: value}),
    ):
        with pytest.raises(ConfigError) as caught:
            make()
        check_message(str(caught.value), "", key, value, detail)


def threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("oddjob")}


@pytest.mark.parametrize(
    ("key", "value"),
    [("rate_limit", (0, 1)), ("retry", {"on": "Bogus"}), ("max_queue_time", -1)],
)
def test_a_pool_with_a_bad_option_starts_nothing(key: str, value: Any) -> None:
    ran: list[object] = []
    before = threads()
    name = support.new_name()
    with pytest.raises(ConfigError, match=key):
        oddjob.start_link(name, pool_size=2, **{key: value})
    with pytest.raises(ConfigError, match=key):
        oddjob.Pool(name, **{key: value}).start()
    assert oddjob.whereis(name) is None
    with pytest.raises(oddjob.PoolNotFoundError):
        oddjob.perform(name, ran.append, 1)
    assert threads() == before
    assert ran == []


@pytest.mark.parametrize(
    ("var", "raw"),
    [("ODDJOB_RATE_LIMIT", "0/1"), ("ODDJOB_RETRY", "0"), ("ODDJOB_MAX_QUEUE_TIME", "0")],
)
def test_a_bad_variable_fails_the_call_that_would_start_a_configured_pool(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str
) -> None:
    ran: list[object] = []
    before = threads()
    api = support.track("api")
    config.configure(extra_pools=["api"])
    monkeypatch.setenv(var, raw)
    with pytest.raises(ConfigError, match=var):
        oddjob.perform(api, ran.append, 1)
    with pytest.raises(ConfigError, match=var):
        oddjob.async_perform(api, ran.append, 2)
    assert oddjob.whereis(api) is None
    assert threads() == before
    assert ran == []


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("ODDJOB_RATE_LIMIT", "200"),
        ("ODDJOB_RATE_LIMIT", "200/"),
        ("ODDJOB_RATE_LIMIT", "/1"),
        ("ODDJOB_RATE_LIMIT", "200/1/1"),
        ("ODDJOB_RATE_LIMIT", "200,1"),
        ("ODDJOB_RATE_LIMIT", "0/1"),
        ("ODDJOB_RATE_LIMIT", "-5/1"),
        ("ODDJOB_RATE_LIMIT", "1000001/1"),
        ("ODDJOB_RATE_LIMIT", "1.5/1"),
        ("ODDJOB_RATE_LIMIT", "abc/1"),
        ("ODDJOB_RATE_LIMIT", "200/abc"),
        ("ODDJOB_RATE_LIMIT", "200/0"),
        ("ODDJOB_RATE_LIMIT", "200/-1"),
        ("ODDJOB_RATE_LIMIT", "200/nan"),
        ("ODDJOB_RATE_LIMIT", "200/inf"),
        ("ODDJOB_RATE_LIMIT", "false"),
        ("ODDJOB_RETRY", "0"),
        ("ODDJOB_RETRY", "-1"),
        ("ODDJOB_RETRY", "1.5"),
        ("ODDJOB_RETRY", "true"),
        ("ODDJOB_RETRY", "three"),
        ("ODDJOB_RETRY", "[3]"),
        ("ODDJOB_RETRY", "ConnectionError"),
        ("ODDJOB_MAX_QUEUE_TIME", "0"),
        ("ODDJOB_MAX_QUEUE_TIME", "-1"),
        ("ODDJOB_MAX_QUEUE_TIME", "nan"),
        ("ODDJOB_MAX_QUEUE_TIME", "-inf"),
        ("ODDJOB_MAX_QUEUE_TIME", "soon"),
        ("ODDJOB_MAX_QUEUE_TIME", "2.5s"),
    ],
)
def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    monkeypatch.setenv(var, raw)
    for call in (
        config.settings,
        lambda: config.options_for("job"),
        lambda: config.pool_options("x"),
        lambda: oddjob.Pool(support.new_name()),
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        assert f"{var}={raw!r}: " in str(caught.value)
        assert "expected" in str(caught.value)


def test_a_bad_variable_raises_even_if_configure_sets_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config.configure(retry=3)
    monkeypatch.setenv("ODDJOB_RETRY", "lots")
    with pytest.raises(ConfigError, match="ODDJOB_RETRY='lots'"):
        config.settings()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rate_limit = 5\n", "rate_limit=5: expected"),
        ('rate_limit = "200/1.0"\n', "rate_limit='200/1.0': expected"),
        ("rate_limit = [0, 1]\n", "rate_limit=[0, 1]: expected"),
        ("rate_limit = [5, 0]\n", "rate_limit=[5, 0]: expected"),
        ("rate_limit = [5, inf]\n", "rate_limit=[5, inf]: expected"),
        ("rate_limit = [5, 1, 1]\n", "rate_limit=[5, 1, 1]: expected"),
        ("rate_limit = [5.0, 1]\n", "rate_limit=[5.0, 1]: expected"),
        ("rate_limit = { count = 5 }\n", "rate_limit={'count': 5}: expected"),
        ("retry = 0\n", "retry=0: Retry(attempts=0): expected"),
        ('retry = "3"\n', "retry='3': expected"),
        ("retry = true\n", "retry=True: expected"),
        ("retry = [3]\n", "retry=[3]: expected"),
        ("[retry]\natempts = 3\n", "unknown Retry field 'atempts'"),
        ("[retry]\nattempts = 0\n", "Retry(attempts=0): expected"),
        ('[retry]\non = "Bogus"\n', "Retry(on='Bogus'): no builtin has that name"),
        ('[retry]\non = ["ValueError", 3]\n', "3 is not a class"),
        ('[retry]\non = "json:nope"\n', "Retry(on='json:nope'): cannot import it"),
        ('[retry]\non = "SystemExit"\n', "is not an Exception subclass"),
        ("[retry]\nbackoff = -1\n", "Retry(backoff=-1): expected"),
        ("[retry]\nmax_backoff = inf\n", "Retry(max_backoff=inf): expected"),
        ('[retry]\njitter = "yes"\n', "Retry(jitter='yes'): expected"),
        ("max_queue_time = 0\n", "max_queue_time=0: expected"),
        ("max_queue_time = nan\n", "max_queue_time=nan: expected"),
        ("max_queue_time = -inf\n", "max_queue_time=-inf: expected"),
        ('max_queue_time = "1"\n', "max_queue_time='1': expected"),
        ("max_queue_time = 00:00:05\n", "max_queue_time=datetime.time(0, 0, 5): expected"),
        ("[extra_pools.api]\nrate_limit = [5]\n", "extra_pools['api'].rate_limit=[5]: expected"),
        ("[extra_pools.api.retry]\nattempts = -1\n", "extra_pools['api'].retry={'attempts': -1}"),
        ("[extra_pools.api]\nmax_queue_time = 0\n", "extra_pools['api'].max_queue_time=0"),
    ],
)
def test_bad_file(config_file: Callable[[str], Path], text: str, shown: str) -> None:
    path = config_file(text)
    with pytest.raises(ConfigError) as caught:
        config.settings()
    message = str(caught.value)
    assert message.startswith(f"ODDJOB_CONFIG file {str(path)!r}: ")
    assert shown in message
    assert "expected" in message


def test_a_broken_file_is_not_cached(config_file: Callable[[str], Path]) -> None:
    path = config_file('[retry]\non = "Bogus"\n')
    for _ in range(2):
        with pytest.raises(ConfigError):
            config.settings()
    path.write_text('[retry]\non = "LookupError"\n')
    assert config.settings().defaults.retry == Retry(on=LookupError)


def test_an_import_error_is_the_cause() -> None:
    with pytest.raises(ConfigError) as caught:
        config.configure(retry={"on": "no_such_module_xyz:Error"})
    cause = caught.value.__cause__
    assert isinstance(cause, ConfigError)
    assert isinstance(cause.__cause__, ModuleNotFoundError)


def test_job_expired_error() -> None:
    assert issubclass(oddjob.JobExpiredError, oddjob.OddJobError)
    assert issubclass(oddjob.JobExpiredError, TimeoutError)
    assert oddjob.JobExpiredError.__doc__
    assert "JobExpiredError" in oddjob.__all__ and "Retry" in oddjob.__all__
