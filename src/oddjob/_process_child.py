"""The life of a worker process: run the initializer, then the jobs of each message from
the pool until told to stop (or until the pool's process is gone), then the finalizer.

It never outlives the pool's process: a thread here waits on a "lifeline" pipe whose
only writer is the pool, and ends this process when it reads end-of-file; on Linux,
``PR_SET_PDEATHSIG`` also has the kernel kill it when its parent dies.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from . import _config, _supervision, _wire

#: Exit status of a worker process whose pool's process is gone.
ORPHANED = 70
#: The longest a batch's finished results wait here before they are sent.
FLUSH_NS = 1_000_000


class ChildWorker:
    """What ``current_worker()`` reports inside a worker process."""

    __slots__ = ("jobs_run", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs_run = 0


def main(
    conn: Connection,
    lifeline: Connection,
    progress: Any,
    setup: bytes,
    pool: str,
    index: int,
    name: str,
) -> None:
    """The target of a worker process (see the module docstring)."""
    _die_with_parent(lifeline)
    # Ctrl-C in a terminal reaches the whole process group: the pool's process decides
    # what an interrupt stops; a job here must not fail of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker = ChildWorker(name)
    _supervision._current.worker = (pool, index, worker)
    try:
        initializer, initargs, finalizer = _wire.loads(setup)
        initializer = _config.resolve_callable(initializer, "initializer")
        finalizer = _config.resolve_callable(finalizer, "finalizer")
        if initializer is not None:
            initializer(*initargs)
    except BaseException as exc:
        conn.send_bytes(_wire.message(_wire.FAILED, _wire.pack_error(exc)))
        return
    conn.send_bytes(_wire.message(_wire.READY, os.getpid()))
    _serve(conn, worker, progress)
    error = None
    if finalizer is not None:
        try:
            finalizer()
        except BaseException as exc:
            error = _wire.pack_error(exc)
    try:
        conn.send_bytes(_wire.message(_wire.STOPPED, error))
    except OSError:  # the pool's side stopped listening: nothing more to tell
        pass


def _serve(conn: Connection, worker: ChildWorker, progress: Any) -> None:
    """Run jobs until the stop message (or end-of-file: the pool's side is gone).

    ``progress`` is shared with the pool: ``progress[0]`` counts the jobs of the current
    batch started so far, ``progress[1 + i]`` is its job i's outcome (0 while it runs,
    then OK or FAILED)."""
    recv, send, loads = conn.recv_bytes, conn.send_bytes, _wire.loads
    while True:
        try:
            data = recv()
        except (EOFError, OSError):
            os._exit(ORPHANED)
        if data == _wire.STOP:
            return
        try:
            message = loads(data)
        except BaseException as exc:  # the pool sends a batch again, each job alone
            send(_wire.message(_wire.UNREADABLE, _wire.pack_error(exc)))
            continue
        del data
        if type(message) is not list:
            send(_run(message, worker)[1])
        elif message and type(message[0]) is bytes:  # each job pickled alone: fails alone
            for started, part in enumerate(message, 1):
                progress[started] = 0
                progress[0] = started
                progress[started], reply = _run(part, worker)
                send(reply)
        else:
            _run_batch(message, worker, send, progress)
        del message


def _run_batch(calls: list[Any], worker: ChildWorker, send: Any, progress: Any) -> None:
    """Run a batch in order. Its results go back many to a message: the first job's at
    once (it is the worker's running job), the others every FLUSH_NS of running at most,
    so that a crash loses few of them (see _serve for what the pool learns of those)."""
    clock = time.perf_counter_ns
    results: list[tuple[int, Any, int]] = []
    flushed = clock()
    for started, (fn, args, kwargs) in enumerate(calls, 1):
        progress[started] = 0
        progress[0] = started
        worker.jobs_run += 1
        began = clock()
        try:
            value = fn(*args) if kwargs is None else fn(*args, **kwargs)
            kind = _wire.OK
        except BaseException as exc:
            value, kind = _wire.pack_error(exc), _wire.FAILED
        ended = clock()
        progress[started] = kind
        results.append((kind, value, ended - began))
        del fn, args, kwargs, value
        if started == 1 or ended - flushed >= FLUSH_NS:
            send(_results_message(results))
            results = []
            flushed = clock()
    if results:
        send(_results_message(results))


def _results_message(results: list[tuple[int, Any, int]]) -> bytes:
    # Results pickled together; if that fails, each result that does not pickle fails
    # alone (as in _run).
    try:
        return _wire.dumps((_wire.RESULTS, results, 0))
    except BaseException:
        pass
    safe = []
    for kind, value, run_ns in results:
        if kind == _wire.OK:
            try:
                _wire.dumps(value)
            except BaseException as exc:
                kind, value = _wire.FAILED, _wire.pack_error(exc)
        safe.append((kind, value, run_ns))
    return _wire.dumps((_wire.RESULTS, safe, 0))


def _run(call: Any, worker: ChildWorker) -> tuple[int, bytes]:
    """One job's outcome (OK or FAILED) and result message; call is (fn, args, kwargs),
    or its pickle (a job of a batch: one that does not unpickle here fails alone)."""
    worker.jobs_run += 1  # counts the running job, as a thread worker does
    started = time.perf_counter_ns()
    try:
        fn, args, kwargs = _wire.loads(call) if type(call) is bytes else call
        del call
        result = fn(*args) if kwargs is None else fn(*args, **kwargs)
        run_ns = time.perf_counter_ns() - started
        # A result that does not pickle fails its job.
        return _wire.OK, _wire.dumps((_wire.OK, result, run_ns))
    except BaseException as exc:
        run_ns = time.perf_counter_ns() - started
        return _wire.FAILED, _wire.dumps((_wire.FAILED, _wire.pack_error(exc), run_ns))


def _die_with_parent(lifeline: Connection) -> None:
    if sys.platform == "linux":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # no prctl here: the lifeline still works
            pass

    def watch() -> None:
        try:
            lifeline.recv_bytes()
        except (EOFError, OSError):
            pass
        os._exit(ORPHANED)  # nothing else is ever sent: any return means the pool is gone

    threading.Thread(target=watch, name="oddjob-lifeline", daemon=True).start()
