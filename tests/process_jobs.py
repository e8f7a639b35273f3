"""Jobs for worker processes: module-level, so that a child process can import them by
name (test modules are imported by path, under names a child cannot import)."""

from __future__ import annotations

import contextvars
import ctypes
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import oddjob

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("process_jobs_var", default="unset")

# Set by init_resource in a worker process; what a job there sees of its initializer.
_resource: dict[str, Any] = {}


def noop(*_args: object) -> None:
    return None


def add(a: int, b: int = 0) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def pid(*_args: object) -> int:
    return os.getpid()


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def busy(seconds: float) -> int:
    """Spin on the CPU for ``seconds`` (a CPU-bound job)."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def fail(message: str) -> None:
    raise ValueError(message)


def nested_fail() -> None:
    try:
        raise KeyError("inner")
    except KeyError as exc:
        raise RuntimeError("outer") from exc


class Unpicklable(Exception):
    """An exception that does not pickle (it holds a lock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class BadInit(Exception):
    """An exception whose pickle cannot be loaded back (its __init__ takes two args)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}-{b}")


def raise_unpicklable() -> None:
    raise Unpicklable("holds a lock")


def raise_bad_init() -> None:
    raise BadInit("x", "y")


def return_unpicklable() -> object:
    return threading.Lock()


def exit_now(code: int) -> None:
    os._exit(code)


def kill_self(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(10)


def segfault() -> None:
    ctypes.string_at(0)


def system_exit() -> None:
    raise SystemExit(3)


def init_resource(value: str) -> None:
    _resource["value"] = value
    _resource["pid"] = os.getpid()


def read_resource() -> tuple[str | None, int | None, int]:
    return _resource.get("value"), _resource.get("pid"), os.getpid()


def init_fails() -> None:
    raise RuntimeError("initializer failed")


def write_on_exit(path: str) -> None:
    Path(path, str(os.getpid())).write_text("finalized")


def finalizer_fails() -> None:
    raise RuntimeError("finalizer failed")


def worker_info() -> tuple[str, str, int, int] | None:
    info = oddjob.current_worker()
    if info is None:
        return None
    return info.pool, info.name, info.index, info.jobs_run


def read_var() -> str:
    return VAR.get()


def touch(path: str, name: str) -> None:
    """Record that the job ``name`` ran, in this process (a file per run)."""
    Path(path, f"{name}.{os.getpid()}.{time.monotonic_ns()}").write_text("")


def touch_item(path: str) -> None:
    """A batch's job: its item is the directory."""
    touch(path, "item")


def touch_or_die(path: str, die_at: int, i: int) -> int:
    """A batch's job i: records that it ran, but job die_at kills its process first."""
    if i == die_at:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    touch(path, f"j{i:02d}")
    return i


def record_then_sleep(path: str, name: str, seconds: float) -> None:
    touch(path, name)
    time.sleep(seconds)


def fails_twice(path: str) -> int:
    """Raise ValueError on the first two runs (counted in a file), then return 3."""
    counter = Path(path)
    runs = len(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text("x" * runs)
    if runs < 3:
        raise ValueError(f"run {runs}")
    return runs


def interval(path: str, tag: str, seconds: float) -> None:
    """Sleep, leaving a file under path named for tag that holds when the sleep began
    and ended (wall-clock time: the same clock in every process of this machine)."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    Path(path, f"{tag}.{os.getpid()}.{start:.6f}").write_text(f"{start} {end}")


def pid_to_file_then_sleep(path: str, seconds: float) -> int:
    """Write this process's pid to path, then sleep (a job to be killed from outside)."""
    Path(path + ".tmp").write_text(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return os.getpid()
