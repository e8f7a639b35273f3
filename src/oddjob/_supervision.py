"""A pool's worker supervisor: it starts the worker threads and replaces them.

    WorkerSupervisor.start() --> pool_size threads, each: initializer, queue.work(worker),
        finalizer (the finalizer runs if the initializer succeeded)
    a job raises an Exception --> the job fails (its Job holds the exception, or it is
        logged); the worker, its thread-locals and its initializer's resources stay
    a worker crashes (a job raised a BaseException that is not an Exception, or any
        exception with restart_on_error, or its initializer raised) --> a fresh thread
        replaces it; more than max_restarts crashes within max_seconds --> every worker
        is retired (it finishes its current job first) and replaced; the queue stays put
    more than max_restarts initializer failures within max_seconds --> the pool is
        broken: queued async jobs fail with PoolBrokenError, and so do later submits
    the OS refuses a thread --> start() fails and leaves nothing running; a replacement
        is retried with backoff until it starts (or the pool no longer needs it)

Replacements start only as the threads they replace exit, so a pool never runs more
than pool_size jobs at once, not even while it restarts. Worker threads hold only a
weak reference to their supervisor (as concurrent.futures' workers do to their pool).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _config, telemetry
from ._config import PoolOptions
from ._errors import WorkerCrashedError

__all__ = ["WorkerInfo", "WorkerSupervisor", "current_worker"]

logger = logging.getLogger("oddjob")

#: First wait before retrying a thread the OS refused, or replacing a worker whose
#: initializer raised; it doubles on each further failure in a row.
RETRY_FIRST = 0.01
#: The longest wait between such retries: long enough not to spin, short enough that a
#: pool recovers within a second of the OS allowing threads again.
RETRY_MAX = 1.0
#: How long a failed start() waits for the workers it did start to leave.
START_FAILURE_JOIN = 10.0


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """The worker running the calling code (see ``current_worker``).

    Attributes:
        pool: the pool's name.
        name: the worker's name (its thread's name).
        index: its place in the pool, 0 to pool_size - 1; a replacement takes the index
            of the worker it replaces.
        jobs_run: jobs this worker has run so far, the one running now included.
    """

    pool: str
    name: str
    index: int
    jobs_run: int


class _Current(threading.local):
    worker: tuple[str, int, Any] | None = None  # (pool, index, core Worker)


_current = _Current()


def current_worker() -> WorkerInfo | None:
    """The ``WorkerInfo`` of the pool worker running the calling code, or None
    outside a pool's worker (the caller's own threads, an Executor's threads)."""
    state = _current.worker
    if state is None:
        return None
    pool, index, worker = state
    return WorkerInfo(pool, worker.name, index, worker.jobs_run)


def _warn(message: str, *args: object) -> None:
    # Where the OS is short of threads or memory, logging may fail too: that must not end
    # the retries that get the pool its workers back.
    try:
        logger.warning(message, *args)
    except Exception:
        pass


class _Crash(NamedTuple):
    exc: BaseException
    in_initializer: bool


def _worker_main(
    supervisor_ref: weakref.ref[WorkerSupervisor],
    queue: Any,
    worker: Any,
    index: int,
    setup: _Setup,
) -> None:
    _current.worker = (queue.name, index, worker)
    try:
        crash = _run(supervisor_ref, queue, worker, index, setup)
    finally:
        _current.worker = None
    supervisor = supervisor_ref()
    if supervisor is not None:
        supervisor._exited(worker, index, crash)


def _run(
    supervisor_ref: weakref.ref[WorkerSupervisor],
    queue: Any,
    worker: Any,
    index: int,
    setup: _Setup,
) -> _Crash | None:
    """One worker's life on its thread: what crashed it, or None if it left normally."""
    metadata = {"pool": queue.name, "worker": worker.name, "index": index}
    unit = setup.unit(queue, worker, index)
    error = unit.start()
    if error is not None:
        logger.error(
            "pool %r: the initializer of worker %r raised; replacing the worker",
            queue.name,
            worker.name,
            exc_info=(type(error), error, error.__traceback__),
        )
        telemetry._emit("worker.crash", {}, {**metadata, "exception": error}, on_worker=True)
        return _Crash(error, True)
    if setup.initializer is not None:
        supervisor = supervisor_ref()
        if supervisor is not None:
            supervisor._initialized()
        del supervisor
    telemetry._emit("worker.start", {}, metadata, on_worker=True)
    crash = None
    try:
        outcome = queue.work(worker, setup.restart_on_error, unit.runner)
    except BaseException as exc:  # the core itself failed (out of memory while idling)
        outcome = (exc, None, False)
    if outcome is not None:
        error, fn, reported = outcome
        if not reported:  # a done callback raised SystemExit & co, or the core failed
            logger.error(
                "pool %r: worker %r crashed%s; replacing it",
                queue.name,
                worker.name,
                "" if fn is None else f" after running {fn!r}",
                exc_info=(type(error), error, error.__traceback__),
            )
        crash = _Crash(error, False)
        del error, fn, outcome  # the traceback holds this frame: break the cycle early
    elif unit.died is not None:  # its process died: the job failed, the worker is gone
        logger.warning("%s; replacing the worker", unit.died)
        crash = _Crash(unit.died, False)
    error = unit.stop()
    if error is not None:
        logger.error(
            "pool %r: the finalizer of worker %r raised",
            queue.name,
            worker.name,
            exc_info=(type(error), error, error.__traceback__),
        )
    del error
    if crash is None:
        telemetry._emit(
            "worker.stop", {"jobs_run": worker.jobs_run}, dict(metadata), on_worker=True
        )
    else:
        telemetry._emit("worker.crash", {}, {**metadata, "exception": crash.exc}, on_worker=True)
    return crash


class _ThreadUnit:
    """What a thread worker is: its jobs run on the worker's own thread, between the
    initializer and the finalizer."""

    __slots__ = ("_setup",)
    runner = None
    died = None

    def __init__(self, setup: _Setup) -> None:
        self._setup = setup

    def start(self) -> BaseException | None:
        """Run the initializer: None, or its exception."""
        setup = self._setup
        if setup.initializer is not None:
            try:
                setup.initializer(*setup.initargs)
            except BaseException as exc:
                return exc
        return None

    def stop(self) -> BaseException | None:
        """Run the finalizer: None, or its exception."""
        if self._setup.finalizer is not None:
            try:
                self._setup.finalizer()
            except BaseException as exc:
                return exc
        return None


class _Setup:
    """What every worker of a pool runs around its jobs, resolved once at start."""

    __slots__ = (
        "finalizer",
        "initargs",
        "initializer",
        "processes",
        "ray",
        "restart_on_error",
    )

    def __init__(self, pool: str, options: PoolOptions) -> None:
        self.initializer = _config.resolve_callable(options.initializer, "initializer")
        self.initargs = options.initargs
        self.finalizer = _config.resolve_callable(options.finalizer, "finalizer")
        self.restart_on_error = options.restart_on_error
        self.processes = self.ray = None
        if options.backend == "processes":
            from ._process_worker import ProcessSetup

            self.processes = ProcessSetup(pool, options)
        elif options.backend == "ray":
            from ._ray_worker import RaySetup

            self.ray = RaySetup(pool, options)

    def unit(self, queue: Any, worker: Any, index: int) -> Any:
        """What the worker is: a thread, a thread driving a child process, or a thread
        sending its jobs to Ray."""
        if self.processes is not None:
            from ._process_worker import ProcessUnit

            return ProcessUnit(queue.name, self.processes, queue, worker, index)
        if self.ray is not None:
            from ._ray_worker import RayUnit

            return RayUnit(queue.name, self.ray, worker)
        return _ThreadUnit(self)


class WorkerSupervisor:
    """Supervises the worker threads of one pool (``oddjob.supervisor(name)``).

    Attributes:
        id: ``"<pool>_pool_sup"``.
        pool: the pool's name.
        options: the pool's options (size, restart intensity, setup and teardown).
        restarts: how many times the whole worker set was restarted.
        crashes: how many workers crashed in all (initializer failures included).
        broken: the initializer's exception once the pool is broken, else None.

    Raises:
        ConfigError: the initializer or finalizer is an import string that cannot be
            imported.
    """

    def __init__(self, pool: str, queue: Any, core: Any, options: PoolOptions) -> None:
        self.id = f"{pool}_pool_sup"
        self.pool = pool
        self.options = options
        self.restarts = 0
        self.crashes = 0
        self.broken: BaseException | None = None
        self._queue = queue
        self._core = core
        self._setup = _Setup(pool, options)
        self._lock = threading.Lock()
        # Notified when the pool stops or breaks: cuts short a wait before a retry.
        self._changed = threading.Condition(self._lock)
        self._threads: dict[Any, threading.Thread] = {}  # Worker -> its thread
        # Threads of workers that have left, still starting their replacement.
        self._leaving: set[threading.Thread] = set()
        self._recent: deque[float] = deque()  # monotonic times of crashes in the window
        self._init_failures: deque[float] = deque()  # ... and of initializer failures
        self._failing_inits = 0  # initializer failures since one last succeeded
        self._spawned = 0

    def start(self) -> None:
        """Start pool_size workers.

        Raises:
            RuntimeError: the OS refused a thread; the workers already started have left.
        """
        size = self.options.pool_size
        with self._lock:
            try:
                for index in range(size):
                    self._spawn_locked(index)
                return
            except (RuntimeError, MemoryError) as exc:
                error = exc
                started = len(self._threads)
        # Leave nothing running: those started find the queue closed and empty.
        self._queue.close(True)
        try:
            self.join(time.monotonic() + START_FAILURE_JOIN)
        except TimeoutError:
            logger.warning(
                "pool %r: workers started before a thread was refused did not leave within %s s",
                self.pool,
                START_FAILURE_JOIN,
            )
        raise RuntimeError(
            f"pool {self.pool!r}: cannot start worker thread {started + 1} of {size}: {error}"
        ) from error

    def stopping(self) -> None:
        """The pool is stopping: cut short any wait before retrying a replacement."""
        with self._changed:
            self._changed.notify_all()

    def _spawn_locked(self, index: int) -> None:
        worker = self._core.Worker(f"oddjob-{self.pool}-{self._spawned}")
        self._spawned += 1
        thread = threading.Thread(
            target=_worker_main,
            args=(weakref.ref(self), self._queue, worker, index, self._setup),
            name=worker.name,
            daemon=True,  # interpreter exit drains pools itself, within a bound
        )
        worker.thread = thread
        self._threads[worker] = thread
        try:
            thread.start()
        except BaseException:
            del self._threads[worker]
            raise

    def _needed(self) -> bool:
        # A closed queue still needs workers while it drains.
        return not self._queue.closed or len(self._queue) > 0

    def _initialized(self) -> None:
        with self._lock:
            self._failing_inits = 0

    def _exited(self, worker: Any, index: int, crash: _Crash | None) -> None:
        """Called on a worker's thread as it leaves: replace it if the pool needs it."""
        restart_all = broken = False
        retiring: list[Any] = []  # the other workers, when all restart
        delay = 0.0
        crashes = 0  # the count at a restart of all, for its telemetry event
        with self._lock:
            thread = self._threads.pop(worker, None)
            if thread is not None:
                self._leaving.add(thread)
            if crash is not None:
                self.crashes += 1
                if crash.in_initializer:
                    self._failing_inits += 1
                    delay = min(RETRY_FIRST * 2 ** (self._failing_inits - 1), RETRY_MAX)
                    broken = self.broken is None and self._count_locked(self._init_failures)
                if broken:
                    self.broken = crash.exc
                else:
                    restart_all = self._count_locked(self._recent)
            if restart_all:
                self.restarts += 1
                crashes = self.crashes
                retiring = list(self._threads)
            replace = not broken and (crash is not None or worker.retired)
        try:
            if broken:
                self._break(crash.exc)  # type: ignore[union-attr]
            if restart_all:
                logger.warning(
                    "pool %r: more than %d crashes within %s seconds; restarting all its workers",
                    self.pool,
                    self.options.max_restarts,
                    self.options.max_seconds,
                )
                for other in retiring:
                    # Each finishes its current job, exits, and _exited starts its successor.
                    self._queue.retire(other)
                telemetry._emit(
                    "pool.restart", {"crashes": crashes}, {"pool": self.pool}, on_worker=True
                )
            if replace:
                self._replace(index, delay)
        finally:
            with self._lock:
                self._leaving.discard(thread)

    def _replace(self, index: int, delay: float) -> None:
        """Start the worker at ``index`` again, after ``delay``; a thread the OS refuses
        is retried with backoff while the pool still needs the worker."""
        refused = 0
        with self._changed:
            while True:
                if delay > 0:
                    self._changed.wait(delay)  # stopping() or breaking cuts it short
                if not self._needed() or self.broken is not None:
                    return
                try:
                    self._spawn_locked(index)
                except (RuntimeError, MemoryError) as exc:
                    refused += 1
                    delay = min(RETRY_FIRST * 2 ** (refused - 1), RETRY_MAX)
                    if refused == 1 or (delay == RETRY_MAX and refused % 60 == 0):
                        _warn(
                            "pool %r: cannot start a thread for worker %d (%s); retrying",
                            self.pool,
                            index,
                            exc,
                        )
                    continue
                if refused:
                    _warn("pool %r: worker %d started after %d refusals", self.pool, index, refused)
                return

    def _break(self, exc: BaseException) -> None:
        logger.error(
            "pool %r is broken: the initializer failed more than %d times within %s seconds; "
            "queued async jobs fail with PoolBrokenError, and so will new jobs until the "
            "pool is stopped and started again",
            self.pool,
            self.options.max_restarts,
            self.options.max_seconds,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        dropped = self._queue.close(False, exc)
        if dropped:  # fire-and-forget ones have nobody to tell: say how many there were
            logger.error("pool %r is broken: %d queued jobs dropped", self.pool, dropped)
        with self._changed:
            self._changed.notify_all()
        telemetry._emit("pool.broken", {}, {"pool": self.pool, "exception": exc}, on_worker=True)

    def _count_locked(self, window: deque[float]) -> bool:
        """Record a crash in ``window``; True when it holds more than max_restarts."""
        now = time.monotonic()
        window.append(now)
        while window and now - window[0] > self.options.max_seconds:
            window.popleft()
        if len(window) > self.options.max_restarts:
            window.clear()
            return True
        return False

    def threads(self) -> list[threading.Thread]:
        """The live worker threads, oldest first."""
        with self._lock:
            return [t for t in self._threads.values() if t.is_alive()]

    def live_workers(self) -> int:
        """How many workers have started and not yet left: O(1), without the lock."""
        return len(self._threads)

    def workers(self) -> list[Any]:
        """The core Worker objects of the live threads (they say whether they are busy)."""
        with self._lock:
            return [w for w, t in self._threads.items() if t.is_alive()]

    def join(self, deadline: float | None) -> None:
        """Wait until every worker thread has exited (replacements included).

        Raises:
            TimeoutError: some are still running at ``deadline`` (a monotonic time).
        """
        current = threading.current_thread()
        if deadline is not None and deadline - time.monotonic() >= threading.TIMEOUT_MAX:
            deadline = None  # beyond what the platform can wait: forever
        while True:
            with self._lock:
                threads = [*self._threads.values(), *self._leaving]
            threads = [t for t in threads if t is not current and t.is_alive()]
            if not threads:
                return
            for thread in threads:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"pool {self.pool!r}: {len(threads)} workers still running")
                thread.join(left)

    def forget_threads(self) -> None:
        """After fork, in the child: the workers did not survive. Their running async
        jobs fail with WorkerCrashedError, so that nothing in the child waits for them."""
        self._lock = threading.Lock()
        for worker in list(self._threads):
            self._queue.abandon(
                worker,
                WorkerCrashedError(
                    f"pool {self.pool!r}: this job was running on worker {worker.name!r} "
                    "when the process forked; worker threads do not survive a fork, so in "
                    "this child process it never finishes"
                ),
            )
        self._threads.clear()
        self._leaving.clear()

    def __repr__(self) -> str:
        return (
            f"<WorkerSupervisor {self.id!r} workers={len(self._threads)} "
            f"crashes={self.crashes} restarts={self.restarts}>"
        )
