"""Configuration of the worker kinds: the pool options backend, job_timeout, start_method,
max_jobs_per_worker and address through every source, and the rules on which options need
which backend. (No process pool is started here: only what each source accepts, refuses
and resolves to, and which pools may be made.)"""

from __future__ import annotations

import math
import multiprocessing
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
from support import Hostile

KEYS = ("backend", "job_timeout", "start_method", "max_jobs_per_worker", "address")
ENV = {
    "backend": "ODDJOB_BACKEND",
    "job_timeout": "ODDJOB_JOB_TIMEOUT",
    "start_method": "ODDJOB_START_METHOD",
    "max_jobs_per_worker": "ODDJOB_MAX_JOBS_PER_WORKER",
}
# The backend each option needs, given alongside it wherever a pool is resolved.
SUITS: dict[str, dict[str, str]] = {
    "backend": {},
    "job_timeout": {"backend": "processes"},
    "start_method": {},
    "max_jobs_per_worker": {"backend": "processes"},
    "address": {"backend": "ray"},
}
THREADS_MESSAGE = "job_timeout needs backend='processes' or 'ray': a thread cannot be stopped"
HAS_EVERY_START_METHOD = set(config.START_METHODS) <= set(multiprocessing.get_all_start_methods())


# Each test starts with no configure() call, no oddjob variable and no file.
pytestmark = pytest.mark.usefixtures("clean_config")


class Text(str):
    """A str subclass: not a str for the options (its __eq__ could be anything)."""


@pytest.fixture
def only_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform with only the spawn start method (as Windows)."""
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])


# -- defaults --------------------------------------------------------------------------------


def test_the_defaults() -> None:
    options = PoolOptions()
    assert (options.backend, options.job_timeout, options.start_method) == (
        "threads",
        None,
        "spawn",
    )
    assert (options.max_jobs_per_worker, options.address) == (None, None)
    assert (config.BACKEND, config.START_METHOD) == ("threads", "spawn")
    assert config.BACKENDS == ("threads", "processes", "ray")
    assert config.START_METHODS == ("spawn", "forkserver", "fork")
    assert config.settings().defaults == options
    assert config.pool_options("any") == options
    assert config.options_for("job") == options
    assert oddjob.Pool(support.new_name()).options == options


def test_every_variable_but_address() -> None:
    assert {key: config.ENV_VARS[key] for key in ENV} == ENV
    assert "address" not in config.ENV_VARS


# -- good values from every source -----------------------------------------------------------

# (key, value as configure() and Pool(...) take it, what is stored)
GOOD: list[tuple[str, Any, Any]] = [
    ("backend", "threads", "threads"),
    ("backend", "processes", "processes"),
    ("backend", "ray", "ray"),
    ("job_timeout", None, None),
    ("job_timeout", 2.5, 2.5),
    ("job_timeout", 3, 3.0),
    ("job_timeout", 1e-9, 1e-9),
    ("job_timeout", timedelta(minutes=1), 60.0),
    ("job_timeout", math.inf, None),  # no limit, as None
    ("job_timeout", 10**400, None),  # beyond float range: inf, so no limit
    ("job_timeout", timedelta.max, timedelta.max.total_seconds()),
    ("start_method", "spawn", "spawn"),
    ("max_jobs_per_worker", None, None),
    ("max_jobs_per_worker", 1, 1),
    ("max_jobs_per_worker", 1000, 1000),
    ("max_jobs_per_worker", 10**30, 10**30),
    ("address", None, None),
    ("address", "auto", "auto"),
    ("address", "ray://head:10001", "ray://head:10001"),
]
if HAS_EVERY_START_METHOD:
    GOOD += [("start_method", "forkserver", "forkserver"), ("start_method", "fork", "fork")]


def good_id(case: Any) -> str:
    return repr(case)[:60]


def check_stored(found: Any, stored: Any) -> None:
    assert found == stored
    assert type(found) is type(stored)


@pytest.mark.parametrize(("key", "value", "stored"), GOOD, ids=good_id)
def test_configure_sets_the_option(key: str, value: Any, stored: Any) -> None:
    config.configure(**{key: value}, **SUITS[key])
    check_stored(getattr(config.settings().defaults, key), stored)
    check_stored(getattr(config.pool_options("any"), key), stored)
    check_stored(getattr(oddjob.Pool(support.new_name()).options, key), stored)


@pytest.mark.parametrize(("key", "value", "stored"), GOOD, ids=good_id)
def test_pool_and_build_take_the_option(key: str, value: Any, stored: Any) -> None:
    options = {key: value, **SUITS[key]}
    pool = oddjob.Pool(support.new_name(), **options)  # made, not started
    check_stored(getattr(pool.options, key), stored)
    check_stored(getattr(PoolOptions.build(**options), key), stored)
    check_stored(getattr(config.pool_options("any", **options), key), stored)


@pytest.mark.parametrize(("key", "value", "stored"), GOOD, ids=good_id)
def test_extra_pool_overrides_set_the_option(key: str, value: Any, stored: Any) -> None:
    config.configure(extra_pools={"cpu": {key: value, **SUITS[key]}})
    cpu = config.options_for("cpu")
    assert cpu is not None
    check_stored(getattr(cpu, key), stored)
    check_stored(getattr(config.pool_options("cpu"), key), stored)
    check_stored(getattr(oddjob.Pool("cpu").options, key), stored)
    assert config.settings().defaults == PoolOptions(), "the top level keeps the defaults"


def test_stored_options_are_hashable() -> None:
    config.configure(backend="processes", job_timeout=timedelta(seconds=3), max_jobs_per_worker=10)
    config.configure(extra_pools={"remote": {"backend": "ray", "address": "auto"}})
    hash(config.settings())
    assert config.settings() == config.settings()


def test_the_file_sets_every_option_top_level_and_per_pool(
    config_file: Callable[[str], Path],
) -> None:
    config_file(
        """
        backend = "processes"
        job_timeout = 30
        start_method = "spawn"

        [extra_pools.recycled]
        max_jobs_per_worker = 100

        [extra_pools.remote]
        backend = "ray"
        address = "ray://head:10001"
        job_timeout = inf

        [extra_pools.local]
        backend = "threads"
        job_timeout = inf
        max_jobs_per_worker = 1
        """
    )
    s = config.settings()
    assert (s.defaults.backend, s.defaults.job_timeout) == ("processes", 30.0)
    assert (s.defaults.start_method, s.defaults.max_jobs_per_worker) == ("spawn", None)
    recycled = s.extra_pools["recycled"]
    assert (recycled.backend, recycled.max_jobs_per_worker) == ("processes", 100)
    remote = s.extra_pools["remote"]
    assert (remote.backend, remote.address, remote.job_timeout) == ("ray", "ray://head:10001", None)
    assert remote.start_method == "spawn", "top-level values reach it"
    assert config.pool_options("remote") == remote
    assert config.pool_options("other") == s.defaults
    # "local" is a thread pool with a worker count it cannot honour: the settings hold
    # it, but the pool cannot be made (its job_timeout = inf is no limit, so no error).
    assert (s.extra_pools["local"].job_timeout, s.extra_pools["local"].max_jobs_per_worker) == (
        None,
        1,
    )
    with pytest.raises(ConfigError, match=r"pool 'local' \(backend='threads'\): max_jobs_per"):
        config.options_for("local")
    with pytest.raises(ConfigError, match="pool 'local'"):
        oddjob.Pool("local")
    assert oddjob.Pool("local", max_jobs_per_worker=None).options.backend == "threads"


@pytest.mark.skipif(not HAS_EVERY_START_METHOD, reason="needs fork and forkserver")
def test_the_file_sets_each_start_method(config_file: Callable[[str], Path]) -> None:
    config_file('start_method = "fork"\n[extra_pools.fs]\nstart_method = "forkserver"\n')
    s = config.settings()
    assert (s.defaults.start_method, s.extra_pools["fs"].start_method) == ("fork", "forkserver")


@pytest.mark.parametrize(
    ("key", "raw", "stored"),
    [
        ("backend", "threads", "threads"),
        ("backend", "processes", "processes"),
        ("backend", " ray ", "ray"),
        ("job_timeout", "2.5", 2.5),
        ("job_timeout", "3", 3.0),
        ("job_timeout", "1e-3", 0.001),
        ("job_timeout", "inf", None),
        ("job_timeout", "none", None),
        ("job_timeout", " NONE ", None),
        ("start_method", "spawn", "spawn"),
        ("start_method", " spawn ", "spawn"),
        ("max_jobs_per_worker", "1", 1),
        ("max_jobs_per_worker", " 500 ", 500),
        ("max_jobs_per_worker", "None", None),
    ],
)
def test_environment_sets_the_option(
    monkeypatch: pytest.MonkeyPatch, key: str, raw: str, stored: Any
) -> None:
    monkeypatch.setenv(ENV[key], raw)
    check_stored(getattr(config.settings().defaults, key), stored)
    pool = oddjob.Pool(support.new_name(), **SUITS[key])
    check_stored(getattr(pool.options, key), stored)


@pytest.mark.skipif(not HAS_EVERY_START_METHOD, reason="needs fork and forkserver")
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_environment_sets_each_start_method(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    monkeypatch.setenv("ODDJOB_START_METHOD", method)
    assert config.pool_options("any").start_method == method


@pytest.mark.parametrize("key", list(ENV))
@pytest.mark.parametrize("raw", ["", "  "])
def test_an_empty_variable_is_unset(monkeypatch: pytest.MonkeyPatch, key: str, raw: str) -> None:
    monkeypatch.setenv(ENV[key], raw)
    assert config.settings().defaults == PoolOptions()


# -- precedence ------------------------------------------------------------------------------

# A value of each option for each source, each unlike the one below it: (as set there, as
# stored). The environment's is its variable's text, the file's its TOML; address has no
# variable.
LAYERS: dict[str, dict[str, tuple[Any, Any]]] = {
    "backend": {
        "file": ('"ray"', "ray"),
        "env": ("processes", "processes"),
        "configure": ("ray", "ray"),
        "extra": ("processes", "processes"),
        "own": ("threads", "threads"),
    },
    "job_timeout": {
        "file": ("1.0", 1.0),
        "env": ("2", 2.0),
        "configure": (3, 3.0),
        "extra": (4, 4.0),
        "own": (timedelta(seconds=5), 5.0),
    },
    "max_jobs_per_worker": {
        "file": ("1", 1),
        "env": ("2", 2),
        "configure": (3, 3),
        "extra": (4, 4),
        "own": (5, 5),
    },
    "address": {
        "file": ('"file:1"', "file:1"),
        "configure": ("configure:3", "configure:3"),
        "extra": ("extra:4", "extra:4"),
        "own": ("own:5", "own:5"),
    },
}
if HAS_EVERY_START_METHOD:
    LAYERS["start_method"] = {
        "file": ('"fork"', "fork"),
        "env": ("forkserver", "forkserver"),
        "configure": ("fork", "fork"),
        "extra": ("forkserver", "forkserver"),
        "own": ("spawn", "spawn"),
    }


@pytest.mark.parametrize("key", list(LAYERS))
def test_precedence(
    key: str, monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    """own > extra pool overrides > configure() > environment > file > built-in, per key."""
    layer = LAYERS[key]
    suits = SUITS[key]

    def now(pool: str = "api", own: dict[str, Any] | None = None) -> Any:
        return getattr(config.pool_options(pool, **suits, **(own or {})), key)

    assert now() == getattr(PoolOptions(), key)
    config_file(f"{key} = {layer['file'][0]}\n")
    assert now() == layer["file"][1]
    if "env" in layer:
        monkeypatch.setenv(ENV[key], layer["env"][0])
        assert now() == layer["env"][1]
    config.configure(**{key: layer["configure"][0]})
    assert now() == layer["configure"][1]
    config.configure(extra_pools={"api": {key: layer["extra"][0]}})
    assert now() == layer["extra"][1]
    assert now("other") == layer["configure"][1]
    assert now(own={key: layer["own"][0]}) == layer["own"][1]
    pool = oddjob.Pool("api", **suits, **{key: layer["own"][0]})
    assert getattr(pool.options, key) == layer["own"][1]
    if key in ("job_timeout", "max_jobs_per_worker", "address"):
        # None is a setting too: it wins where it is set.
        assert now(own={key: None}) is None
        config.configure(extra_pools={})
        config.configure(**{key: None})
        assert now() is None


@pytest.mark.parametrize("key", ["job_timeout", "max_jobs_per_worker"])
def test_none_in_the_environment_beats_the_file(
    key: str, monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file(f"{key} = {LAYERS[key]['file'][0]}\n")
    monkeypatch.setenv(ENV[key], "none")
    assert getattr(config.settings().defaults, key) is None


def test_precedence_is_per_key(
    monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file('backend = "processes"\njob_timeout = 1\nmax_jobs_per_worker = 1\n')
    monkeypatch.setenv("ODDJOB_JOB_TIMEOUT", "2")
    config.configure(max_jobs_per_worker=3)
    options = config.pool_options("any", address=None)
    assert (options.backend, options.job_timeout, options.max_jobs_per_worker) == (
        "processes",
        2.0,
        3,
    )


# -- bad values ------------------------------------------------------------------------------

# (key, value); the message must show "key=value: " and what is expected.
BAD: list[tuple[str, Any]] = [
    ("backend", "thread"),
    ("backend", "Threads"),
    ("backend", "process"),
    ("backend", "ray "),
    ("backend", ""),
    ("backend", None),
    ("backend", 1),
    ("backend", True),
    ("backend", ["processes"]),
    ("backend", b"processes"),
    ("backend", Text("processes")),
    ("backend", Hostile()),
    ("job_timeout", 0),
    ("job_timeout", 0.0),
    ("job_timeout", -1),
    ("job_timeout", -math.inf),
    ("job_timeout", math.nan),
    ("job_timeout", True),
    ("job_timeout", False),
    ("job_timeout", "5"),
    ("job_timeout", "none"),
    ("job_timeout", [5]),
    ("job_timeout", timedelta(0)),
    ("job_timeout", timedelta(seconds=-1)),
    ("job_timeout", Hostile()),
    ("start_method", "spawned"),
    ("start_method", "Spawn"),
    ("start_method", "threads"),
    ("start_method", ""),
    ("start_method", None),
    ("start_method", 0),
    ("start_method", Text("spawn")),
    ("start_method", Hostile()),
    ("max_jobs_per_worker", 0),
    ("max_jobs_per_worker", -1),
    ("max_jobs_per_worker", True),  # bool is not an int here
    ("max_jobs_per_worker", False),
    ("max_jobs_per_worker", 1.0),
    ("max_jobs_per_worker", math.inf),
    ("max_jobs_per_worker", "10"),
    ("max_jobs_per_worker", Hostile()),
    ("address", ""),
    ("address", 10001),
    ("address", False),
    ("address", b"auto"),
    ("address", ("head", 10001)),
    ("address", Text("auto")),
    ("address", Hostile()),
]
BAD_IDS = [f"{key}={value!r}"[:60] for key, value in BAD]


def check_message(message: str, where: str, key: str, value: Any) -> None:
    assert f"{where}{key}={value!r}: expected " in message
    if key == "start_method":
        assert "this platform's start methods: 'spawn'" in message


@pytest.mark.parametrize(("key", "value"), BAD, ids=BAD_IDS)
def test_configure_bad_value(key: str, value: Any) -> None:
    config.configure(pool_size=2)
    before = config.settings()
    with pytest.raises(ConfigError) as caught:
        config.configure(pool_size=3, **{"backend": "processes", key: value})
    check_message(str(caught.value), "configure(): ", key, value)
    assert config.settings() == before, "a failing configure() applies nothing"


@pytest.mark.parametrize(("key", "value"), BAD, ids=BAD_IDS)
def test_extra_pool_bad_value(key: str, value: Any) -> None:
    config.configure(extra_pools=["old"])
    with pytest.raises(ConfigError) as caught:
        config.configure(extra_pools={"cpu": {"backend": "processes", key: value}})
    check_message(str(caught.value), "configure(): extra_pools['cpu'].", key, value)
    assert list(config.settings().extra_pools) == ["old"]


@pytest.mark.parametrize(("key", "value"), BAD, ids=BAD_IDS)
def test_pool_bad_value(key: str, value: Any) -> None:
    name = support.new_name()
    for make in (
        lambda: oddjob.Pool(name, **{key: value}),
        lambda: PoolOptions.build(**{key: value}),
        lambda: config.pool_options(name, **{key: value}),
        lambda: oddjob.child_spec((name, {key: value})),
        lambda: oddjob.Supervisor([(name, {key: value})]),
    ):
        with pytest.raises(ConfigError) as caught:
            make()
        check_message(str(caught.value), "", key, value)
    assert oddjob.whereis(name) is None


def test_a_platform_without_the_method(only_spawn: None) -> None:
    """A start method multiprocessing knows but this platform lacks is refused, naming
    the ones it has."""
    assert oddjob.Pool(support.new_name(), start_method="spawn").options.start_method == "spawn"
    for method in ("fork", "forkserver"):
        with pytest.raises(ConfigError) as caught:
            config.configure(start_method=method)
        assert str(caught.value) == (
            f"configure(): start_method={method!r}: expected one of this platform's start "
            "methods: 'spawn'"
        )
        with pytest.raises(ConfigError, match=f"start_method={method!r}: expected .*'spawn'$"):
            oddjob.Pool(support.new_name(), backend="processes", start_method=method)
    assert config.settings().defaults.start_method == "spawn"


def test_the_message_lists_every_method_the_platform_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["fork", "spawn"])
    with pytest.raises(ConfigError) as caught:
        config.configure(start_method="forkserver")
    assert str(caught.value).endswith(
        "expected one of this platform's start methods: 'spawn', 'fork'"
    )


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("ODDJOB_BACKEND", "thread"),
        ("ODDJOB_BACKEND", "PROCESSES"),
        ("ODDJOB_BACKEND", "none"),
        ("ODDJOB_BACKEND", "1"),
        ("ODDJOB_JOB_TIMEOUT", "0"),
        ("ODDJOB_JOB_TIMEOUT", "-1"),
        ("ODDJOB_JOB_TIMEOUT", "nan"),
        ("ODDJOB_JOB_TIMEOUT", "-inf"),
        ("ODDJOB_JOB_TIMEOUT", "5s"),
        ("ODDJOB_JOB_TIMEOUT", "never"),
        ("ODDJOB_START_METHOD", "spawned"),
        ("ODDJOB_START_METHOD", "none"),
        ("ODDJOB_START_METHOD", "SPAWN"),
        ("ODDJOB_MAX_JOBS_PER_WORKER", "0"),
        ("ODDJOB_MAX_JOBS_PER_WORKER", "-3"),
        ("ODDJOB_MAX_JOBS_PER_WORKER", "1.5"),
        ("ODDJOB_MAX_JOBS_PER_WORKER", "true"),
        ("ODDJOB_MAX_JOBS_PER_WORKER", "inf"),
        ("ODDJOB_MAX_JOBS_PER_WORKER", "many"),
    ],
)
def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    monkeypatch.setenv(var, raw)
    for call in (
        config.settings,
        lambda: config.options_for("job"),
        lambda: config.pool_options("x", backend="processes"),
        lambda: oddjob.Pool(support.new_name(), backend="processes"),
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        assert f"{var}={raw!r}: expected " in str(caught.value)


def test_a_variable_for_a_method_the_platform_lacks(
    monkeypatch: pytest.MonkeyPatch, only_spawn: None
) -> None:
    monkeypatch.setenv("ODDJOB_START_METHOD", "fork")
    with pytest.raises(ConfigError) as caught:
        config.settings()
    assert str(caught.value) == (
        "ODDJOB_START_METHOD='fork': expected one of this platform's start methods: 'spawn'"
    )


def test_a_bad_variable_raises_even_if_configure_sets_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config.configure(backend="processes")
    monkeypatch.setenv("ODDJOB_BACKEND", "procs")
    with pytest.raises(ConfigError, match="ODDJOB_BACKEND='procs'"):
        config.settings()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('backend = "thread"\n', "backend='thread': expected 'threads', 'processes' or 'ray'"),
        ("backend = 1\n", "backend=1: expected"),
        ("backend = true\n", "backend=True: expected"),
        ('backend = ["ray"]\n', "backend=['ray']: expected"),
        ("job_timeout = 0\n", "job_timeout=0: expected a number > 0"),
        ("job_timeout = -inf\n", "job_timeout=-inf: expected"),
        ("job_timeout = nan\n", "job_timeout=nan: expected"),
        ('job_timeout = "5"\n', "job_timeout='5': expected"),
        ("job_timeout = 00:00:05\n", "job_timeout=datetime.time(0, 0, 5): expected"),
        ('start_method = "spawned"\n', "start_method='spawned': expected one of this platform"),
        ("start_method = 1\n", "start_method=1: expected"),
        ("max_jobs_per_worker = 0\n", "max_jobs_per_worker=0: expected an int >= 1"),
        ("max_jobs_per_worker = 1.0\n", "max_jobs_per_worker=1.0: expected"),
        ("max_jobs_per_worker = true\n", "max_jobs_per_worker=True: expected"),
        ('address = ""\n', "address='': expected a non-empty str"),
        ("address = 10001\n", "address=10001: expected"),
        ('[extra_pools.cpu]\nbackend = "proc"\n', "extra_pools['cpu'].backend='proc': expected"),
        ("[extra_pools.cpu]\njob_timeout = 0\n", "extra_pools['cpu'].job_timeout=0: expected"),
        (
            "[extra_pools.cpu]\nmax_jobs_per_worker = -1\n",
            "extra_pools['cpu'].max_jobs_per_worker=-1: expected",
        ),
    ],
)
def test_bad_file(config_file: Callable[[str], Path], text: str, shown: str) -> None:
    path = config_file(text)
    with pytest.raises(ConfigError) as caught:
        config.settings()
    message = str(caught.value)
    assert message.startswith(f"ODDJOB_CONFIG file {str(path)!r}: ")
    assert shown in message


# -- which options need which backend --------------------------------------------------------


def test_job_timeout_with_threads_cannot_make_a_pool() -> None:
    name = support.new_name()
    with pytest.raises(ConfigError) as caught:
        oddjob.Pool(name, job_timeout=1)
    assert str(caught.value) == (
        f"pool {name!r} (backend='threads'): {THREADS_MESSAGE} (job_timeout=1.0)"
    )
    with pytest.raises(ConfigError, match=f"pool {name!r}.*{THREADS_MESSAGE}"):
        oddjob.Pool(name, backend="threads", job_timeout=timedelta(seconds=2))
    with pytest.raises(ConfigError, match=THREADS_MESSAGE):
        config.pool_options(name, job_timeout=1)
    with pytest.raises(ConfigError, match=THREADS_MESSAGE):
        oddjob.start_link(name, job_timeout=1)
    assert oddjob.whereis(name) is None


@pytest.mark.parametrize("backend", ["threads", "ray"])
def test_max_jobs_per_worker_without_processes_cannot_make_a_pool(backend: str) -> None:
    name = support.new_name()
    with pytest.raises(ConfigError) as caught:
        oddjob.Pool(name, backend=backend, max_jobs_per_worker=10)
    assert str(caught.value) == (
        f"pool {name!r} (backend={backend!r}): max_jobs_per_worker needs backend='processes': "
        "only a worker process is replaced after a count of jobs (a thread is not, and a "
        "Ray task has no worker of its own; max_jobs_per_worker=10)"
    )


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_address_needs_ray(backend: str) -> None:
    name = support.new_name()
    with pytest.raises(ConfigError) as caught:
        oddjob.Pool(name, backend=backend, address="auto")
    assert str(caught.value) == (
        f"pool {name!r} (backend={backend!r}): address needs backend='ray' (address='auto')"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"backend": "processes", "job_timeout": 1, "max_jobs_per_worker": 3},
        {"backend": "processes", "start_method": "spawn", "job_timeout": 0.5},
        {"backend": "ray", "job_timeout": 1, "address": "auto"},
        {"backend": "ray", "address": None},
        {"backend": "threads", "start_method": "spawn"},  # unused, but no error
        {"backend": "threads", "job_timeout": math.inf},  # inf: no limit, as None
        {"backend": "threads", "job_timeout": None, "max_jobs_per_worker": None},
        {"address": None},
    ],
    ids=repr,
)
def test_suited_options_make_a_pool(options: dict[str, Any]) -> None:
    pool = oddjob.Pool(support.new_name(), **options)  # made, not started
    assert pool.options == PoolOptions.build(**options)


@pytest.mark.skipif(not HAS_EVERY_START_METHOD, reason="needs fork")
def test_a_start_method_with_threads_is_unused_not_an_error() -> None:
    assert oddjob.Pool(support.new_name(), start_method="fork").options.backend == "threads"


def test_the_rules_are_checked_on_the_resolved_options_not_on_one_source() -> None:
    config.configure(job_timeout=5)  # no error: a pool may still say backend="processes"
    config.configure(max_jobs_per_worker=7)
    name = support.new_name()
    with pytest.raises(ConfigError, match=f"pool {name!r}.*{THREADS_MESSAGE}"):
        oddjob.Pool(name)
    options = oddjob.Pool(name, backend="processes").options
    assert (options.job_timeout, options.max_jobs_per_worker) == (5.0, 7)
    config.configure(backend="processes")
    assert oddjob.Pool(name).options.backend == "processes"
    with pytest.raises(ConfigError, match=f"pool {name!r}.*{THREADS_MESSAGE}"):
        oddjob.Pool(name, backend="threads")
    # The pool's own None lifts the rule.
    lifted = oddjob.Pool(name, backend="threads", job_timeout=None, max_jobs_per_worker=None)
    assert lifted.options.backend == "threads"


def test_the_rules_hold_for_each_extra_pool() -> None:
    config.configure(
        job_timeout=5,
        extra_pools={"cpu": {"backend": "processes"}, "remote": {"backend": "ray"}},
    )
    cpu = config.options_for("cpu")
    remote = config.options_for("remote")
    assert cpu is not None and (cpu.backend, cpu.job_timeout) == ("processes", 5.0)
    assert remote is not None and (remote.backend, remote.job_timeout) == ("ray", 5.0)
    assert oddjob.Pool("cpu").options == cpu
    # The default pool takes the top-level options: threads with a job_timeout.
    with pytest.raises(ConfigError, match=f"pool 'job'.*{THREADS_MESSAGE}"):
        config.options_for("job")
    with pytest.raises(ConfigError, match=f"pool 'other'.*{THREADS_MESSAGE}"):
        config.pool_options("other")
    with pytest.raises(ConfigError, match=f"pool 'cpu'.*{THREADS_MESSAGE}"):
        oddjob.Pool("cpu", backend="threads")
    # An extra pool's override may lift the rule, and an address suits only the ray one.
    config.configure(
        extra_pools={
            "light": {"job_timeout": None},
            "remote": {"address": "auto", "job_timeout": None},
        }
    )
    light = config.options_for("light")
    assert light is not None and (light.backend, light.job_timeout) == ("threads", None)
    with pytest.raises(ConfigError, match=r"pool 'remote' \(backend='threads'\): address needs"):
        config.options_for("remote")
    config.configure(extra_pools={"remote": {"backend": "ray", "address": "auto"}})
    assert oddjob.Pool("remote").options.address == "auto"


def test_a_configured_pool_that_breaks_a_rule_does_not_start() -> None:
    ran: list[object] = []
    config.configure(job_timeout=5)
    with pytest.raises(ConfigError, match=f"pool 'job'.*{THREADS_MESSAGE}"):
        oddjob.perform("job", ran.append, 1)
    with pytest.raises(ConfigError, match=f"pool 'job'.*{THREADS_MESSAGE}"):
        oddjob.async_perform("job", ran.append, 2)
    assert oddjob.whereis("job") is None
    assert ran == []


def test_the_rules_across_environment_and_file(
    monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file('backend = "processes"\n[extra_pools.io]\nbackend = "threads"\n')
    monkeypatch.setenv("ODDJOB_JOB_TIMEOUT", "9")
    assert config.pool_options("any").job_timeout == 9.0
    with pytest.raises(ConfigError, match=f"pool 'io'.*{THREADS_MESSAGE}"):
        config.options_for("io")
    monkeypatch.setenv("ODDJOB_BACKEND", "threads")  # the environment beats the file
    with pytest.raises(ConfigError, match=f"pool 'any'.*{THREADS_MESSAGE}"):
        config.pool_options("any")
    config.configure(backend="ray")  # configure() beats the environment
    assert config.pool_options("any").backend == "ray"
    monkeypatch.setenv("ODDJOB_JOB_TIMEOUT", "none")
    assert config.options_for("io") == PoolOptions(backend="threads")


def test_a_failing_call_changes_nothing() -> None:
    config.configure(backend="processes", job_timeout=2, extra_pools={"cpu": {}})
    before = config.settings()
    for options in (
        {"backend": "bogus"},
        {"job_timeout": 1, "start_method": "nope"},
        {"max_jobs_per_worker": 5, "address": ""},
        {"backend": "ray", "extra_pools": {"cpu": {"job_timeout": -1}}},
        {"address": "auto", "no_such_key": 1},
    ):
        with pytest.raises(ConfigError):
            config.configure(**options)
        assert config.settings() == before
    name = support.new_name()
    with pytest.raises(ConfigError):
        oddjob.Pool(name, backend="threads")  # job_timeout=2 from configure()
    assert config.settings() == before
    assert oddjob.whereis(name) is None
