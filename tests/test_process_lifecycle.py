"""Interpreter exit and os.fork(), each tested in a child interpreter with a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from support import CHILD_TIMEOUT, child_env, run_child


def test_exit_drains_every_queued_job(core):
    result = run_child(
        core,
        """
        import os, sys, time, oddjob
        assert oddjob._backend.core.IMPLEMENTATION == os.environ["EXPECT_CORE"]
        def job(i):
            time.sleep(0.002)
            sys.stdout.write(f"ran {i}\\n")  # one write: lines from workers never mix
        oddjob.perform_many("job", range(200), job)
        print("main done", flush=True)
        """,
        EXPECT_CORE=core.IMPLEMENTATION,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "main done"  # the script ended before the queue drained
    assert sorted(int(line.split()[1]) for line in lines[1:]) == list(range(200))


def test_exit_never_hangs_on_a_stuck_job(core):
    started = time.monotonic()
    result = run_child(
        core,
        """
        import threading, oddjob
        oddjob.configure(exit_timeout=0.5)
        oddjob.perform("job", threading.Event().wait)  # never returns
        oddjob.perform("job", print, "queued behind it, on another worker")
        """,
    )
    assert time.monotonic() - started < CHILD_TIMEOUT / 2
    assert result.returncode == 0, result.stderr
    assert "did not drain" in result.stderr


def test_exit_timeout_comes_from_the_environment_too(core):
    result = run_child(
        core,
        """
        import threading, oddjob
        oddjob.perform("job", threading.Event().wait)
        """,
        ODDJOB_EXIT_TIMEOUT="0.3",
    )
    assert result.returncode == 0, result.stderr
    assert "did not drain within 0.3" in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
def test_ctrl_c_during_the_exit_drain_is_not_swallowed(core):
    code = textwrap.dedent(
        """
        import signal, time, oddjob
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignored
        oddjob.configure(exit_timeout=50)
        oddjob.perform("job", time.sleep, 40)
        print("exiting", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(core),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "exiting\n"
        time.sleep(0.5)  # now in the at-exit drain, waiting for the 40 s job
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=CHILD_TIMEOUT / 2)
    finally:
        proc.kill()
        proc.wait(CHILD_TIMEOUT)
    assert time.monotonic() - started < 10
    assert proc.returncode == -signal.SIGINT  # died of the interrupt, as CPython does
    assert "KeyboardInterrupt" in stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_starts_fresh_pools_and_nothing_runs_twice(core):
    result = run_child(
        core,
        """
        import os, sys, threading, warnings, oddjob
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, 3.12+
        ran = []
        gate = threading.Event()
        oddjob.start_link("p", pool_size=1)
        oddjob.perform("p", gate.wait, 30)
        oddjob.perform_many("p", range(5), ran.append)   # queued behind the blocker
        inherited = oddjob.async_perform("p", ran.append, "async")
        pid = os.fork()
        if pid == 0:
            try:
                assert oddjob.whereis("p") is None
                assert inherited.cancelled(), "a job queued in the parent is dead here"
                oddjob.start_link("p", pool_size=2)  # the name is free again
                assert oddjob.await_(oddjob.async_perform("p", abs, -7), 10) == 7
                assert oddjob.await_(oddjob.async_perform("job", abs, -8), 10) == 8
                oddjob.stop("p", timeout=10)
                assert ran == [], ran  # nothing inherited ran in the child
                code = 0
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr, flush=True)
                code = 1
            os._exit(code)
        gate.set()
        assert oddjob.await_(inherited, 10) is None
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "child failed"
        oddjob.stop("p", timeout=10)
        assert ran == [0, 1, 2, 3, 4, "async"], ran  # each ran once, in the parent
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_exit_with_an_executor_still_referenced_prints_nothing(core):
    # Its queue is closed by a weakref callback during interpreter teardown, after module
    # globals may be gone (seen on free-threaded builds, 6 runs in 8): run it a few times.
    for _ in range(3):
        result = run_child(
            core,
            """
            import oddjob
            executor = oddjob.Executor(max_workers=2)
            print(executor.submit(abs, -1).result(10))
            """,
        )
        assert (result.returncode, result.stdout, result.stderr) == (0, "1\n", "")
