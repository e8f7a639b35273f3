"""A process worker: a worker thread of the pool that drives one child process.

The thread runs ``queue.work(worker, runner=unit.run)`` like any worker, so the queue,
its limits, retries, stats and events are the pool's, unchanged; only the call of each
job goes to the child (``_process_child``), as a pickle over a pipe:

    worker thread: queue.work --> unit.run(fn, args, kwargs) --> send --> child runs it
                                  <-- result or exception <-- recv <--
    the child dies      --> the job fails with WorkerCrashedError; the worker crashes
                            and the supervisor replaces it (thread and process)
    job_timeout passes  --> the child is killed; the job fails with JobTimeoutError
    max_jobs_per_worker --> the worker is retired after that many jobs and replaced
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import select
import signal
import struct
import threading
import weakref
from multiprocessing.connection import Connection, wait
from typing import Any, Final

from . import _wire
from ._config import PoolOptions, resolve_callable
from ._errors import ConfigError, JobTimeoutError, WorkerCrashedError

#: How long a stopping worker process may take to run its finalizer and exit before it
#: is killed.
STOP_TIMEOUT: Final = 10.0
#: How long to wait for a killed process to be reaped.
KILL_WAIT: Final = 5.0
_POLL_MAX_MS: Final = 2**31 - 1
#: Batches: jobs travel many to a message while the child's run times stay below
#: BATCH_BELOW, as many as fit in BATCH_BUDGET of them, MAX_BATCH at most.
BATCH_BELOW_NS: Final = 200_000
BATCH_BUDGET_NS: Final = 2_000_000
MAX_BATCH: Final = 1024
#: Bytes asked of the pipe per read.
READ_SIZE: Final = 1 << 16
_UNKNOWN: Final = BATCH_BELOW_NS + 1  # the run-time guess before the first result
_HEADER: Final = struct.Struct("!i")
_LONG_HEADER: Final = struct.Struct("!Q")

# One spawn at a time: with "fork", a child forked while another's pipe ends are still
# open here would inherit them, and that child's death would then go unseen.
_spawn_lock = threading.Lock()
# The parent's ends of every worker's pipes: a process forked from this one (a "fork"
# worker, or the application's own os.fork()) closes them, so that it keeps no worker
# alive (the lifeline) and no pipe open.
_parent_ends: weakref.WeakSet[Connection] = weakref.WeakSet()
# True while this process forks a worker process (start_method="fork", _spawn_lock held).
_forking_worker = False
# Every live worker process, to kill at interpreter exit if a pool could not drain.
_live: weakref.WeakSet[ProcessUnit] = weakref.WeakSet()


class ProcessSetup:
    """What every worker process of a pool starts with, resolved when the pool starts.

    Raises:
        ConfigError: the initializer, its arguments or the finalizer do not pickle.
    """

    __slots__ = ("batching", "context", "job_timeout", "max_jobs", "payload", "pool_size")

    def __init__(self, pool: str, options: PoolOptions) -> None:
        self.context: Any = multiprocessing.get_context(options.start_method)
        self.job_timeout = options.job_timeout
        self.max_jobs = options.max_jobs_per_worker
        self.pool_size = options.pool_size
        # Not with job_timeout (each job's deadline is its own) nor restart_on_error (a
        # failure ends the worker's life, which a batch would outlive).
        self.batching = options.job_timeout is None and not options.restart_on_error
        # Import strings travel as they are (the child imports them); they are checked
        # here too, so that a bad one fails start() rather than every child.
        resolve_callable(options.initializer, "initializer")
        resolve_callable(options.finalizer, "finalizer")
        try:
            self.payload = _wire.dumps((options.initializer, options.initargs, options.finalizer))
        except Exception as exc:
            raise ConfigError(
                f"pool {pool!r}: the initializer, its initargs and the finalizer must pickle "
                f"to reach worker processes: {exc}"
            ) from exc


def _describe_exit(process: Any) -> str:
    code = process.exitcode
    if code is None:
        return "is gone (its exit status is unknown)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


class ProcessUnit:
    """One worker's child process, driven from the worker's thread (see the module
    docstring). ``start`` and ``stop`` run on that thread; ``run`` is the queue's runner."""

    def __init__(self, pool: str, setup: ProcessSetup, queue: Any, worker: Any, index: int):
        self.pool = pool
        self._setup = setup
        self._queue = queue
        self._worker = worker
        self._index = index
        self._process: Any = None
        self._conn: Connection | None = None
        self._lifeline: Connection | None = None
        self._poll: Any = None
        self._fd = -1
        timeout = setup.job_timeout
        # poll() takes an int of milliseconds: a longer timeout is forever in practice.
        self._timeout_ms = (
            -1 if timeout is None or timeout * 1000 >= _POLL_MAX_MS else max(1, int(timeout * 1000))
        )
        self._jobs = 0
        self._estimate_ns = _UNKNOWN  # the child's recent run times (a moving average)
        self._in_flight: list[Any] = []  # extras sent with the running job
        # The child's results of the running batch not yet used, and the next one's index.
        self._results: list[tuple[int, Any, int]] = []
        self._next = 0
        # Shared with the child: how many jobs of the batch it has started, and how
        # each ended (see _process_child._serve).
        self._progress: Any = None
        self._buf = bytearray()
        self._pos = 0
        #: Why this worker crashed: its child died (WorkerCrashedError, JobTimeoutError),
        #: or a job sent with another raised SystemExit & co; else None.
        self.died: BaseException | None = None
        self._gone = False  # the child is dead (and reaped)
        self.runner = self.run

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # -- the worker's life ----------------------------------------------------------

    def start(self) -> BaseException | None:
        """Start the child and run its initializer there: None once it is ready, else
        the initializer's exception (or why the child could not start)."""
        context = self._setup.context
        name = self._worker.name
        ends: list[Connection] = []
        try:
            with _spawn_lock:
                conn, child_conn = context.Pipe(duplex=True)
                ends += (conn, child_conn)
                lifeline_reader, lifeline = context.Pipe(duplex=False)
                ends += (lifeline_reader, lifeline)
                progress = context.RawArray("q", 1 + MAX_BATCH)
                process = context.Process(
                    target=_child_main,
                    args=(
                        child_conn,
                        lifeline_reader,
                        progress,
                        self._setup.payload,
                        self.pool,
                        self._index,
                        name,
                    ),
                    name=name,
                )
                global _forking_worker
                _forking_worker = True
                try:
                    process.start()
                finally:
                    _forking_worker = False
                    child_conn.close()
                    lifeline_reader.close()
        except Exception as exc:  # no pipe, or no process (out of memory, of pids)
            for end in ends:
                end.close()
            return exc
        _parent_ends.add(conn)
        _parent_ends.add(lifeline)
        self._process, self._conn, self._lifeline = process, conn, lifeline
        self._progress = progress
        _live.add(self)
        self._fd = conn.fileno()
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)
            self._poll.register(process.sentinel, select.POLLIN)
        try:
            kind, value, _ = self._receive(-1)
        except WorkerCrashedError as exc:
            self._reap()
            return exc
        if kind == _wire.READY:
            return None
        self._reap(kill=True)
        return _wire.unpack_error(value)

    def stop(self) -> BaseException | None:
        """Ask the child to run its finalizer and exit (killing it if it takes longer
        than STOP_TIMEOUT): the finalizer's exception, or None."""
        conn = self._conn
        if conn is None:
            return None
        error = None
        if not self._gone:
            try:
                conn.send_bytes(_wire.STOP)
                kind, value, _ = self._receive(int(STOP_TIMEOUT * 1000))
                if kind == _wire.STOPPED and value is not None:
                    error = _wire.unpack_error(value)
            except (WorkerCrashedError, JobTimeoutError, OSError):
                pass  # died or hung while stopping: nothing more to run there
        self._reap()
        return error

    def kill(self) -> None:
        """Kill the child now (interpreter exit with a pool that did not drain)."""
        process = self._process
        if process is not None and process.exitcode is None:
            try:
                process.kill()
            except OSError:
                pass

    # -- one job ----------------------------------------------------------------------

    def run(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
        """The queue's runner: ``fn(*args, **kwargs)`` in the child; its result, or its
        exception raised here (with the remote traceback as ``__cause__``).

        While short jobs are queued behind it, more of them travel in the same message
        (``Queue.take``), and their results come back many to a message, so that a round
        trip on the pipe is paid per batch, not per job. Those are ended here (finish);
        if the child dies among them, that is their end, not this job's."""
        conn = self._conn
        if conn is None:  # cannot happen: a worker whose child died is retired at once
            raise WorkerCrashedError(f"pool {self.pool!r}: this worker has no process")
        call = (fn, args, kwargs)
        extras = self._take_extras()
        # A job that does not pickle fails here (an extra alone: see _each_payload).
        whole = bool(extras)
        payload = self._batch_payload(call, extras) if whole else _wire.dumps(call)
        if payload is None:
            whole = False
            payload = self._each_payload(call, extras)
        self._in_flight = extras
        self._results, self._next = [], 0
        self._progress[0] = 0
        try:
            self._send(payload, fn)
            del payload
            kind, value, run_ns = self._result(self._timeout_ms, fn)
            if kind == _wire.UNREADABLE and whole:  # not there: each job alone, again
                self._send(self._each_payload(call, extras), fn)
                kind, value, run_ns = self._result(self._timeout_ms, fn)
        except BaseException:
            if self.died is not None:  # this job never ended there: see _settle_unfinished
                self._settle_unfinished(extras, 0)
                self._queue.retire(self._worker)  # this worker leaves after this job
            self._in_flight = []
            raise
        self._learn(run_ns)
        if extras:
            self._finish_extras(extras)
        self._in_flight = []
        self._results = []
        self._jobs += 1 + len(extras)
        if self._setup.max_jobs is not None and self._jobs >= self._setup.max_jobs:
            self._queue.retire(self._worker)  # recycled: a fresh process replaces it
        if self.died is not None:  # a job sent with this one ended the child's life
            self._queue.retire(self._worker)
        if kind == _wire.OK:
            return value
        raise _wire.unpack_error(value)

    def _send(self, payload: bytes, fn: Any) -> None:
        assert self._conn is not None
        try:
            self._conn.send_bytes(payload)
        except OSError:  # the child is gone before it read this job
            self._receive(-1, fn)  # raises WorkerCrashedError once its exit shows

    def _take_extras(self) -> list[tuple[Any, Any, Any, Any, int]]:
        """The queued jobs to send with the next one: as many as fit in BATCH_BUDGET of
        the child's recent run times, this worker's share of what is queued, none while
        jobs run longer than BATCH_BELOW (a long job must not hold back short ones), and
        none with job_timeout (each job's deadline is its own)."""
        setup = self._setup
        if not setup.batching or self._estimate_ns > BATCH_BELOW_NS:
            return []
        most = min(MAX_BATCH - 1, BATCH_BUDGET_NS // max(self._estimate_ns, 1))
        if setup.max_jobs is not None:
            most = min(most, setup.max_jobs - self._jobs - 1)
        queue = self._queue
        if most > 0:
            # This worker's share of what is queued: the others get theirs.
            most = min(most, len(queue) // setup.pool_size)
        if most <= 0:
            return []
        taken: list[tuple[Any, Any, Any, Any, int]] = queue.take(self._worker, most)
        return taken

    def _batch_payload(self, call: tuple[Any, Any, Any], extras: list[Any]) -> bytes | None:
        """The message of a batch, pickled whole (the pickle of a function or of an
        argument shared by many jobs is written once); None if it does not pickle."""
        try:
            return _wire.dumps([call, *[taken[1:4] for taken in extras]])
        except Exception:
            return None

    def _each_payload(self, call: tuple[Any, Any, Any], extras: list[Any]) -> bytes:
        """The message of a batch with each job pickled alone, so that one that does not
        pickle here (or unpickle there) fails alone. Those that do not pickle are ended
        now and leave extras; if the first does not, the extras go back to the queue."""
        dumps = _wire.dumps
        try:
            parts = [dumps(call)]
        except BaseException:
            self._queue.putback(self._worker, [taken[0] for taken in extras])
            extras.clear()
            raise
        for taken in list(extras):
            try:
                parts.append(dumps(taken[1:4]))
            except Exception as exc:
                extras.remove(taken)
                self._queue.finish(self._worker, taken[0], False, exc, taken[4], -1)
        return dumps(parts)

    def _finish_extras(self, extras: list[tuple[Any, Any, Any, Any, int]]) -> None:
        """Receive the results of the jobs sent with the first, in order, and end each
        (a run of successes at once: Queue.finish_results). A job raising SystemExit &
        co, a done callback raising one, or the child dying among them crashes the
        worker (``died``), as each would in work()."""
        queue, worker = self._queue, self._worker
        finish, finish_results = queue.finish, queue.finish_results
        results, at = self._results, self._next
        estimate = self._estimate_ns
        done, count = 0, len(extras)
        try:
            while done < count:
                if at == len(results):
                    try:
                        results, at = self._more_results(extras[done][1]), 0
                    except (WorkerCrashedError, JobTimeoutError):
                        self._settle_unfinished(extras, done)
                        return
                ended, raised = finish_results(worker, extras, done, results, at, _wire.OK)
                if ended:
                    # As _learn, once per run (the last run time of the run stands for it).
                    estimate += (results[at + ended - 1][2] - estimate) // 8
                    done += ended
                    at += ended
                else:  # a failure (or a result finish_results does not take): alone
                    item, _, _, _, wait_ns = extras[done]
                    kind, value, run_ns = results[at]
                    done += 1
                    at += 1
                    estimate += (run_ns - estimate) // 8
                    if kind == _wire.OK:
                        raised = finish(worker, item, True, value, wait_ns, run_ns)
                    else:
                        exc = _wire.unpack_error(value)
                        raised = finish(worker, item, False, exc, wait_ns, run_ns)
                        if not isinstance(exc, Exception) and self.died is None:
                            self.died = exc
                if raised is not None and self.died is None:
                    self.died = raised
        finally:
            self._estimate_ns = estimate

    def _result(self, timeout_ms: int, fn: Any) -> tuple[int, Any, int]:
        """The child's next result, waiting at most timeout_ms (-1: no limit); see
        _receive. UNREADABLE: the message sent did not unpickle there."""
        if self._next == len(self._results):
            self._results, self._next = self._more_results(fn, timeout_ms), 0
        result = self._results[self._next]
        self._next += 1
        return result

    def _more_results(self, fn: Any, timeout_ms: int = -1) -> list[tuple[int, Any, int]]:
        kind, value, run_ns = self._receive(timeout_ms, fn)
        if kind == _wire.RESULTS:
            return value  # type: ignore[no-any-return]
        return [(kind, value, run_ns)]

    def _settle_unfinished(self, extras: list[Any], done: int) -> None:
        """The child died with the results of extras[done:] not back. By what the child
        wrote of the batch in shared memory: a job that ran and returned ends as
        completed if it is fire-and-forget (its result is nobody's), and fails if its
        caller waits for that result or it raised (both lost with the child); the job it
        was running fails; those it never started go back to the head of the queue."""
        queue, worker, progress = self._queue, self._worker, self._progress
        rest = extras[done:]
        if not rest:
            return
        # Jobs of the batch started: the first job (not an extra), then extras[:started].
        started = min(max(progress[0] - 1, done), len(extras)) - done
        for index, taken in enumerate(rest[:started], done + 1):
            item, fn, _, _, wait_ns = taken
            outcome = progress[1 + index]
            if outcome == _wire.OK and not _is_async(item):
                queue.finish(worker, item, True, None, wait_ns)
            elif outcome in (_wire.OK, _wire.FAILED):
                queue.finish(worker, item, False, self._died_after(fn, outcome), wait_ns)
            else:
                queue.finish(worker, item, False, self._died_running(fn), wait_ns)
        rest = rest[started:]
        if rest and not queue.putback(worker, [taken[0] for taken in rest]):
            error = MemoryError("no memory to queue again jobs whose worker process died")
            for taken in rest:
                queue.finish(worker, taken[0], False, error, taken[4])

    def _died_after(self, fn: Any, outcome: int) -> BaseException:
        what = "its result" if outcome == _wire.OK else "the exception it raised"
        return WorkerCrashedError(
            f"pool {self.pool!r}: {_job_name(fn)} ran, but its worker process (pid "
            f"{self.pid}) {_describe_exit(self._process)} before {what} came back"
        )

    def _died_running(self, fn: Any) -> BaseException:
        if isinstance(self.died, JobTimeoutError):
            return self.died
        return WorkerCrashedError(
            f"pool {self.pool!r}: the worker process (pid {self.pid}) running "
            f"{_job_name(fn)} {_describe_exit(self._process)}"
        )

    def _learn(self, run_ns: int) -> None:
        # A moving average of the child's run times (the first one replaces the guess).
        if self._estimate_ns == _UNKNOWN:
            self._estimate_ns = run_ns
        else:
            self._estimate_ns += (run_ns - self._estimate_ns) // 8

    def _receive(self, timeout_ms: int, fn: Any = None) -> tuple[int, Any, int]:
        """The child's next message, waiting at most timeout_ms (-1: no limit).

        Raises:
            WorkerCrashedError: the child died first.
            JobTimeoutError: the time ran out (the child has been killed).
        """
        try:
            data = self._read_message(timeout_ms)
            if data is not None:
                kind, value, run_ns = _wire.loads(data)
                return kind, value, run_ns
        except (EOFError, OSError):
            data = b""
        self._gone = True
        if data is None:
            self.kill()
            self._reap()
            self.died = JobTimeoutError(
                f"pool {self.pool!r}: {_job_name(fn)} ran longer than job_timeout="
                f"{self._setup.job_timeout} s; its worker process (pid {self.pid}) was "
                "killed and is replaced"
            )
            raise self.died
        self._reap()
        self.died = WorkerCrashedError(
            f"pool {self.pool!r}: the worker process (pid {self.pid}) running "
            f"{_job_name(fn)} {_describe_exit(self._process)}"
        )
        raise self.died

    def _read_message(self, timeout_ms: int) -> bytes | None:
        """One message as Connection.send_bytes framed it (None: timed out), read in
        large chunks: a batch's results arrive many to a read.

        Raises:
            EOFError: the child is gone.
        """
        conn = self._conn
        assert conn is not None
        if self._poll is None:  # no poll() here (Windows): the Connection reads it
            found = wait(
                [conn, self._process.sentinel], None if timeout_ms < 0 else timeout_ms / 1000
            )
            if not found:
                return None
            if conn not in found:
                raise EOFError
            return conn.recv_bytes()
        buf = self._buf
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            events = self._poll.poll(timeout_ms)
            if not events:
                return None
            if not any(fd == self._fd for fd, _ in events):
                raise EOFError  # only the sentinel: the child exited
            data = os.read(self._fd, READ_SIZE)
            if not data:
                raise EOFError
            if self._pos:
                del buf[: self._pos]
                self._pos = 0
            buf += data

    def _frame(self) -> bytes | None:
        # A whole frame at the read position, or None: a 4-byte big-endian signed size
        # (-1: an 8-byte unsigned size follows), then the payload.
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        if have < 4:
            return None
        size = _HEADER.unpack_from(buf, pos)[0]
        start = pos + 4
        if size == -1:
            if have < 12:
                return None
            size = _LONG_HEADER.unpack_from(buf, start)[0]
            start += 8
        end = start + size
        if end > len(buf):
            return None
        self._pos = end
        return bytes(buf[start:end])

    def _reap(self, kill: bool = False) -> None:
        """Wait for the child to exit (killing it if asked or if it does not) and close
        the pipes."""
        process = self._process
        if process is not None:
            if kill:
                self.kill()
            process.join(STOP_TIMEOUT if not kill else KILL_WAIT)
            if process.exitcode is None:
                self.kill()
                process.join(KILL_WAIT)
        for end in (self._conn, self._lifeline):
            if end is not None:
                _parent_ends.discard(end)
                end.close()
        self._conn = self._lifeline = None
        self._poll = None
        _live.discard(self)

    def _abandon_in_flight(self) -> None:
        in_flight, self._in_flight = self._in_flight, []
        for taken in in_flight:
            if not _is_async(taken[0]):
                continue  # nobody waits for a fire-and-forget job (as for thread workers)
            error = WorkerCrashedError(
                f"pool {self.pool!r}: this job was sent to worker process {self.pid} when "
                "the process forked; in this child process it never finishes"
            )
            try:
                self._queue.finish(self._worker, taken[0], False, error, taken[4], -1, False)
            except Exception:
                pass  # ended meanwhile, or a done callback raised: nothing else to do

    def __repr__(self) -> str:
        return f"<ProcessUnit {self._worker.name!r} pid={self.pid}>"


def _is_async(item: Any) -> bool:
    # What Queue.take() gave for an async job: its Job (compiled core), or a slot tuple
    # holding it (the pure-Python core's; its Job is at index 3).
    if type(item) is tuple:
        return item[3] is not None
    return type(item).__name__ == "Job"


def _job_name(fn: Any) -> str:
    if fn is None:
        return "its initializer"
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"job {name}"


def _child_main(*args: Any) -> None:
    # Imported in the child only: the parent never needs the child's module.
    from ._process_child import main

    main(*args)


def kill_all() -> None:
    """Kill every worker process still alive (the exit drain ran out of time)."""
    for unit in list(_live):
        unit.kill()


def _after_fork_in_child() -> None:
    # Jobs sent to a worker process with the running one (its thread is gone here, and
    # the process is not this one's child): they never finish here, so they fail now;
    # not in a worker process being started by fork, which never looks at them.
    if not _forking_worker:
        for unit in list(_live):
            unit._abandon_in_flight()
    for end in list(_parent_ends):
        try:
            end.close()
        except OSError:
            pass
    _parent_ends.clear()
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
