"""Process-wide pool configuration: built-in defaults, configure(), environment, TOML file.

Each setting is resolved key by key; the first source that sets a key wins::

    a pool's own options         Pool("email", pool_size=2), start_link(...)
      > extra pool overrides     configure(extra_pools=...) over the file's [extra_pools.NAME]
      > configure()              successive calls merged, the latest call per key
      > environment              ODDJOB_DEFAULT_POOL, ODDJOB_POOL_SIZE, ODDJOB_MAX_RESTARTS,
                                 ODDJOB_MAX_SECONDS, ODDJOB_EXIT_TIMEOUT, ODDJOB_MAX_QUEUE
      > file                     the TOML file named by ODDJOB_CONFIG (top-level keys)
      > built-in defaults        DEFAULT_POOL, POOL_SIZE, ... below

ODDJOB_DEFAULT_POOL holds a pool name; "false", "none" or an empty value (in any case)
mean no default pool, since a variable cannot hold False. The numeric variables must parse
as the key's type (ints for pool_size and max_restarts, floats for the seconds); set to an
empty value they count as unset. The file's top-level keys are configure()'s; its
``extra_pools`` is an array of names (or [name, {overrides}] pairs) or tables::

    pool_size = 8
    extra_pools = ["email", "sms"]        # or, instead:
    [extra_pools.email]                   # one table of overrides per pool
    pool_size = 2

Extra pools come from configure() and the file, merged by name: a pool named in both gets
the file's overrides with configure()'s laid over them, key by key. (Within configure(),
``extra_pools`` is one key like any other: a later call's list replaces an earlier one.)
An extra pool's own overrides rank above the top-level values of every source, since they
are about that pool alone.

Nothing happens at import. The environment and the file are read by settings() (so when a
configured pool starts lazily, or a pool is made); the parsed file is cached by (path,
mtime_ns, size), so it is read again only when it changes. Every bad value, from any
source, raises ConfigError naming where it came from, the value and what was expected.
"""

from __future__ import annotations

import importlib
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

#: The environment variable of each key (extra_pools has none: use configure() or the file).
ENV_VARS: Final = MappingProxyType(
    {
        "default_pool": "ODDJOB_DEFAULT_POOL",
        "pool_size": "ODDJOB_POOL_SIZE",
        "max_restarts": "ODDJOB_MAX_RESTARTS",
        "max_seconds": "ODDJOB_MAX_SECONDS",
        "exit_timeout": "ODDJOB_EXIT_TIMEOUT",
        "max_queue": "ODDJOB_MAX_QUEUE",
    }
)
#: The environment variable naming the TOML configuration file.
CONFIG_FILE_VAR: Final = "ODDJOB_CONFIG"
#: Values of ODDJOB_DEFAULT_POOL (compared case-insensitively) meaning "no default pool":
#: an environment variable cannot hold Python's False.
NO_DEFAULT_POOL: Final = frozenset({"", "false", "none"})

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
    #: The top-level pool options: what a pool that is not configured starts with.
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
        ConfigError: as settings().
    """
    return _configured_options(settings(), name)


def pool_options(name: str, **own: Any) -> PoolOptions:
    """The options a pool called ``name`` runs with: ``own`` over its configured options.

    Args:
        name: the pool's name.
        **own: the pool's own options (pool_size, max_restarts, max_seconds).

    Returns:
        ``own`` laid over options_for(name), or over the top-level defaults if ``name``
        is not configured.

    Raises:
        ConfigError: an unknown key or a bad value in ``own``, or as settings().
    """
    resolved = settings()
    base = _configured_options(resolved, name) or resolved.defaults
    return PoolOptions.build(base, **own)


# -- resolution -----------------------------------------------------------------------


def resolve_callable(value: Any, key: str) -> Any:
    """``value``, or the object an import string ``"package.module:function"`` names.

    Raises:
        ConfigError: the module cannot be imported, the name is missing, or what it
            names is not callable.
    """
    if not isinstance(value, str):
        return value
    module_name, _, path = value.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in path.split("."):
            found = getattr(found, part)
    except Exception as exc:
        raise ConfigError(
            f"{key}={value!r}: cannot import it ({type(exc).__name__}: {exc}); expected {_CALLABLE}"
        ) from exc
    if not callable(found):
        raise ConfigError(f"{key}={value!r} names a {type(found).__name__}; expected a callable")
    return found


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
    for key in ("pool_size", "max_restarts", "max_seconds", "exit_timeout", "max_queue"):
        var = ENV_VARS[key]
        raw = os.environ.get(var, "")
        if not raw.strip():
            continue  # unset, or set to empty (as for PYTHON* variables): not a setting
        if key == "max_queue" and raw.strip().lower() == "none":
            found[key] = None
            continue
        try:
            parsed: Any = (
                int(raw) if key in ("pool_size", "max_restarts", "max_queue") else float(raw)
            )
        except ValueError:
            parsed = _INVALID
        value = _INVALID if parsed is _INVALID else _normalize(key, parsed)
        if value is _INVALID:
            raise ConfigError(f"{var}={raw!r}: expected {_EXPECTED[key]}")
        found[key] = value
    return found


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
    normalized = _normalize(key, value)
    if normalized is _INVALID:
        raise ConfigError(f"{label}={value!r}: expected {_EXPECTED[key]}")
    return normalized


def _normalize(key: str, value: Any) -> Any:
    """``value`` in its stored form, or _INVALID. bool is rejected where a number is
    expected: True as a pool size is a mistake, not 1."""
    if key == "default_pool":
        ok = value is False or (type(value) is str and value != "")
    elif key in ("restart_on_error", "copy_context"):
        ok = type(value) is bool
    elif key == "max_queue":
        ok = value is None or (type(value) is int and value >= 1)
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
    else:  # max_seconds, exit_timeout
        value = _seconds(value)
        ok = value is not _INVALID and value > 0  # False for NaN too
    return value if ok else _INVALID


def _seconds(value: Any) -> Any:
    """Seconds (an int or float, not a bool) or a timedelta, as a float; else _INVALID.
    An int beyond float range is inf: forever, where a key allows it."""
    if type(value) in (int, float):
        try:
            return float(value)
        except OverflowError:
            return float("inf")
    if isinstance(value, timedelta):
        return value.total_seconds()
    return _INVALID
