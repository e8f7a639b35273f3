"""One suite, two implementations: every test runs over the compiled core and the
pure-Python twin (the autouse `core` fixture), with a thread-leak check around it."""

from __future__ import annotations

import logging
import multiprocessing
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

# Imported here, shallow in the stack: its pytest plugin imports it at the end of a run
# that did not, deep in pytest's hooks, where CPython 3.11.7's AST builder fails the
# assertion rewrite ("AST constructor recursion depth mismatch") and the run with it.
import hypothesis  # noqa: F401
import pytest

import oddjob
import support
from oddjob import _backend, _executor, telemetry
from oddjob import _config as config

# How long worker threads get to exit once their pools are stopped.
THREAD_EXIT_WAIT = 5.0
# How long stopping one pool may take during cleanup (it only drains test leftovers).
STOP_TIMEOUT = 30.0
# Every behaviour test runs once per core that is importable here: both where the
# extension is built, the twin alone in a pure-Python install (CI checks separately
# that the compiled core is built and is the default).
CORES = ["compiled", "python"] if _backend.compiled() is not None else ["python"]
# The Ray backend's own tests, where Ray is installed (see support.RAY).
collect_ignore = [] if support.RAY else ["test_ray.py", "ray_driver.py"]


def oddjob_threads() -> list[threading.Thread]:
    """Threads of oddjob's pools and scheduler (named "oddjob...") and of Executors
    (named as ThreadPoolExecutor names its own, so known by the executor's registry)."""
    executor_threads = set(_executor._threads_queues)
    return [
        t for t in threading.enumerate() if t.name.startswith("oddjob") or t in executor_threads
    ]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """After the test (and after `core` has stopped its pools) no oddjob thread that the
    test started is still alive. Threads alive before the test are another test's leak."""
    before = set(oddjob_threads())
    yield
    deadline = time.monotonic() + THREAD_EXIT_WAIT
    for t in oddjob_threads():
        if t not in before:
            t.join(max(0.0, deadline - time.monotonic()))
    leaked = [t.name for t in oddjob_threads() if t not in before]
    assert not leaked, f"oddjob threads still alive {THREAD_EXIT_WAIT}s after the test: {leaked}"
    # Worker processes end with their driver threads (the threads wait for them).
    processes = [p for p in multiprocessing.active_children() if p.name.startswith("oddjob")]
    assert not processes, f"worker processes still alive after the test: {processes}"


def pytest_report_header() -> str:
    return f"oddjob cores under test: {', '.join(CORES)} (default: {_backend.core.__name__})"


def core_module(name: str) -> ModuleType | None:
    if name == "python":
        from oddjob import _core_py

        return _core_py
    return _backend.compiled()


def stop_everything() -> None:
    """Release every gate, then stop every pool the test may have started."""
    support.open_all_gates()
    errors = []
    for name in [*support.take_names(), "job"]:
        if oddjob.whereis(name) is None:
            continue
        try:
            oddjob.stop(name, timeout=STOP_TIMEOUT, cancel_pending=True)
        except oddjob.PoolNotFoundError:
            pass  # stopped by the test itself in the meantime
        except Exception as exc:
            errors.append(f"stop({name!r}) raised {exc!r}")
    assert not errors, "; ".join(errors)


@pytest.fixture(params=CORES, autouse=True)
def core(request: pytest.FixtureRequest, _no_leaked_threads: None) -> Iterator[ModuleType]:
    """The core implementation the test's pools run on (a module with Queue, Job, ...)."""
    module = core_module(request.param)
    assert module is not None, f"the {request.param} core cannot be imported"
    assert request.param == module.IMPLEMENTATION
    support.close_gates()
    with _backend.use(module):
        try:
            yield module
        finally:
            stop_everything()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster for the session, started by its first Ray test: its address.
    Its worker processes import the tests' job modules (process_jobs) from this folder."""
    import ray

    ray.init(
        num_cpus=2,
        namespace="oddjob",
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}},
    )
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture
def make_pool() -> Callable[..., str]:
    """make_pool(size, **options) starts a pool under a fresh name and returns the name."""

    def make(size: int = 1, **options: object) -> str:
        name = support.new_name()
        oddjob.start_link(name, pool_size=size, **options)
        return name

    return make


@pytest.fixture
def oddjob_log(caplog: pytest.LogCaptureFixture) -> Iterator[support.LogWatcher]:
    """Capture the "oddjob" logger (in caplog too) and wait for records from workers."""
    caplog.set_level(logging.DEBUG, logger="oddjob")
    watcher = support.LogWatcher(caplog)
    logger = logging.getLogger("oddjob")
    logger.addHandler(watcher)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)


@pytest.fixture
def clean_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No configure() call, no oddjob environment variable, no config file (yields the
    monkeypatch, to set some)."""
    for var in [*config.ENV_VARS.values(), config.CONFIG_FILE_VAR]:
        monkeypatch.delenv(var, raising=False)
    config.reset()
    yield monkeypatch
    config.reset()


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """config_file(text) writes a TOML file and points ODDJOB_CONFIG at it."""

    def write(text: str) -> Path:
        path = tmp_path / "oddjob.toml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        monkeypatch.setenv(config.CONFIG_FILE_VAR, str(path))
        return path

    return write


@pytest.fixture
def record_events() -> Iterator[Callable[[str, list[str]], support.Events]]:
    """record_events(pool, names) attaches a handler recording pool's events of those
    names; it is detached when the test ends."""
    ids: list[Any] = []

    def attach(pool: str, names: list[str]) -> support.Events:
        recorder = support.Events(pool)
        telemetry.attach(("recorded", pool), names, recorder.handler)
        ids.append(("recorded", pool))
        return recorder

    yield attach
    for handler_id in ids:
        telemetry.detach(handler_id)
