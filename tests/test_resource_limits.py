"""Failure paths under real resource limits, each in a child interpreter with a timeout:
a thread the OS refuses (at start and for a replacement), and a batch that runs out of
memory. The limit is RLIMIT_AS, the address space: each worker thread is given a 256 MiB
stack, so the limit decides exactly how many more threads the OS will start."""

from __future__ import annotations

import sys

import pytest

from support import run_child

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status: Linux"
)

# Prepended to every child script: a bounded run (SIGALRM ends a hang), one malloc arena
# (so new threads do not reserve 64 MiB arenas of address space each), and `limit(extra)`
# capping the address space at what is mapped now plus `extra` MiB.
PRELUDE = """
import os, signal, sys, threading, resource, mmap, time, logging
signal.alarm(40)
MiB = 1 << 20
STACK = 256 * MiB
threading.stack_size(STACK)
import oddjob
assert oddjob._backend.core.IMPLEMENTATION == os.environ["EXPECT_CORE"]

def mapped():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")

def limit(extra_mib):
    resource.setrlimit(resource.RLIMIT_AS, (mapped() + extra_mib * MiB, resource.RLIM_INFINITY))

def others():
    return [t.name for t in threading.enumerate() if t is not threading.main_thread()]

def say(*parts):
    # One write per line: print() writes its parts one by one, and a worker's log
    # record (a single write) could land between them on a free-threaded build.
    sys.stdout.write(" ".join(map(str, parts)) + "\\n")
"""


def run_limited(core, code: str):
    result = run_child(
        core,
        PRELUDE + code,
        EXPECT_CORE=core.IMPLEMENTATION,
        MALLOC_ARENA_MAX="1",
        # mimalloc (free-threaded builds) reserves 1 GiB of address space up front, which
        # RLIMIT_AS would then never see used: reserve in 8 MiB steps instead.
        MIMALLOC_ARENA_RESERVE="8192",
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout.splitlines()


def test_a_pool_whose_threads_the_os_refuses_fails_start_and_leaves_nothing_running(core):
    lines = run_limited(
        core,
        """
        limit(3 * 256 + 64)  # room for 3 worker stacks, not 16
        try:
            oddjob.start_link("big", pool_size=16)
        except RuntimeError as exc:
            say("refused:", exc)
        else:
            say("started?!")
        deadline = time.monotonic() + 10
        while others() and time.monotonic() < deadline:
            time.sleep(0.01)
        say("left running:", others())
        say("registered:", oddjob.whereis("big"))
        # The name is free and the started threads' stacks are back: a smaller pool starts.
        pool = oddjob.start_link("big", pool_size=2)
        say("then:", oddjob.await_(oddjob.async_perform("big", lambda: "ran"), 5))
        oddjob.stop("big", timeout=5)
        """.replace("\n        ", "\n"),
    )
    assert lines[0].startswith("refused: pool 'big': cannot start worker thread ")
    assert "of 16" in lines[0]
    assert lines[1:] == ["left running: []", "registered: None", "then: ran"]


def test_a_replacement_the_os_refuses_is_retried_until_it_starts(core):
    lines = run_limited(
        core,
        """
        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="log: %(message)s")
        refused = threading.Event()

        class Refusals(logging.Handler):
            def emit(self, record):
                if "cannot start a thread" in record.getMessage():
                    refused.set()

        logging.getLogger("oddjob").addHandler(Refusals())
        pool = oddjob.start_link("db", pool_size=1, restart_on_error=True)
        limit(256 + 128)  # the retrying thread lives on: room for one stack more
        hog = mmap.mmap(-1, 200 * MiB)  # now not even that
        done = threading.Event()
        oddjob.perform("db", lambda: 1 / 0)  # the one worker crashes; no thread to replace it
        oddjob.perform("db", done.set)  # accepted, and must run once a thread can start
        # Not a sleep: on a loaded machine the worker may not even have run the first job.
        say("refused:", refused.wait(15))
        time.sleep(0.1)  # a retry or two more, still refused
        say("ran while refused:", done.is_set())
        hog.close()  # the OS allows a thread again
        say("ran after:", done.wait(15))
        say("workers:", len(oddjob.workers("db")))
        oddjob.stop("db", timeout=5)
        """.replace("\n        ", "\n"),
    )
    shown = "\n".join(lines)
    assert "refused: True" in lines, shown
    assert "ran while refused: False" in lines, shown
    assert "ran after: True" in lines, shown
    assert "workers: 1" in lines, shown
    assert any("cannot start a thread for worker 0" in line for line in lines), shown


@pytest.mark.parametrize("call", ["perform_many", "async_perform_many"])
def test_a_batch_that_runs_out_of_memory_raises_memory_error_and_queues_nothing(core, call):
    # Compiled: room for the batch's own objects, not for a ring twice as large. Pure:
    # far less room than the slots it builds (about 80 bytes an item) need, whatever the
    # allocator (mimalloc on free-threaded builds) holds in reserve.
    room, items = (250, "3 * MiB // 2") if core.IMPLEMENTATION == "compiled" else (100, "6 * MiB")
    lines = run_limited(
        core,
        f"""
        pool = oddjob.start_link("mem", pool_size=1)
        release = threading.Event()
        oddjob.perform("mem", release.wait, 20)  # holds the worker: the batches queue
        oddjob.perform_many("mem", [None] * (3 * MiB), id)  # a ring of 4M slots, 160 MiB
        items = [None] * ({items})
        before = len(pool.queue)
        limit({room})
        try:
            oddjob.{call}("mem", items, id)
        except MemoryError:
            say("MemoryError")
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        say("queued by the batch:", len(pool.queue) - before)
        # Not left locked, not half queued: the pool takes and runs more work.
        job = oddjob.async_perform("mem", lambda: "usable")
        release.set()
        say("then:", oddjob.await_(job, 30))
        oddjob.stop("mem", timeout=30)
        """.replace("\n        ", "\n"),
    )
    assert lines == ["MemoryError", "queued by the batch: 0", "then: usable"]
