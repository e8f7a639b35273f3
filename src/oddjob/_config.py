"""Process-wide pool configuration: built-in defaults, configure(), environment, TOML file.

Each setting is resolved key by key; the first source that sets a key wins::

    a pool's own options         Pool("email", pool_size=2), start_link(...)
      > extra pool overrides     configure(extra_pools=...) over the file's [extra_pools.NAME]
      > configure()              successive calls merged, the latest call per key
      > environment              ODDJOB_DEFAULT_POOL, ODDJOB_POOL_SIZE, ODDJOB_MAX_RESTARTS,
                                 ODDJOB_MAX_SECONDS, ODDJOB_EXIT_TIMEOUT, ODDJOB_MAX_QUEUE,
                                 ODDJOB_RATE_LIMIT, ODDJOB_RETRY, ODDJOB_MAX_QUEUE_TIME,
                                 ODDJOB_BACKEND, ODDJOB_JOB_TIMEOUT, ODDJOB_START_METHOD,
                                 ODDJOB_MAX_JOBS_PER_WORKER
      > file                     the TOML file named by ODDJOB_CONFIG (top-level keys)
      > built-in defaults        DEFAULT_POOL, POOL_SIZE, ... below

ODDJOB_DEFAULT_POOL holds a pool name; "false", "none" or an empty value (in any case)
mean no default pool, since a variable cannot hold False. The numeric variables must parse
as the key's type (ints for pool_size, max_restarts, max_queue, max_jobs_per_worker and
retry's attempts, floats for the seconds); set to an empty value they count as unset.
ODDJOB_MAX_QUEUE, ODDJOB_RATE_LIMIT ("200/1.0": count/per), ODDJOB_RETRY (attempts, an
int), ODDJOB_MAX_QUEUE_TIME and ODDJOB_JOB_TIMEOUT (seconds) and ODDJOB_MAX_JOBS_PER_WORKER
may also be "none" (in any case) for None. ODDJOB_BACKEND and ODDJOB_START_METHOD hold the
option's value as configure() takes it ("processes", "forkserver"). The file's
top-level keys are configure()'s (those TOML can spell: no None, no callables); its
``extra_pools`` is an array of names (or [name, {overrides}] pairs) or tables, and
``retry`` an int (attempts) or a table of Retry's fields, ``on`` naming
exception classes by import string ("package.module:Name") or builtin name::

    pool_size = 8
    rate_limit = [200, 1.0]               # 200 job starts per second at most
    extra_pools = ["email", "sms"]        # or, instead:
    [extra_pools.email]                   # one table of overrides per pool
    pool_size = 2
    [extra_pools.email.retry]             # a Retry's fields
    attempts = 5
    on = ["ConnectionError", "smtplib:SMTPServerDisconnected"]

Extra pools come from configure() and the file, merged by name: a pool named in both gets
the file's overrides with configure()'s laid over them, key by key. (Within configure(),
``extra_pools`` is one key like any other: a later call's list replaces an earlier one.)
An extra pool's own overrides rank above the top-level values of every source, since they
are about that pool alone.

Some options need a backend: job_timeout one that can stop a running job ("processes" or
"ray": a thread cannot be stopped), max_jobs_per_worker worker processes (not "threads"
nor "ray": only a worker process is replaced after a count of jobs), address the "ray"
backend. These rules are checked on the options one pool resolves to, every source laid
over the others (pool_options(), options_for()), never on one source alone:
configure(job_timeout=5) with the "threads" default is fine while every pool that takes
it also says backend="processes". A start_method with the "threads" backend is no error:
it is simply unused.

Nothing happens at import. The environment and the file are read by settings() (so when a
configured pool starts lazily, or a pool is made); the parsed file is cached by (path,
mtime_ns, size), so it is read again only when it changes. Every bad value, from any
source, raises ConfigError naming where it came from, the value and what was expected.
"""

from __future__ import annotations

import builtins
import importlib
import math
import os
import re
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final, Literal

from ._errors import ConfigError
from ._retry import Retry

#: Name of the pool started lazily when first named; False means none.
DEFAULT_POOL = "job"
#: Workers per pool unless configured otherwise (OddJob's default).
POOL_SIZE = 5
#: Crashes tolerated within MAX_SECONDS before the whole worker set is replaced.
MAX_RESTARTS = 3
#: The window, in seconds, over which crashes are counted against MAX_RESTARTS.
MAX_SECONDS = 5.0
#: How long interpreter exit waits for a pool to drain its queue before giving up.
EXIT_TIMEOUT = 10.0
#: How a pool's workers run: threads of this process, the cheapest (no pickling), but a
#: running job cannot be stopped and Python code shares the GIL where there is one.
BACKEND: Final = "threads"
#: How worker processes start: spawn is the slowest (a fresh interpreter imports the job's
#: module) but the only one every platform has and safe in a process with threads.
START_METHOD: Final = "spawn"
#: Every backend: "processes" runs each worker as a child process, "ray" as Ray tasks.
BACKENDS: Final = ("threads", "processes", "ray")
#: Every start method a process pool takes (multiprocessing's names); a platform has some.
START_METHODS: Final = ("spawn", "forkserver", "fork")

#: The environment variable of each key (extra_pools, the callables, initargs, on_full,
#: block_timeout, copy_context, restart_on_error and address have none: use configure() or
#: the file).
ENV_VARS: Final = MappingProxyType(
    {
        "default_pool": "ODDJOB_DEFAULT_POOL",
        "pool_size": "ODDJOB_POOL_SIZE",
        "max_restarts": "ODDJOB_MAX_RESTARTS",
        "max_seconds": "ODDJOB_MAX_SECONDS",
        "exit_timeout": "ODDJOB_EXIT_TIMEOUT",
        "max_queue": "ODDJOB_MAX_QUEUE",
        "rate_limit": "ODDJOB_RATE_LIMIT",
        "retry": "ODDJOB_RETRY",
        "max_queue_time": "ODDJOB_MAX_QUEUE_TIME",
        "backend": "ODDJOB_BACKEND",
        "job_timeout": "ODDJOB_JOB_TIMEOUT",
        "start_method": "ODDJOB_START_METHOD",
        "max_jobs_per_worker": "ODDJOB_MAX_JOBS_PER_WORKER",
    }
)
#: The environment variable naming the TOML configuration file.
CONFIG_FILE_VAR: Final = "ODDJOB_CONFIG"
#: Values of ODDJOB_DEFAULT_POOL (compared case-insensitively) meaning "no default pool":
#: an environment variable cannot hold Python's False.
NO_DEFAULT_POOL: Final = frozenset({"", "false", "none"})
#: The largest count of a rate_limit: the core keeps a ring of that many start times.
MAX_RATE_COUNT: Final = 1_000_000

_POOL_KEYS = (
    "pool_size",
    "max_restarts",
    "max_seconds",
    "restart_on_error",
    "initializer",
    "initargs",
    "finalizer",
    "max_queue",
    "on_full",
    "block_timeout",
    "copy_context",
    "rate_limit",
    "retry",
    "max_queue_time",
    "backend",
    "job_timeout",
    "start_method",
    "max_jobs_per_worker",
    "address",
)
_KEYS = ("default_pool", *_POOL_KEYS, "extra_pools", "exit_timeout")
_CALLABLE = "a callable, an import string 'package.module:function', or None"
_EXPECTED = {
    "default_pool": "a non-empty str, or False for no default pool",
    "pool_size": "an int >= 1",
    "max_restarts": "an int >= 0",
    "max_seconds": "a number > 0 (seconds)",
    "exit_timeout": "a number > 0 (seconds; one beyond what the platform can wait: forever)",
    "extra_pools": "pool names, (name, overrides) pairs, or a dict name -> overrides",
    "restart_on_error": "True or False",
    "initializer": _CALLABLE,
    "initargs": "a tuple (or list) of arguments",
    "finalizer": _CALLABLE,
    "max_queue": "an int >= 1, or None for no limit",
    "on_full": "'block' or 'raise'",
    "block_timeout": "a number >= 0 (seconds), a timedelta, or None for no limit",
    "copy_context": "True or False",
    "rate_limit": (
        f"None, or a (count, per) pair: count an int 1..{MAX_RATE_COUNT:_}, per a number "
        "> 0 and finite (seconds) or a timedelta"
    ),
    "retry": (
        "None, a Retry, an int >= 1 (attempts), or a dict of Retry's fields (attempts, on, "
        "backoff, max_backoff, jitter)"
    ),
    "max_queue_time": "a number > 0 (seconds; inf: no limit), a timedelta, or None for no limit",
    "backend": "'threads', 'processes' or 'ray'",
    "job_timeout": "a number > 0 (seconds; inf: no limit), a timedelta, or None for no limit",
    # start_method: what this platform has, see _expected()
    "max_jobs_per_worker": "an int >= 1, or None for no limit",
    "address": "a non-empty str (as ray.init takes it), or None to start a local Ray",
}
# What the variables of the options that take more than a number hold.
_ENV_EXPECTED: Final = {
    "rate_limit": (
        f"'count/per' (count an int 1..{MAX_RATE_COUNT:_}, per seconds > 0 and finite, "
        "e.g. '200/1.0'), or 'none'"
    ),
    "retry": "an int >= 1 (attempts; Retry's other fields keep their defaults), or 'none'",
}

_INVALID: Final = object()
# "package.module:function" (or ":Class.method"): how the file names a callable.
_IMPORT_STRING: Final = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """The options one pool runs with."""

    pool_size: int = POOL_SIZE
    max_restarts: int = MAX_RESTARTS
    max_seconds: float = MAX_SECONDS
    #: A job that raises crashes its worker, which a fresh thread replaces (OddJob's way).
    restart_on_error: bool = False
    #: Called in each worker before its first job (a callable or an import string).
    initializer: Callable[..., object] | str | None = None
    #: The initializer's arguments.
    initargs: tuple[Any, ...] = ()
    #: Called in each worker as it leaves, if its initializer succeeded.
    finalizer: Callable[[], object] | str | None = None
    #: The most jobs the pool holds queued (running jobs do not count); None: no limit.
    max_queue: int | None = None
    #: What a submit to a full queue does: "block" until it fits, or "raise" QueueFullError.
    on_full: Literal["block", "raise"] = "block"
    #: Seconds a blocked submit waits for room before QueueFullError; None: no limit.
    block_timeout: float | None = None
    #: Each job runs in a copy of its submitter's contextvars context.
    copy_context: bool = True
    #: (count, per): at most count job starts in any window of per seconds; None: no limit.
    rate_limit: tuple[int, float] | None = None
    #: How a job that raises runs again; None: it fails at once.
    retry: Retry | None = None
    #: Seconds a job may wait in the queue; one that waited longer is not run (it
    #: expires, JobExpiredError). None: no limit.
    max_queue_time: float | None = None
    #: How the workers run: "threads" (of this process), "processes" (a child process
    #: each) or "ray" (Ray tasks).
    backend: Literal["threads", "processes", "ray"] = BACKEND
    #: Seconds a job may run; one that runs longer has its worker killed (JobTimeoutError).
    #: None: no limit. Not with backend "threads".
    job_timeout: float | None = None
    #: How worker processes start ("spawn", "forkserver" or "fork"); unused by the other
    #: backends.
    start_method: Literal["spawn", "forkserver", "fork"] = START_METHOD
    #: Jobs a worker process runs before it is replaced; None: no limit. Not with backend
    #: "threads".
    max_jobs_per_worker: int | None = None
    #: The Ray cluster, as ray.init takes it; None starts a local Ray. Backend "ray" only.
    address: str | None = None

    @classmethod
    def build(cls, base: PoolOptions | None = None, **options: Any) -> PoolOptions:
        """Validate ``options`` and lay them over ``base`` (the built-in defaults if None).

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        return replace(base or cls(), **_pool_options(options, ""))


@dataclass(frozen=True, slots=True)
class Settings:
    """The process-wide settings, every source resolved (see the module docstring)."""

    #: Name of the pool started lazily when first named, or False for none.
    default_pool: str | Literal[False]
    #: The top-level pool options: what a pool that is not configured starts with. The
    #: rules on which options need which backend are not checked here but per pool, by
    #: pool_options(), once the pool's own options are laid over.
    defaults: PoolOptions
    #: Every extra pool, its overrides laid over ``defaults``.
    extra_pools: Mapping[str, PoolOptions] = field(hash=False)
    #: Seconds interpreter exit waits for pools to drain.
    exit_timeout: float


# Keys set by configure(), validated. Replaced wholesale (never mutated) so that a reader
# needs no lock; the lock only orders concurrent configure() calls.
_configured: dict[str, Any] = {}
_lock = threading.Lock()
# ((absolute path, mtime_ns, size), validated contents) of the last file read.
_file_cache: tuple[tuple[str, int, int], dict[str, Any]] | None = None


def configure(**options: Any) -> None:
    """Set process-wide defaults; each call sets the keys it names and keeps the others.

    Pools already running keep their settings; configured pools start lazily, the first
    time a call names them. Every key is validated before any is stored.

    Args:
        default_pool: name of the pool started when first named, or False for none.
        pool_size: workers per pool, an int >= 1 (default 5).
        max_restarts: crashes tolerated within max_seconds, an int >= 0 (default 3).
        max_seconds: the crash-counting window, a number > 0 or a timedelta (default 5).
        extra_pools: further pools started when first named: an iterable of names or
            ``(name, overrides)`` pairs, or a dict ``name -> overrides``; overrides are
            dicts of the pool options below. Replaces the list of any
            earlier configure() call; merged by name with the file's list.
        exit_timeout: seconds interpreter exit waits for pools to drain, a number > 0
            or a timedelta (default 10); one beyond what the platform can wait means
            until they have drained (Ctrl-C still ends the wait).
        restart_on_error: True to have a job that raises crash its worker, which a
            fresh thread replaces (OddJob's behaviour); default False, the worker lives on.
        initializer: called in each worker thread, with ``*initargs``, before its first
            job: a callable or an import string ``"package.module:function"``.
        initargs: the initializer's arguments, a tuple.
        finalizer: called in each worker thread as it leaves (the pool stopped, the
            worker retired or crashed), if its initializer succeeded; a callable or an
            import string. Its exceptions are logged.
        max_queue: the most jobs a pool holds queued, an int >= 1, or None (the
            default) for no limit.
        on_full: what a submit to a full queue does: ``"block"`` (the default) waits
            until the whole submission fits; ``"raise"`` raises QueueFullError.
        block_timeout: seconds (or a timedelta) a blocked submit waits before
            QueueFullError; None (the default) waits as long as it takes.
        copy_context: run each job in a copy of its submitter's contextvars context
            (default True); False runs jobs in the worker's own context.
        rate_limit: ``(count, per)``: at most count job starts in any window of per
            seconds (a number or a timedelta), for API quotas; None (the default): no limit.
        retry: how a job that raises runs again: a Retry, an int (attempts, Retry's
            other fields at their defaults) or a dict of Retry's fields, ``on`` there also
            naming exception classes by import string; None (the default): never.
        max_queue_time: seconds (or a timedelta) a job may wait in the queue; one that
            waited longer is not run (JobExpiredError). None (the default): no limit.
        backend: how workers run: ``"threads"`` (the default), ``"processes"`` (a child
            process each) or ``"ray"``.
        job_timeout: seconds (or a timedelta) a job may run before its worker is killed
            (JobTimeoutError); None (the default) or inf: no limit. Needs backend
            "processes" or "ray" (a thread cannot be stopped).
        start_method: how worker processes start: ``"spawn"`` (the default),
            ``"forkserver"`` or ``"fork"``, one this platform has; unused by the other
            backends, so no error with "threads".
        max_jobs_per_worker: jobs a worker process runs before it is replaced, an int
            >= 1, or None (the default) for no limit. Backend "processes" only.
        address: the Ray cluster, as ``ray.init`` takes it; None (the default) starts a
            local Ray. Backend "ray" only.

    The options that need a backend are checked on each pool's resolved options (when
    the pool is made), not here: a later call, the pool's own options or an extra pool's
    overrides may still set the backend.

    Raises:
        ConfigError: an unknown key or a bad value; nothing is applied then.
    """
    global _configured
    values = _validate(options, "configure(): ")
    if not values:
        return
    with _lock:
        _configured = {**_configured, **values}


def reset() -> None:
    """Forget every configure() call and the cached file (for tests)."""
    global _configured, _file_cache
    with _lock:
        _configured = {}
        _file_cache = None


def settings() -> Settings:
    """The settings now in force, resolved from every source.

    Returns:
        The default pool's name, the top-level pool options, the extra pools and the
        exit timeout.

    Raises:
        ConfigError: an environment variable or the configuration file holds a bad
            value, or the file cannot be read or parsed (even if configure() overrides
            that key: a bad value is never silently ignored).
    """
    configured = _configured  # one snapshot: configure() replaces, never mutates
    from_file = _from_file()
    layers = (configured, _from_env(), from_file)  # highest precedence first

    def pick(key: str, default: Any) -> Any:
        for layer in layers:
            if key in layer:
                return layer[key]
        return default

    defaults = PoolOptions(**{f.name: pick(f.name, f.default) for f in fields(PoolOptions)})
    file_pools: dict[str, dict[str, Any]] = from_file.get("extra_pools", {})
    own_pools: dict[str, dict[str, Any]] = configured.get("extra_pools", {})
    extra_pools = {
        # A pool in both lists: configure()'s overrides over the file's, key by key.
        name: replace(defaults, **{**file_pools.get(name, {}), **own_pools.get(name, {})})
        for name in {**file_pools, **own_pools}  # the file's order, then configure()'s
    }
    return Settings(
        default_pool=pick("default_pool", DEFAULT_POOL),
        defaults=defaults,
        extra_pools=MappingProxyType(extra_pools),
        exit_timeout=pick("exit_timeout", EXIT_TIMEOUT),
    )


def options_for(name: str) -> PoolOptions | None:
    """The options of a configured pool: the default pool or an extra pool.

    Args:
        name: a pool name.

    Returns:
        The pool's options, or None if ``name`` is not configured (such a pool is not
        started lazily).

    Raises:
        ConfigError: as settings(), or the options do not suit the pool's backend (see
            pool_options()).
    """
    found = _configured_options(settings(), name)
    return None if found is None else _suited(found, name)


def pool_options(name: str, **own: Any) -> PoolOptions:
    """The options a pool called ``name`` runs with: ``own`` over its configured options.

    Args:
        name: the pool's name.
        **own: the pool's own options (any pool option: pool_size, backend, ...).

    Returns:
        ``own`` laid over options_for(name), or over the top-level defaults if ``name``
        is not configured.

    Raises:
        ConfigError: an unknown key or a bad value in ``own``, or as settings(); or
            the resolved options do not suit their backend: job_timeout with "threads",
            max_jobs_per_worker with another backend than "processes", address with
            another than "ray" (the message names the pool).
    """
    resolved = settings()
    base = _configured_options(resolved, name) or resolved.defaults
    return _suited(PoolOptions.build(base, **own), name)


# -- resolution -----------------------------------------------------------------------


def resolve_callable(value: Any, key: str) -> Any:
    """``value``, or the object an import string ``"package.module:function"`` names.

    Raises:
        ConfigError: the module cannot be imported, the name is missing, or what it
            names is not callable.
    """
    if not isinstance(value, str):
        return value
    try:
        found = _import(value)
    except Exception as exc:
        raise ConfigError(
            f"{key}={value!r}: cannot import it ({type(exc).__name__}: {exc}); expected {_CALLABLE}"
        ) from exc
    if not callable(found):
        raise ConfigError(f"{key}={value!r} names a {type(found).__name__}; expected a callable")
    return found


def _import(value: str) -> Any:
    """The object an import string names; raises what importing or getattr raises."""
    module_name, _, path = value.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in path.split("."):
        found = getattr(found, part)
    return found


def _suited(options: PoolOptions, name: str) -> PoolOptions:
    """``options``, if its backend can honour the others (the rules in the module
    docstring); checked only here, on one pool's options with every source resolved."""
    backend = options.backend
    problem = None
    if backend == "threads" and options.job_timeout is not None:
        problem = (
            "job_timeout needs backend='processes' or 'ray': a thread cannot be stopped "
            f"(job_timeout={options.job_timeout!r})"
        )
    elif backend != "processes" and options.max_jobs_per_worker is not None:
        problem = (
            "max_jobs_per_worker needs backend='processes': only a worker process is "
            "replaced after a count of jobs (a thread is not, and a Ray task has no worker "
            f"of its own; max_jobs_per_worker={options.max_jobs_per_worker!r})"
        )
    elif backend != "ray" and options.address is not None:
        problem = f"address needs backend='ray' (address={options.address!r})"
    if problem is not None:
        raise ConfigError(f"pool {name!r} (backend={backend!r}): {problem}")
    return options


def _configured_options(resolved: Settings, name: str) -> PoolOptions | None:
    found = resolved.extra_pools.get(name)
    if found is None and resolved.default_pool is not False and name == resolved.default_pool:
        found = resolved.defaults
    return found


def _from_env() -> dict[str, Any]:
    """The keys set by environment variables, validated (read afresh each time: cheap)."""
    found: dict[str, Any] = {}
    raw = os.environ.get(ENV_VARS["default_pool"])
    if raw is not None:
        name = raw.strip()
        found["default_pool"] = False if name.lower() in NO_DEFAULT_POOL else name
    for key in ENV_VARS:
        if key == "default_pool":
            continue
        var = ENV_VARS[key]
        raw = os.environ.get(var, "")
        text = raw.strip()
        if not text:
            continue  # unset, or set to empty (as for PYTHON* variables): not a setting
        if key in _ENV_NONE and text.lower() == "none":
            found[key] = None  # a variable cannot hold Python's None
            continue
        parsed = _parse_env(key, text)
        try:
            value = _INVALID if parsed is _INVALID else _normalize(key, parsed)
        except ConfigError as exc:  # a Retry field: its message says which and why
            raise ConfigError(f"{var}={raw!r}: {exc}") from exc
        if value is _INVALID:
            raise ConfigError(f"{var}={raw!r}: expected {_ENV_EXPECTED.get(key) or _expected(key)}")
        found[key] = value
    return found


# The keys whose variable may say "none"; the others have no None to say.
_ENV_NONE: Final = frozenset(
    {"max_queue", "rate_limit", "retry", "max_queue_time", "job_timeout", "max_jobs_per_worker"}
)


def _parse_env(key: str, text: str) -> Any:
    """A variable's text as the value configure() would take for ``key``, or _INVALID."""
    try:
        if key in ("backend", "start_method"):
            return text
        if key in ("pool_size", "max_restarts", "max_queue", "retry", "max_jobs_per_worker"):
            return int(text)  # retry: the number of attempts
        if key == "rate_limit":
            count, slash, per = text.partition("/")
            return (int(count), float(per)) if slash else _INVALID
        return float(text)
    except ValueError:
        return _INVALID


def _from_file() -> dict[str, Any]:
    """The keys set by the ODDJOB_CONFIG file, validated; {} if the variable is unset."""
    global _file_cache
    raw = os.environ.get(CONFIG_FILE_VAR, "")
    if not raw.strip():
        return {}
    path = os.path.abspath(os.path.expanduser(raw))
    source = f"{CONFIG_FILE_VAR} file {path!r}"
    try:
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
        cached = _file_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    values = _validate(data, f"{source}: ")
    # Only a valid file is cached: a broken one keeps raising until it is fixed.
    _file_cache = (key, values)
    return values


# -- validation -----------------------------------------------------------------------


def _validate(options: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Validate the top-level keys of one source; ``prefix`` names the source in errors."""
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in _KEYS:
            raise ConfigError(
                f"{prefix}unknown key {key!r} (value {value!r}); expected one of {', '.join(_KEYS)}"
            )
        if key == "extra_pools":
            values[key] = _extra_pools(value, f"{prefix}extra_pools")
        else:
            values[key] = _checked(key, value, f"{prefix}{key}")
    return values


def _extra_pools(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """Normalize every accepted form of extra_pools to {name: validated overrides}."""
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, Mapping):
        pairs.extend(value.items())
    elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
        # A str is iterable too, but "email" meaning pools "e", "m", ... is never intended.
        for item in value:
            if type(item) is str:
                pairs.append((item, {}))
            elif isinstance(item, tuple | list) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise ConfigError(
                    f"{where}: item {item!r}: expected a pool name or a (name, overrides) pair"
                )
    else:
        raise ConfigError(f"{where}={value!r}: expected {_EXPECTED['extra_pools']}")
    pools: dict[str, dict[str, Any]] = {}
    for name, overrides in pairs:
        if type(name) is not str or not name:
            raise ConfigError(f"{where}: pool name {name!r}: expected a non-empty str")
        if name in pools:
            raise ConfigError(f"{where}: pool {name!r} is listed twice; expected each name once")
        if not isinstance(overrides, Mapping):
            raise ConfigError(
                f"{where}[{name!r}]={overrides!r}: expected a dict of pool options "
                f"({', '.join(_POOL_KEYS)})"
            )
        pools[name] = _pool_options(overrides, f"{where}[{name!r}].")
    return pools


def _pool_options(options: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Validate pool options (a pool's own, or an extra pool's overrides)."""
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in _POOL_KEYS:
            raise ConfigError(
                f"{prefix}unknown pool option {key!r} (value {value!r}); "
                f"expected one of {', '.join(_POOL_KEYS)}"
            )
        values[key] = _checked(key, value, f"{prefix}{key}")
    return values


def _checked(key: str, value: Any, label: str) -> Any:
    try:
        normalized = _normalize(key, value)
    except ConfigError as exc:  # a Retry field: its message says which and why
        raise ConfigError(f"{label}={value!r}: {exc}") from exc
    if normalized is _INVALID:
        raise ConfigError(f"{label}={value!r}: expected {_expected(key)}")
    return normalized


def _expected(key: str) -> str:
    """What ``key`` takes; for start_method, the start methods this platform has."""
    if key == "start_method":
        have = ", ".join(repr(method) for method in _start_methods())
        return f"one of this platform's start methods: {have}"
    return _EXPECTED[key]


def _start_methods() -> list[str]:
    """START_METHODS that this platform has (asked each time: a test may pretend)."""
    import multiprocessing  # here: importing oddjob should not import it

    have = multiprocessing.get_all_start_methods()
    return [method for method in START_METHODS if method in have]


def _normalize(key: str, value: Any) -> Any:
    """``value`` in its stored form, or _INVALID. bool is rejected where a number is
    expected: True as a pool size is a mistake, not 1.

    Raises:
        ConfigError: retry only, a bad Retry field (the message names it).
    """
    if key == "default_pool":
        ok = value is False or (type(value) is str and value != "")
    elif key in ("restart_on_error", "copy_context"):
        ok = type(value) is bool
    elif key in ("max_queue", "max_jobs_per_worker"):
        ok = value is None or (type(value) is int and value >= 1)
    elif key == "backend":
        ok = type(value) is str and value in BACKENDS
    elif key == "start_method":
        ok = type(value) is str and value in _start_methods()
    elif key == "address":
        ok = value is None or (type(value) is str and value != "")
    elif key == "on_full":
        ok = type(value) is str and value in ("block", "raise")
    elif key == "block_timeout":
        if value is None:
            return None
        value = _seconds(value)
        ok = value is not _INVALID and value >= 0  # False for NaN too
    elif key in ("initializer", "finalizer"):
        ok = value is None or (
            _IMPORT_STRING.fullmatch(value) is not None if type(value) is str else callable(value)
        )
    elif key == "initargs":
        if type(value) not in (tuple, list):
            return _INVALID
        value = tuple(value)
        ok = True
    elif key == "pool_size":
        ok = type(value) is int and value >= 1
    elif key == "max_restarts":
        ok = type(value) is int and value >= 0
    elif key == "rate_limit":
        if value is None:
            return None
        if not (type(value) is tuple or type(value) is list) or len(value) != 2:
            return _INVALID
        count, per = value
        per = _seconds(per)
        # A finite window: a rate of count per forever is no rate the core can keep.
        ok = type(count) is int and 1 <= count <= MAX_RATE_COUNT
        ok = ok and per is not _INVALID and 0 < per < math.inf  # False for NaN too
        value = (count, per)
    elif key == "retry":
        return _retry(value)
    elif key == "max_queue_time":
        if value is None:
            return None
        value = _seconds(value)
        ok = value is not _INVALID and value > 0  # False for NaN; inf: no limit
    elif key == "job_timeout":
        if value is None:
            return None
        value = _seconds(value)
        if value == math.inf:
            return None  # no limit, as None: only None says "no timeout" to the backends
        ok = value is not _INVALID and value > 0  # False for NaN too
    else:  # max_seconds, exit_timeout
        value = _seconds(value)
        ok = value is not _INVALID and value > 0  # False for NaN too
    return value if ok else _INVALID


def _retry(value: Any) -> Any:
    """retry in its stored form, a Retry or None; _INVALID if no accepted form.

    Raises:
        ConfigError: a Retry field is bad, or ``on`` names nothing importable.
    """
    if value is None or issubclass(type(value), Retry):
        return value
    if type(value) is int:
        return Retry(attempts=value)  # Retry checks it is >= 1
    if not isinstance(value, Mapping):
        return _INVALID
    names = [f.name for f in fields(Retry)]
    policy: dict[str, Any] = {}
    for name, field_value in value.items():
        # type() first: "in" would compare with an __eq__ of the key's own.
        if type(name) is not str or name not in names:
            raise ConfigError(f"unknown Retry field {name!r}; expected one of {', '.join(names)}")
        policy[name] = field_value
    if "on" in policy:
        policy["on"] = _exception_classes(policy["on"])
    return Retry(**policy)


_EXCEPTION_NAME: Final = (
    "an Exception subclass, its import string 'package.module:Name', a builtin exception's "
    "name such as 'ConnectionError', or a list of those"
)


def _exception_classes(value: Any) -> Any:
    """A Retry's ``on`` with each import string or builtin name replaced by its class;
    Retry then checks that what is left is a tuple of Exception subclasses."""
    if type(value) is str:
        return _exception_class(value)
    if type(value) is tuple or type(value) is list:
        return tuple(_exception_class(item) if type(item) is str else item for item in value)
    return value


def _exception_class(name: str) -> Any:
    if name.isidentifier():  # a bare name: a builtin's, as in an except clause
        found = getattr(builtins, name, _INVALID)
        if found is _INVALID:
            raise ConfigError(
                f"Retry(on={name!r}): no builtin has that name; expected {_EXCEPTION_NAME}"
            )
        return found
    if _IMPORT_STRING.fullmatch(name) is None:
        raise ConfigError(f"Retry(on={name!r}): expected {_EXCEPTION_NAME}")
    try:
        return _import(name)
    except Exception as exc:
        raise ConfigError(
            f"Retry(on={name!r}): cannot import it ({type(exc).__name__}: {exc}); "
            f"expected {_EXCEPTION_NAME}"
        ) from exc


def _seconds(value: Any) -> Any:
    """Seconds (an int or float, not a bool) or a timedelta, as a float; else _INVALID.
    An int beyond float range is inf: forever, where a key allows it."""
    # "is", not "in (int, float)": a comparison could call an __eq__ of the value's type.
    if type(value) is int or type(value) is float:
        try:
            return float(value)
        except OverflowError:
            return float("inf")
    if isinstance(value, timedelta):
        return value.total_seconds()
    return _INVALID
