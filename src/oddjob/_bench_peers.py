"""The jobs and the peers that ``python -m oddjob bench`` measures (see ``oddjob._bench``).

Every peer writes out, for every mode, the loop that a user of that library would write,
so that the timed code holds nothing but the library's own calls: no adapter layer sits
between the clock and the call being measured. Each method makes a fresh pool, starts
all its threads, times one run and stops the pool again, whatever happens.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import sysconfig
import threading
import time
import tracemalloc
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from types import ModuleType
from typing import Any, ClassVar, Final, TypeVar

import oddjob

__all__ = [
    "GC_OFF_WHILE_TIMING",
    "PRESTART_TIMEOUT",
    "SLEEP_JOB_SECONDS",
    "AsyncioPeer",
    "Blocker",
    "ExecutorPeer",
    "Job",
    "LoopPeer",
    "OddjobExecutorPeer",
    "OddjobPeer",
    "PebblePeer",
    "Peer",
    "Rendezvous",
    "ThreadPoolPeer",
    "exhaust",
    "frozen_heap",
    "make_spin",
    "noop",
    "sleep_job",
    "timed",
    "traced",
]

T = TypeVar("T")

# A job takes the index of its item, so that every mode (batches included) calls it alike.
Job = Callable[[int], object]

# Turning the garbage collector off while timing removes pauses whose length depends on
# what else the process holds, at the cost of figures a little kinder than a real heap's.
GC_OFF_WHILE_TIMING: Final = True
# How long a pool gets to show that all its workers run; a broken peer fails, never hangs.
PRESTART_TIMEOUT: Final = 30.0
# How long a worker blocked for the memory figure waits before giving up on its release.
BLOCK_TIMEOUT: Final = 120.0
# How long the "~1 ms of I/O" job sleeps.
SLEEP_JOB_SECONDS: Final = 0.001


# -- the jobs -----------------------------------------------------------------------------


def noop(_item: int = 0) -> None:
    """The no-op job: what is measured is the pool's own cost per job."""


def sleep_job(_item: int) -> None:
    """About a millisecond of I/O: a sleep, which releases the GIL as a socket read does."""
    time.sleep(SLEEP_JOB_SECONDS)


def make_spin(iterations: int) -> Job:
    """A job of pure-Python CPU work (it holds the GIL): an empty loop of ``iterations``."""

    def spin(_item: int) -> None:
        for _ in range(iterations):
            pass

    return spin


def exhaust(iterable: Iterable[object]) -> None:
    """Consume an iterator of results at C speed, keeping none of them."""
    deque(iterable, maxlen=0)


# -- timing and memory --------------------------------------------------------------------


@contextmanager
def quiet_gc() -> Iterator[None]:
    """A full collection now, then none until the block ends (see GC_OFF_WHILE_TIMING)."""
    gc.collect()
    was_enabled = gc.isenabled()
    if GC_OFF_WHILE_TIMING:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave every object alive now out of the collections to come (gc.freeze), so that
    the gc.collect() before each run costs what the runs leave behind, not the whole heap
    of the process (pytest's, when the harness runs in-process). Not on free-threaded
    CPython, whose collector has had crashes with frozen objects (python/cpython#126312,
    and a segfault in this harness on 3.13.15t in CI): there it only collects."""
    gc.collect()
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@dataclass
class Reading:
    """What a ``timed()`` or ``traced()`` block measured, set as the block ends."""

    value: float = 0.0


@contextmanager
def timed() -> Iterator[Reading]:
    """Seconds the block took (time.perf_counter), with the GC quiet."""
    reading = Reading()
    with quiet_gc():
        start = time.perf_counter()
        try:
            yield reading
        finally:
            reading.value = time.perf_counter() - start


@contextmanager
def traced() -> Iterator[Reading]:
    """Bytes allocated in the block and still alive at its end (tracemalloc)."""
    reading = Reading()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        yield reading
        reading.value = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def time_each(call: Callable[[Job, int], object], job: Job, n: int) -> list[float]:
    """Seconds of each of ``n`` calls of ``call(job, i)``, made one after the other, with
    the GC quiet: the round trips."""
    samples = []
    clock = time.perf_counter
    with quiet_gc():
        for i in range(n):
            start = clock()
            call(job, i)
            samples.append(clock() - start)
    return samples


class Rendezvous:
    """A job that waits until ``parties`` copies of it are running at once.

    Running ``pool_size`` of them to completion before the clock starts proves that every
    worker thread of the pool exists and is idle again: lazily started pools (such as
    ThreadPoolExecutor, which starts a thread per submit until it has enough) are then
    measured at the same point as eager ones.
    """

    def __init__(self, parties: int) -> None:
        self._barrier = threading.Barrier(parties, timeout=PRESTART_TIMEOUT)

    def __call__(self, _item: object = None) -> None:
        self._barrier.wait()


class Blocker:
    """A job that occupies a worker until ``holding()`` ends, so that later jobs queue."""

    def __init__(self, workers: int) -> None:
        self._started = threading.Barrier(workers + 1, timeout=PRESTART_TIMEOUT)
        self._released = threading.Event()

    def __call__(self, _item: object = None) -> None:
        self._started.wait()
        self._released.wait(BLOCK_TIMEOUT)

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Wait until every worker runs a Blocker; release them all when the block ends."""
        try:
            self._started.wait()
            yield
        finally:
            self._released.set()


# -- the peers ----------------------------------------------------------------------------


class Peer(ABC):
    """One library's way of running jobs on a bounded set of threads.

    ``calls`` maps each mode the peer takes part in to the call that is timed there.
    The modes: ``perform`` (fire and forget, one call per job), ``perform_many`` (one
    call for the whole batch), ``async_many`` (a handle per job, then every result),
    ``round_trip`` (one job submitted and awaited at a time), ``queued_bytes`` (memory
    held per job waiting in the queue), ``async_each`` (the headline: a handle per job
    from one call each, then every result).
    """

    key: ClassVar[str]  # the name --peers takes
    name: ClassVar[str]  # the row label
    calls: ClassVar[dict[str, str]]

    def supports(self, mode: str) -> bool:
        return mode in self.calls

    def throughput(self, mode: str, job: Job, n: int, size: int) -> float:
        """Seconds for ``n`` jobs in a throughput mode, from first submit to all done."""
        runs: dict[str, Callable[[Job, int, int], float]] = {
            "perform": self.perform,
            "perform_many": self.perform_many,
            "async_many": self.async_many,
            "async_each": self.async_each,
        }
        return runs[mode](job, n, size)

    @abstractmethod
    def perform(self, job: Job, n: int, size: int) -> float:
        """Submit ``n`` fire-and-forget jobs; done once the pool has drained and stopped."""

    @abstractmethod
    def perform_many(self, job: Job, n: int, size: int) -> float:
        """Submit ``n`` jobs as one batch; done once every job has run."""

    @abstractmethod
    def async_many(self, job: Job, n: int, size: int) -> float:
        """Get a handle for each of ``n`` jobs (batched where the library can), then
        collect every result."""

    def async_each(self, job: Job, n: int, size: int) -> float:
        """Get a handle for each of ``n`` jobs, one call each, then collect every result."""
        raise NotImplementedError(f"{self.name} has no async_each mode")

    @abstractmethod
    def round_trips(self, job: Job, n: int, size: int) -> list[float]:
        """Seconds of each of ``n`` single-job round trips (submit one, await it)."""

    def queued_bytes(self, n: int, size: int) -> float:
        """Bytes held per fire-and-forget job queued behind ``size`` busy workers.

        The job is ``noop`` with no arguments, so that the figure is the pool's own
        bookkeeping: whatever arguments a real job carries cost the same in every pool.
        """
        raise NotImplementedError(f"{self.name} has no queue")


class OddjobPeer(Peer):
    """oddjob's module-level calls on a pool started (and stopped) for each run."""

    key = "oddjob"
    name = "oddjob"
    calls: ClassVar[dict[str, str]] = {
        "perform": "perform",
        "perform_many": "perform_many",
        "async_many": "async_perform_many+await_many",
        "round_trip": "await_(async_perform())",
        "queued_bytes": "perform",
        "async_each": "async_perform+await_many",
    }
    _numbers = itertools.count()

    def __init__(self, **options: Any) -> None:
        self.options = options  # pool options beside pool_size (max_queue, copy_context)

    @contextmanager
    def _pool(self, size: int) -> Iterator[str]:
        name = f"bench-{next(self._numbers)}"
        while oddjob.whereis(name) is not None:  # never take over a pool of the caller's
            name = f"bench-{next(self._numbers)}"
        pool = oddjob.Pool(name, pool_size=size, **self.options).start()
        try:
            rendezvous = Rendezvous(size)
            jobs = [oddjob.async_perform(name, rendezvous) for _ in range(size)]
            oddjob.await_many(jobs, timeout=PRESTART_TIMEOUT)
            yield name
        finally:
            if pool.running:
                pool.stop(cancel_pending=True)

    def perform(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as name:
            perform = oddjob.perform
            with timed() as seconds:
                for i in range(n):
                    perform(name, job, i)
                oddjob.stop(name)
        return seconds.value

    def perform_many(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as name, timed() as seconds:
            oddjob.perform_many(name, range(n), job)
            oddjob.stop(name)
        return seconds.value

    def async_many(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as name, timed() as seconds:
            oddjob.await_many(oddjob.async_perform_many(name, range(n), job), timeout=None)
        return seconds.value

    def async_each(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as name:
            async_perform = oddjob.async_perform
            with timed() as seconds:
                jobs = [async_perform(name, job, i) for i in range(n)]
                oddjob.await_many(jobs, timeout=None)
        return seconds.value

    def round_trips(self, job: Job, n: int, size: int) -> list[float]:
        with self._pool(size) as name:
            async_perform, await_ = oddjob.async_perform, oddjob.await_
            return time_each(lambda job, i: await_(async_perform(name, job, i), None), job, n)

    def queued_bytes(self, n: int, size: int) -> float:
        blocker = Blocker(size)
        with self._pool(size) as name:
            for _ in range(size):
                oddjob.perform(name, blocker)
            with blocker.holding(), traced() as memory:
                perform = oddjob.perform
                for _ in range(n):
                    perform(name, noop)
        return memory.value / n


class ExecutorPeer(Peer):
    """concurrent.futures.ThreadPoolExecutor, the reference every ratio is taken against."""

    key = "tpe"
    name = "ThreadPoolExecutor"
    calls: ClassVar[dict[str, str]] = {
        "perform": "submit",
        "perform_many": "map",
        "async_many": "submit+result",
        "round_trip": "submit().result()",
        "queued_bytes": "submit",
        "async_each": "submit+result",
    }

    def new_executor(self, size: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(size, thread_name_prefix="bench-executor")

    @contextmanager
    def _executor(self, size: int) -> Iterator[ThreadPoolExecutor]:
        executor = self.new_executor(size)
        try:
            rendezvous = Rendezvous(size)
            for future in [executor.submit(rendezvous) for _ in range(size)]:
                future.result(PRESTART_TIMEOUT)
            yield executor
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def perform(self, job: Job, n: int, size: int) -> float:
        with self._executor(size) as executor:
            submit = executor.submit
            with timed() as seconds:
                for i in range(n):
                    submit(job, i)
                executor.shutdown(wait=True)
        return seconds.value

    def perform_many(self, job: Job, n: int, size: int) -> float:
        with self._executor(size) as executor, timed() as seconds:
            exhaust(executor.map(job, range(n)))
        return seconds.value

    def async_many(self, job: Job, n: int, size: int) -> float:
        with self._executor(size) as executor:
            submit = executor.submit
            with timed() as seconds:
                futures = [submit(job, i) for i in range(n)]
                for future in futures:
                    future.result()
        return seconds.value

    def async_each(self, job: Job, n: int, size: int) -> float:
        return self.async_many(job, n, size)  # an executor has no batch call to set apart

    def round_trips(self, job: Job, n: int, size: int) -> list[float]:
        with self._executor(size) as executor:
            submit = executor.submit
            return time_each(lambda job, i: submit(job, i).result(), job, n)

    def queued_bytes(self, n: int, size: int) -> float:
        blocker = Blocker(size)
        with self._executor(size) as executor:
            for _ in range(size):
                executor.submit(blocker)
            with blocker.holding(), traced() as memory:
                submit = executor.submit
                for _ in range(n):
                    submit(noop)
        return memory.value / n


class OddjobExecutorPeer(ExecutorPeer):
    """``oddjob.Executor``, the drop-in ThreadPoolExecutor, measured exactly as that is."""

    key = "executor"
    name = "oddjob.Executor"

    @staticmethod
    def available() -> bool:
        return hasattr(oddjob, "Executor")

    def new_executor(self, size: int) -> ThreadPoolExecutor:
        executor: ThreadPoolExecutor = oddjob.Executor(max_workers=size)  # type: ignore[attr-defined,unused-ignore]
        return executor


class ThreadPoolPeer(Peer):
    """multiprocessing.pool.ThreadPool: the stdlib's older thread pool."""

    key = "threadpool"
    name = "multiprocessing ThreadPool"
    calls: ClassVar[dict[str, str]] = {
        "perform": "apply_async",
        "perform_many": "map",
        "async_many": "apply_async+get",
        "round_trip": "apply_async().get()",
        "queued_bytes": "apply_async",
    }

    @contextmanager
    def _pool(self, size: int) -> Iterator[ThreadPool]:
        pool = ThreadPool(size)
        try:
            rendezvous = Rendezvous(size)
            for result in [pool.apply_async(rendezvous) for _ in range(size)]:
                result.get(PRESTART_TIMEOUT)
            yield pool
        finally:
            pool.terminate()  # after close() and join() this only tidies up
            pool.join()

    def perform(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as pool:
            apply_async = pool.apply_async
            with timed() as seconds:
                for i in range(n):
                    apply_async(job, (i,))
                pool.close()
                pool.join()
        return seconds.value

    def perform_many(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as pool, timed() as seconds:
            pool.map(job, range(n))
        return seconds.value

    def async_many(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as pool:
            apply_async = pool.apply_async
            with timed() as seconds:
                results = [apply_async(job, (i,)) for i in range(n)]
                for result in results:
                    result.get()
        return seconds.value

    def round_trips(self, job: Job, n: int, size: int) -> list[float]:
        with self._pool(size) as pool:
            apply_async = pool.apply_async
            return time_each(lambda job, i: apply_async(job, (i,)).get(), job, n)

    def queued_bytes(self, n: int, size: int) -> float:
        blocker = Blocker(size)
        with self._pool(size) as pool:
            for _ in range(size):
                pool.apply_async(blocker)
            with blocker.holding(), traced() as memory:
                apply_async = pool.apply_async
                for _ in range(n):
                    apply_async(noop)
        return memory.value / n


class Limiter:
    """What a careful asyncio user writes to run at most ``size`` blocking jobs at once:
    ``asyncio.to_thread`` under an ``asyncio.Semaphore(size)``."""

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.Semaphore(size)

    async def run(self, job: Job, item: int) -> object:
        async with self._semaphore:
            return await asyncio.to_thread(job, item)


class AsyncioPeer(Peer):
    """asyncio: ``to_thread`` under a Semaphore, on a fresh event loop for each run.

    The loop's default executor (which ``to_thread`` uses) gets ``size`` threads: the
    stock one has ``min(32, cpu_count + 4)``, which could bound concurrency below the
    Semaphore's limit and would not let the harness start its threads before the clock.
    """

    key = "asyncio"
    name = "asyncio + Semaphore"
    calls: ClassVar[dict[str, str]] = {
        "perform": "TaskGroup.create_task",
        "perform_many": "gather",
        "async_many": "create_task+gather",
        "round_trip": "await",
        "queued_bytes": "TaskGroup.create_task",
    }

    def _run(self, size: int, body: Callable[[Limiter], Awaitable[T]]) -> T:
        async def main() -> T:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(ThreadPoolExecutor(size, thread_name_prefix="bench-asyncio"))
            limiter = Limiter(size)
            rendezvous = Rendezvous(size)
            await asyncio.gather(*[limiter.run(rendezvous, 0) for _ in range(size)])
            return await body(limiter)

        # asyncio.run() ends by shutting the default executor down and joining its threads.
        return asyncio.run(main())

    def perform(self, job: Job, n: int, size: int) -> float:
        async def body(limiter: Limiter) -> float:
            run = limiter.run
            with timed() as seconds:
                async with asyncio.TaskGroup() as group:  # leaving it waits for every task
                    for i in range(n):
                        group.create_task(run(job, i))
            return seconds.value

        return self._run(size, body)

    def perform_many(self, job: Job, n: int, size: int) -> float:
        async def body(limiter: Limiter) -> float:
            run = limiter.run
            with timed() as seconds:
                await asyncio.gather(*[run(job, i) for i in range(n)])
            return seconds.value

        return self._run(size, body)

    def async_many(self, job: Job, n: int, size: int) -> float:
        async def body(limiter: Limiter) -> float:
            run, create_task = limiter.run, asyncio.create_task
            with timed() as seconds:
                tasks = [create_task(run(job, i)) for i in range(n)]
                await asyncio.gather(*tasks)
            return seconds.value

        return self._run(size, body)

    def round_trips(self, job: Job, n: int, size: int) -> list[float]:
        async def body(limiter: Limiter) -> list[float]:
            run, clock = limiter.run, time.perf_counter
            samples = []
            with quiet_gc():
                for i in range(n):
                    start = clock()
                    await run(job, i)
                    samples.append(clock() - start)
            return samples

        return self._run(size, body)

    def queued_bytes(self, n: int, size: int) -> float:
        async def body(limiter: Limiter) -> float:
            blocker = Blocker(size)
            async with asyncio.TaskGroup() as group:
                for _ in range(size):
                    group.create_task(limiter.run(blocker, 0))
                await asyncio.sleep(0)  # each blocker task hands its job to a thread
                with blocker.holding(), traced() as memory:
                    for _ in range(n):
                        group.create_task(limiter.run(noop, 0))
                    await asyncio.sleep(0)  # each new task runs up to the Semaphore and waits
            return memory.value / n

        return self._run(size, body)


class _PebbleMapNoise(logging.Filter):
    """Drops what pebble's map logs when two of its chunks start at once: each marks the
    shared map future running, and concurrent.futures logs the second try at CRITICAL
    (pebble catches the RuntimeError that follows; the map itself is unaffected)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Future %s in unexpected state")


@contextmanager
def _quiet_pebble_map() -> Iterator[None]:
    logger, noise = logging.getLogger("concurrent.futures"), _PebbleMapNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


class PebblePeer(Peer):
    """pebble's ThreadPool (pebble.ThreadPool), when pebble is installed.

    Its ``close()`` + ``join()``, the drain that fire-and-forget runs end with, polls
    every 0.1 s (pebble's ``CONSTS.sleep_unit``): the perform figure includes that wait.
    """

    key = "pebble"
    name = "pebble ThreadPool"
    calls: ClassVar[dict[str, str]] = {
        "perform": "schedule",
        "perform_many": "map",
        "async_many": "schedule+result",
        "round_trip": "schedule().result()",
        "queued_bytes": "schedule",
    }

    def __init__(self, pebble: ModuleType) -> None:
        self._pebble = pebble

    @contextmanager
    def _pool(self, size: int) -> Iterator[Any]:
        pool = self._pebble.ThreadPool(max_workers=size)
        try:
            rendezvous = Rendezvous(size)
            for future in [pool.schedule(rendezvous) for _ in range(size)]:
                future.result(PRESTART_TIMEOUT)
            yield pool
        finally:
            if pool.active:
                pool.stop()
                pool.join()

    def perform(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as pool:
            schedule = pool.schedule
            with timed() as seconds:
                for i in range(n):
                    schedule(job, (i,))
                pool.close()
                pool.join()
        return seconds.value

    def perform_many(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as pool, _quiet_pebble_map(), timed() as seconds:
            exhaust(pool.map(job, range(n)).result())
        return seconds.value

    def async_many(self, job: Job, n: int, size: int) -> float:
        with self._pool(size) as pool:
            schedule = pool.schedule
            with timed() as seconds:
                futures = [schedule(job, (i,)) for i in range(n)]
                for future in futures:
                    future.result()
        return seconds.value

    def round_trips(self, job: Job, n: int, size: int) -> list[float]:
        with self._pool(size) as pool:
            schedule = pool.schedule
            return time_each(lambda job, i: schedule(job, (i,)).result(), job, n)

    def queued_bytes(self, n: int, size: int) -> float:
        blocker = Blocker(size)
        with self._pool(size) as pool:
            for _ in range(size):
                pool.schedule(blocker)
            with blocker.holding(), traced() as memory:
                schedule = pool.schedule
                for _ in range(n):
                    schedule(noop)
        return memory.value / n


class LoopPeer(Peer):
    """The floor: the jobs called one after the other on the calling thread, no pool."""

    key = "loop"
    name = "single-thread loop"
    calls: ClassVar[dict[str, str]] = {
        "perform": "job(i)",
        "perform_many": "map(job, items)",
        "async_many": "[job(i) ...]",
        "round_trip": "job(i)",
    }

    def perform(self, job: Job, n: int, size: int) -> float:
        with timed() as seconds:
            for i in range(n):
                job(i)
        return seconds.value

    def perform_many(self, job: Job, n: int, size: int) -> float:
        with timed() as seconds:
            exhaust(map(job, range(n)))
        return seconds.value

    def async_many(self, job: Job, n: int, size: int) -> float:
        with timed() as seconds:
            results = [job(i) for i in range(n)]
        del results
        return seconds.value

    def round_trips(self, job: Job, n: int, size: int) -> list[float]:
        return time_each(lambda job, i: job(i), job, n)
