"""Configuration: configure(), environment variables, the TOML file, and their precedence."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import oddjob
from oddjob import _config as config
from oddjob._config import PoolOptions
from oddjob._errors import ConfigError

ENV_VARS = dict(config.ENV_VARS)
POOL_KEYS = ("pool_size", "max_restarts", "max_seconds")  # the numeric ones; v2 options below
SCALAR_KEYS = ("default_pool", *POOL_KEYS, "exit_timeout")
BUILTIN = {
    "default_pool": config.DEFAULT_POOL,
    "pool_size": config.POOL_SIZE,
    "max_restarts": config.MAX_RESTARTS,
    "max_seconds": config.MAX_SECONDS,
    "exit_timeout": config.EXIT_TIMEOUT,
}
# A distinct value of every key for every source, so a result tells which source won.
VALUES: dict[str, dict[str, Any]] = {
    "configure": {
        "default_pool": "from-configure",
        "pool_size": 2,
        "max_restarts": 0,
        "max_seconds": 1.5,
        "exit_timeout": 2.5,
    },
    "env": {
        "default_pool": "from-env",
        "pool_size": 3,
        "max_restarts": 1,
        "max_seconds": 2.5,
        "exit_timeout": 3.5,
    },
    "file": {
        "default_pool": "from-file",
        "pool_size": 4,
        "max_restarts": 2,
        "max_seconds": 3.5,
        "exit_timeout": 4.5,
    },
}
SOURCES = ("configure", "env", "file")  # highest precedence first


# Each test starts with no configure() call, no oddjob variable and no file.
pytestmark = pytest.mark.usefixtures("clean_config")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def resolved(key: str) -> Any:
    s = config.settings()
    if key in POOL_KEYS:
        return getattr(s.defaults, key)
    return getattr(s, key)


# -- built-in defaults --------------------------------------------------------------------


def test_builtin_defaults() -> None:
    s = config.settings()
    assert s == config.Settings(
        default_pool="job",
        defaults=PoolOptions(pool_size=5, max_restarts=3, max_seconds=5.0),
        extra_pools={},
        exit_timeout=10.0,
    )
    assert config.options_for("job") == PoolOptions()
    assert config.options_for("other") is None
    assert config.pool_options("other") == PoolOptions()


def test_settings_are_frozen() -> None:
    s = config.settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.exit_timeout = 1.0  # type: ignore[misc]
    config.configure(extra_pools=["email"])
    with pytest.raises(TypeError):
        config.settings().extra_pools["x"] = PoolOptions()  # type: ignore[index]
    hash(config.settings())


# -- configure() ----------------------------------------------------------------------------


def test_configure_sets_every_key() -> None:
    config.configure(
        default_pool="main",
        pool_size=7,
        max_restarts=0,
        max_seconds=2,
        exit_timeout=1,
        extra_pools=["email"],
    )
    s = config.settings()
    assert s.default_pool == "main"
    assert s.defaults == PoolOptions(pool_size=7, max_restarts=0, max_seconds=2.0)
    assert type(s.defaults.max_seconds) is float
    assert s.exit_timeout == 1.0 and type(s.exit_timeout) is float
    assert dict(s.extra_pools) == {"email": s.defaults}
    assert config.options_for("main") == s.defaults
    assert config.options_for("job") is None  # no longer the default pool


def test_successive_configure_calls_merge() -> None:
    config.configure(pool_size=7, max_restarts=1)
    config.configure(max_restarts=2)
    config.configure()  # changes nothing
    assert config.settings().defaults == PoolOptions(pool_size=7, max_restarts=2)


def test_configure_no_default_pool() -> None:
    config.configure(default_pool=False)
    assert config.settings().default_pool is False
    assert config.options_for("job") is None


def test_configure_accepts_timedelta_for_seconds() -> None:
    config.configure(max_seconds=timedelta(milliseconds=1500), exit_timeout=timedelta(minutes=1))
    s = config.settings()
    assert s.defaults.max_seconds == 1.5
    assert s.exit_timeout == 60.0


@pytest.mark.parametrize(
    "extra_pools",
    [
        pytest.param(["email", ("sms", {"pool_size": 2})], id="names-and-tuple-pairs"),
        pytest.param([["email", {}], ["sms", {"pool_size": 2}]], id="list-pairs"),
        pytest.param({"email": {}, "sms": {"pool_size": 2}}, id="dict"),
        # A factory: a generator would be used up by the first of the two core runs.
        pytest.param(lambda: (n for n in ["email", ("sms", {"pool_size": 2})]), id="generator"),
    ],
)
def test_configure_extra_pools_forms(extra_pools: Any) -> None:
    if callable(extra_pools):
        extra_pools = extra_pools()
    config.configure(pool_size=7, extra_pools=extra_pools)
    assert dict(config.settings().extra_pools) == {
        "email": PoolOptions(pool_size=7),
        "sms": PoolOptions(pool_size=2),
    }
    assert config.options_for("email") == PoolOptions(pool_size=7)
    assert config.options_for("sms") == PoolOptions(pool_size=2)
    assert config.options_for("job") == PoolOptions(pool_size=7)


def test_later_configure_extra_pools_replace_earlier() -> None:
    config.configure(extra_pools=["email", "sms"])
    config.configure(extra_pools={"sms": {"max_restarts": 0}})
    assert dict(config.settings().extra_pools) == {"sms": PoolOptions(max_restarts=0)}
    assert config.options_for("email") is None


def test_extra_pool_overrides_every_key() -> None:
    config.configure(
        pool_size=7,
        extra_pools={"email": {"pool_size": 1, "max_restarts": 9, "max_seconds": 0.5}},
    )
    assert config.options_for("email") == PoolOptions(1, 9, 0.5)
    assert config.settings().defaults == PoolOptions(pool_size=7)


def test_default_pool_can_be_overridden_as_an_extra_pool() -> None:
    config.configure(extra_pools={"job": {"pool_size": 9}})
    assert config.options_for("job") == PoolOptions(pool_size=9)


def test_top_level_values_reach_extra_pools_when_not_overridden() -> None:
    config.configure(extra_pools={"email": {"pool_size": 1}})
    config.configure(max_restarts=8)  # set after the list: still applies to it
    assert config.options_for("email") == PoolOptions(pool_size=1, max_restarts=8)


# -- environment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "raw", "key", "expected"),
    [
        ("ODDJOB_DEFAULT_POOL", "main", "default_pool", "main"),
        ("ODDJOB_DEFAULT_POOL", " main ", "default_pool", "main"),
        ("ODDJOB_POOL_SIZE", "12", "pool_size", 12),
        ("ODDJOB_POOL_SIZE", " 12 ", "pool_size", 12),
        ("ODDJOB_MAX_RESTARTS", "0", "max_restarts", 0),
        ("ODDJOB_MAX_SECONDS", "2.5", "max_seconds", 2.5),
        ("ODDJOB_MAX_SECONDS", "3", "max_seconds", 3.0),
        ("ODDJOB_EXIT_TIMEOUT", "0.25", "exit_timeout", 0.25),
    ],
)
def test_environment_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str, key: str, expected: Any
) -> None:
    monkeypatch.setenv(var, raw)
    assert resolved(key) == expected
    assert type(resolved(key)) is type(expected)


@pytest.mark.parametrize("raw", ["false", "FALSE", "None", "none", "", "  False  "])
def test_environment_no_default_pool(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ODDJOB_DEFAULT_POOL", raw)
    assert config.settings().default_pool is False
    assert config.options_for("job") is None


@pytest.mark.parametrize("var", ["ODDJOB_POOL_SIZE", "ODDJOB_MAX_SECONDS", "ODDJOB_EXIT_TIMEOUT"])
def test_empty_numeric_environment_variable_is_unset(
    monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, " ")
    assert config.settings().defaults == PoolOptions()
    assert config.settings().exit_timeout == config.EXIT_TIMEOUT


def test_environment_is_read_when_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.settings().defaults.pool_size == 5
    monkeypatch.setenv("ODDJOB_POOL_SIZE", "8")
    assert config.settings().defaults.pool_size == 8


# -- the TOML file --------------------------------------------------------------------------


def test_file_top_level_keys(config_file: Callable[[str], Path]) -> None:
    config_file(
        """
        default_pool = "main"
        pool_size = 6
        max_restarts = 1
        max_seconds = 2
        exit_timeout = 3.5
        """
    )
    s = config.settings()
    assert s.default_pool == "main"
    assert s.defaults == PoolOptions(6, 1, 2.0)
    assert s.exit_timeout == 3.5


def test_file_no_default_pool(config_file: Callable[[str], Path]) -> None:
    config_file("default_pool = false\n")
    assert config.settings().default_pool is False


def test_file_extra_pools_array(config_file: Callable[[str], Path]) -> None:
    config_file(
        """
        pool_size = 6
        extra_pools = ["email", "sms"]
        """
    )
    assert dict(config.settings().extra_pools) == {
        "email": PoolOptions(pool_size=6),
        "sms": PoolOptions(pool_size=6),
    }


def test_file_extra_pools_tables(config_file: Callable[[str], Path]) -> None:
    config_file(
        """
        pool_size = 6

        [extra_pools.email]
        pool_size = 2
        max_seconds = 0.5

        [extra_pools.sms]
        """
    )
    assert dict(config.settings().extra_pools) == {
        "email": PoolOptions(pool_size=2, max_seconds=0.5),
        "sms": PoolOptions(pool_size=6),
    }
    assert config.options_for("email") == PoolOptions(pool_size=2, max_seconds=0.5)


def test_file_extra_pools_pairs(config_file: Callable[[str], Path]) -> None:
    config_file('extra_pools = ["email", ["sms", {max_restarts = 0}]]\n')
    assert config.options_for("sms") == PoolOptions(max_restarts=0)
    assert config.options_for("email") == PoolOptions()


def test_file_path_with_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    path = config_file("pool_size = 9\n")
    monkeypatch.setenv("HOME", str(path.parent))
    monkeypatch.setenv(config.CONFIG_FILE_VAR, "~/" + path.name)
    assert config.settings().defaults.pool_size == 9


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    reads: list[object] = []
    load = tomllib.load

    def counting_load(file: Any) -> dict[str, Any]:
        reads.append(file)
        return load(file)

    monkeypatch.setattr(tomllib, "load", counting_load)
    return reads


def test_file_is_cached_until_it_changes(
    config_file: Callable[[str], Path], count_reads: list[object]
) -> None:
    path = config_file("pool_size = 6\n")
    for _ in range(3):
        assert config.settings().defaults.pool_size == 6
        assert config.options_for("job") == PoolOptions(pool_size=6)
    assert len(count_reads) == 1
    path.write_text("pool_size = 77\n")  # another size
    assert config.settings().defaults.pool_size == 77
    assert len(count_reads) == 2
    stat = path.stat()
    path.write_text("pool_size = 78\n")  # same size: the mtime tells
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert config.settings().defaults.pool_size == 78
    assert len(count_reads) == 3
    config.reset()  # forgets the cache too
    assert config.settings().defaults.pool_size == 78
    assert len(count_reads) == 4


def test_another_file_is_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    config_file: Callable[[str], Path],
    count_reads: list[object],
) -> None:
    config_file("pool_size = 6\n")
    assert config.settings().defaults.pool_size == 6
    other = tmp_path / "other.toml"
    other.write_text("pool_size = 7\n")
    monkeypatch.setenv(config.CONFIG_FILE_VAR, str(other))
    assert config.settings().defaults.pool_size == 7
    monkeypatch.delenv(config.CONFIG_FILE_VAR)
    assert config.settings().defaults.pool_size == 5
    assert len(count_reads) == 2


def test_broken_file_is_not_cached(config_file: Callable[[str], Path]) -> None:
    path = config_file("pool_size = 0\n")
    for _ in range(2):
        with pytest.raises(ConfigError):
            config.settings()
    path.write_text("pool_size = 2\n")
    assert config.settings().defaults.pool_size == 2


def test_nothing_is_read_at_import(tmp_path: Path) -> None:
    """Importing oddjob reads neither the file nor the environment; settings() does."""
    path = tmp_path / "oddjob.toml"
    path.write_text("pool_size = 7\n")
    script = textwrap.dedent(
        """
        import sys
        path = sys.argv[1]
        opened = []
        def hook(event, args):
            if event == "open" and args[0] == path:
                opened.append(event)
        sys.addaudithook(hook)
        import oddjob
        from oddjob import _config as config
        assert not opened, "the configuration file was read at import"
        import os
        del os.environ["ODDJOB_EXIT_TIMEOUT"]
        assert config.settings().defaults.pool_size == 7
        assert opened
        """
    )
    src = str(Path(oddjob.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
        config.CONFIG_FILE_VAR: str(path),
        # A bad variable would raise if anything resolved the settings at import.
        "ODDJOB_EXIT_TIMEOUT": "not a number",
    }
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


# -- precedence -----------------------------------------------------------------------------


def set_in(
    source: str,
    values: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    config_file: Callable[[str], Path],
) -> None:
    if source == "configure":
        config.configure(**values)
    elif source == "env":
        for key, value in values.items():
            monkeypatch.setenv(ENV_VARS[key], str(value))
    else:
        config_file("".join(f"{key} = {toml_value(value)}\n" for key, value in values.items()))


SOURCE_SETS = [
    combo for n in range(len(SOURCES) + 1) for combo in itertools.combinations(SOURCES, n)
]


@pytest.mark.parametrize("sources", SOURCE_SETS, ids=lambda s: "+".join(s) or "none")
@pytest.mark.parametrize("key", SCALAR_KEYS)
def test_precedence_between_sources(
    key: str,
    sources: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
    config_file: Callable[[str], Path],
) -> None:
    """configure() over environment over file over built-in, for every key and every
    combination of sources (so every pair)."""
    for source in sources:
        set_in(source, {key: VALUES[source][key]}, monkeypatch, config_file)
    expected = VALUES[sources[0]][key] if sources else BUILTIN[key]
    assert resolved(key) == expected


def test_precedence_is_per_key(
    monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    set_in("file", VALUES["file"], monkeypatch, config_file)
    set_in("env", {"max_restarts": 1, "exit_timeout": 3.5}, monkeypatch, config_file)
    set_in("configure", {"pool_size": 2}, monkeypatch, config_file)
    s = config.settings()
    assert s.defaults == PoolOptions(pool_size=2, max_restarts=1, max_seconds=3.5)
    assert s.exit_timeout == 3.5
    assert s.default_pool == "from-file"


@pytest.mark.parametrize("key", POOL_KEYS)
def test_own_options_win_over_every_source(
    key: str, monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    for source in SOURCES:
        set_in(source, {key: VALUES[source][key]}, monkeypatch, config_file)
    own = {"pool_size": 11, "max_restarts": 12, "max_seconds": 13.0}[key]
    assert getattr(config.pool_options("any", **{key: own}), key) == own
    assert getattr(config.pool_options("from-configure", **{key: own}), key) == own
    # Without an own value, the configure() value applies.
    assert getattr(config.pool_options("any"), key) == VALUES["configure"][key]


def test_own_options_win_over_extra_pool_overrides() -> None:
    config.configure(extra_pools={"email": {"pool_size": 2, "max_restarts": 0}})
    assert config.pool_options("email", pool_size=9) == PoolOptions(pool_size=9, max_restarts=0)
    assert config.pool_options("other", max_seconds=1) == PoolOptions(max_seconds=1.0)


def test_file_extra_pool_overrides_beat_configure_and_env(
    monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file(
        """
        [extra_pools.email]
        pool_size = 4
        """
    )
    monkeypatch.setenv("ODDJOB_POOL_SIZE", "3")
    monkeypatch.setenv("ODDJOB_MAX_RESTARTS", "1")
    config.configure(pool_size=2)
    assert config.options_for("email") == PoolOptions(pool_size=4, max_restarts=1)
    assert config.settings().defaults == PoolOptions(pool_size=2, max_restarts=1)


def test_configure_extra_pool_overrides_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODDJOB_POOL_SIZE", "3")
    config.configure(extra_pools=[("email", {"pool_size": 1})])
    assert config.options_for("email") == PoolOptions(pool_size=1)
    assert config.options_for("job") == PoolOptions(pool_size=3)


def test_extra_pools_merge_by_name_across_configure_and_file(
    config_file: Callable[[str], Path],
) -> None:
    config_file(
        """
        [extra_pools.email]
        pool_size = 4
        max_restarts = 1

        [extra_pools.sms]
        max_seconds = 9
        """
    )
    config.configure(extra_pools={"email": {"pool_size": 2}, "push": {}})
    extra = config.settings().extra_pools
    assert list(extra) == ["email", "sms", "push"]
    assert extra["email"] == PoolOptions(pool_size=2, max_restarts=1)  # key by key
    assert extra["sms"] == PoolOptions(max_seconds=9.0)
    assert extra["push"] == PoolOptions()


def test_configure_default_pool_false_beats_env_and_file(
    monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file('default_pool = "from-file"\n')
    monkeypatch.setenv("ODDJOB_DEFAULT_POOL", "from-env")
    config.configure(default_pool=False)
    assert config.settings().default_pool is False
    assert config.options_for("from-env") is None


def test_env_no_default_pool_beats_file(
    monkeypatch: pytest.MonkeyPatch, config_file: Callable[[str], Path]
) -> None:
    config_file('default_pool = "from-file"\n')
    monkeypatch.setenv("ODDJOB_DEFAULT_POOL", "none")
    assert config.settings().default_pool is False


# -- bad values -----------------------------------------------------------------------------

BAD_VALUES: list[tuple[str, Any]] = [
    ("default_pool", ""),
    ("default_pool", True),
    ("default_pool", None),
    ("default_pool", 0),
    ("default_pool", b"job"),
    ("pool_size", 0),
    ("pool_size", -1),
    ("pool_size", 1.5),
    ("pool_size", 2.0),
    ("pool_size", True),
    ("pool_size", "5"),
    ("pool_size", None),
    ("max_restarts", -1),
    ("max_restarts", 1.0),
    ("max_restarts", False),
    ("max_restarts", "3"),
    ("max_seconds", 0),
    ("max_seconds", -0.5),
    ("max_seconds", math.nan),
    ("max_seconds", True),
    ("max_seconds", "5"),
    ("max_seconds", timedelta(0)),
    ("exit_timeout", 0),
    ("exit_timeout", -1),
    ("exit_timeout", math.nan),
    ("restart_on_error", 1),
    ("restart_on_error", "yes"),
    ("restart_on_error", None),
    ("initializer", 5),
    ("initializer", "no colon"),
    ("initializer", "pkg.mod:"),
    ("initializer", ":func"),
    ("finalizer", "pkg mod:func"),
    ("finalizer", b"pkg:func"),
    ("initargs", "abc"),
    ("initargs", None),
    ("initargs", {"a": 1}),
    ("exit_timeout", True),
    ("exit_timeout", "10"),
    ("exit_timeout", None),
    ("extra_pools", "email"),
    ("extra_pools", 5),
    ("extra_pools", None),
    ("extra_pools", [3]),
    ("extra_pools", [("email",)]),
    ("extra_pools", [("email", 3)]),
    ("extra_pools", [("email", {"pool_size": 1}, "x")]),
    ("extra_pools", [""]),
    ("extra_pools", {1: {}}),
    ("extra_pools", {"email": None}),
    ("extra_pools", {"email": {"bogus": 1}}),
    ("extra_pools", {"email": {"pool_size": 0}}),
    ("extra_pools", {"email": {"max_restarts": True}}),
    ("extra_pools", {"email": {"max_seconds": -1}}),
    ("extra_pools", ["email", "email"]),
    ("extra_pools", ["email", ("email", {})]),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=lambda v: repr(v))
def test_configure_bad_value(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match="expected") as caught:
        config.configure(**{key: value})
    message = str(caught.value)
    assert key in message
    if key != "extra_pools":
        assert f"{key}={value!r}" in message
    assert config.settings() == config.Settings("job", PoolOptions(), {}, 10.0)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"email": {"bogus": 1}}, "extra_pools['email'].unknown pool option 'bogus' (value 1)"),
        ({"email": {"pool_size": 0}}, "extra_pools['email'].pool_size=0"),
        ([("email", 3)], "extra_pools['email']=3"),
        ("email", "extra_pools='email'"),
        ([3], "item 3"),
        ([""], "pool name ''"),
        (["a", "a"], "pool 'a' is listed twice"),
    ],
)
def test_configure_bad_extra_pools_message(value: Any, shown: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.configure(extra_pools=value)
    assert str(caught.value).startswith("configure(): ")
    assert shown in str(caught.value)


def test_configure_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'poolsize' \(value 3\); expected one of"):
        config.configure(poolsize=3)


def test_configure_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        config.configure(pool_size=0)


@pytest.mark.parametrize(
    "options",
    [
        {"pool_size": 7, "max_restarts": -1},
        {"default_pool": "main", "extra_pools": ["email"], "bogus": 1},
        {"exit_timeout": 1, "extra_pools": ["email", ("sms", {"pool_size": 0})]},
    ],
)
def test_failing_configure_applies_nothing(options: dict[str, Any]) -> None:
    config.configure(pool_size=2, extra_pools=["old"])
    before = config.settings()
    with pytest.raises(ConfigError):
        config.configure(**options)
    assert config.settings() == before


def bad_environment_cases() -> list[tuple[str, str]]:
    return [
        ("ODDJOB_POOL_SIZE", "abc"),
        ("ODDJOB_POOL_SIZE", "0"),
        ("ODDJOB_POOL_SIZE", "-2"),
        ("ODDJOB_POOL_SIZE", "1.5"),
        ("ODDJOB_POOL_SIZE", "true"),
        ("ODDJOB_MAX_RESTARTS", "-1"),
        ("ODDJOB_MAX_RESTARTS", "many"),
        ("ODDJOB_MAX_RESTARTS", "2.0"),
        ("ODDJOB_MAX_SECONDS", "0"),
        ("ODDJOB_MAX_SECONDS", "-1"),
        ("ODDJOB_MAX_SECONDS", "nan"),
        ("ODDJOB_MAX_SECONDS", "5s"),
        ("ODDJOB_EXIT_TIMEOUT", "0"),
        ("ODDJOB_EXIT_TIMEOUT", "ten"),
    ]


@pytest.mark.parametrize(("var", "raw"), bad_environment_cases())
def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch, var: str, raw: str) -> None:
    monkeypatch.setenv(var, raw)
    expected = f"{var}={raw!r}: expected"
    for call in (
        config.settings,
        lambda: config.options_for("job"),
        lambda: config.pool_options("x"),
    ):
        with pytest.raises(ConfigError) as caught:
            call()
        assert expected in str(caught.value)


def test_bad_environment_value_raises_even_if_configure_sets_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config.configure(pool_size=2)
    monkeypatch.setenv("ODDJOB_POOL_SIZE", "abc")
    with pytest.raises(ConfigError, match="ODDJOB_POOL_SIZE='abc'"):
        config.settings()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("pool_size = \n", "is not valid TOML"),
        ("[extra_pools\n", "is not valid TOML"),
        ("bogus = 1\n", "unknown key 'bogus' (value 1)"),
        ('default_pool = ""\n', "default_pool='': expected"),
        ("default_pool = true\n", "default_pool=True: expected"),
        ("pool_size = 0\n", "pool_size=0: expected an int >= 1"),
        ('pool_size = "5"\n', "pool_size='5': expected an int >= 1"),
        ("pool_size = 2.0\n", "pool_size=2.0: expected an int >= 1"),
        ("max_restarts = -1\n", "max_restarts=-1: expected an int >= 0"),
        ("max_seconds = 0\n", "max_seconds=0: expected a number > 0"),
        ("max_seconds = nan\n", "max_seconds=nan: expected a number > 0"),
        ("restart_on_error = 1\n", "restart_on_error=1: expected True or False"),
        ('initializer = "nocolon"\n', "initializer='nocolon': expected a callable, an import"),
        ("initargs = 3\n", "initargs=3: expected a tuple"),
        ('[extra_pools.db]\nfinalizer = "a b:c"\n', "extra_pools['db'].finalizer='a b:c'"),
        ("exit_timeout = 00:00:05\n", "exit_timeout=datetime.time(0, 0, 5): expected"),
        ('extra_pools = "email"\n', "extra_pools='email': expected"),
        ("extra_pools = [1, 2]\n", "extra_pools: item 1: expected"),
        ("[extra_pools]\nemail = 3\n", "extra_pools['email']=3: expected a dict"),
        ("[extra_pools.email]\nsize = 3\n", "extra_pools['email'].unknown pool option 'size'"),
        ("[extra_pools.email]\npool_size = 0\n", "extra_pools['email'].pool_size=0: expected"),
        ('extra_pools = ["a", "a"]\n', "extra_pools: pool 'a' is listed twice"),
    ],
)
def test_bad_file(config_file: Callable[[str], Path], text: str, shown: str) -> None:
    path = config_file(text)
    with pytest.raises(ConfigError) as caught:
        config.settings()
    message = str(caught.value)
    assert message.startswith(f"ODDJOB_CONFIG file {str(path)!r}")
    assert shown in message


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "missing.toml"
    monkeypatch.setenv(config.CONFIG_FILE_VAR, str(path))
    with pytest.raises(ConfigError, match="cannot be read") as caught:
        config.settings()
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_file_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.CONFIG_FILE_VAR, str(tmp_path))
    with pytest.raises(ConfigError, match="cannot be read") as caught:
        config.settings()
    assert str(tmp_path) in str(caught.value)


def test_file_not_utf8(config_file: Callable[[str], Path]) -> None:
    path = config_file("")
    path.write_bytes(b'default_pool = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot be read") as caught:
        config.settings()
    assert str(path) in str(caught.value)


def test_empty_config_variable_means_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.CONFIG_FILE_VAR, "")
    assert config.settings().defaults == PoolOptions()


# -- reset() and PoolOptions.build ---------------------------------------------------------


def test_reset_forgets_every_configure_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ODDJOB_MAX_RESTARTS", "1")
    config.configure(default_pool=False, pool_size=2, extra_pools=["email"], exit_timeout=1)
    config.configure(max_seconds=1)
    config.reset()
    s = config.settings()
    assert s == config.Settings("job", PoolOptions(max_restarts=1), {}, 10.0)


def test_reset_is_internal() -> None:
    assert not hasattr(oddjob, "reset")


def test_pool_options_build() -> None:
    base = PoolOptions(pool_size=2, max_restarts=1)
    assert PoolOptions.build() == PoolOptions()
    assert PoolOptions.build(base) == base
    assert PoolOptions.build(base, max_seconds=1) == PoolOptions(2, 1, 1.0)
    assert PoolOptions.build(pool_size=3) == PoolOptions(pool_size=3)
    with pytest.raises(ConfigError, match=r"unknown pool option 'size' \(value 3\)"):
        PoolOptions.build(size=3)
    with pytest.raises(ConfigError, match=r"pool_size=0: expected an int >= 1"):
        PoolOptions.build(base, pool_size=0)
    with pytest.raises(ConfigError, match=r"max_restarts=True: expected an int >= 0"):
        PoolOptions.build(max_restarts=True)


# -- the v2 pool options: restart_on_error, initializer, initargs, finalizer -----------------


def _setup_hook(*args: object) -> None:
    """A callable the tests name by import string."""


V2_OPTIONS: dict[str, Any] = {
    "restart_on_error": True,
    "initializer": "test_config:_setup_hook",
    "initargs": ("dsn", 3),
    "finalizer": "test_config:_setup_hook",
}


def test_v2_pool_options_default_to_off() -> None:
    options = PoolOptions()
    assert options.restart_on_error is False
    assert options.initializer is None and options.finalizer is None
    assert options.initargs == ()


def test_configure_sets_the_v2_pool_options() -> None:
    config.configure(**V2_OPTIONS)
    assert config.settings().defaults == PoolOptions(**V2_OPTIONS)
    config.configure(initializer=_setup_hook, initargs=["a"])
    options = config.pool_options("any")
    assert options.initializer is _setup_hook
    assert options.initargs == ("a",), "a list of initargs is stored as a tuple"


def test_the_file_sets_the_v2_pool_options_top_level_and_per_pool(
    config_file: Callable[[str], Path],
) -> None:
    config_file(
        """
        restart_on_error = true
        initializer = "test_config:_setup_hook"
        initargs = ["dsn", 3]
        [extra_pools.db]
        finalizer = "test_config:_setup_hook"
        restart_on_error = false
        """
    )
    s = config.settings()
    assert s.defaults.restart_on_error is True
    assert s.defaults.initializer == "test_config:_setup_hook"
    assert s.defaults.initargs == ("dsn", 3)
    db = s.extra_pools["db"]
    assert (db.restart_on_error, db.finalizer) == (False, "test_config:_setup_hook")
    assert db.initializer == "test_config:_setup_hook", "top-level values reach extra pools"


def test_v2_options_follow_the_precedence(config_file: Callable[[str], Path]) -> None:
    config_file('restart_on_error = true\ninitargs = ["file"]\n')
    config.configure(initargs=("configure",))
    options = config.pool_options("p", initargs=("own",))
    assert options.initargs == ("own",)
    assert config.pool_options("p").initargs == ("configure",)
    assert config.pool_options("p").restart_on_error is True  # only the file sets it


def test_resolve_callable_imports_strings_and_passes_callables() -> None:
    assert config.resolve_callable(None, "initializer") is None
    assert config.resolve_callable(_setup_hook, "initializer") is _setup_hook
    assert config.resolve_callable("os.path:join", "finalizer") is os.path.join
    assert config.resolve_callable("collections:OrderedDict.fromkeys", "x") is not None
    with pytest.raises(ConfigError, match=r"finalizer='os:nope': cannot import it"):
        config.resolve_callable("os:nope", "finalizer")
