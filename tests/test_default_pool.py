"""The default pool "job": nothing at import time, started lazily with 5 workers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import oddjob
from support import WAIT, Recorder

SRC = str(Path(oddjob.__file__).resolve().parent.parent)


def run_python(code: str, core) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter that imports this oddjob on the given core."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    env.pop("ODDJOB_CONFIG", None)
    if core.IMPLEMENTATION == "python":
        env["ODDJOB_NO_EXTENSIONS"] = "1"
    else:
        env.pop("ODDJOB_NO_EXTENSIONS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_starts_no_threads_and_configures_no_logging(core):
    proc = run_python(
        """
        import logging
        import threading

        import oddjob
        from oddjob import _backend

        threads = [t.name for t in threading.enumerate()]
        assert threads == ["MainThread"], threads
        assert logging.getLogger().handlers == [], logging.getLogger().handlers
        assert logging.getLogger("oddjob").handlers == []
        assert oddjob.whereis("job") is None
        print(_backend.core.IMPLEMENTATION)
        """,
        core,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == core.IMPLEMENTATION


def test_default_pool_starts_on_first_use_in_a_fresh_interpreter(core):
    proc = run_python(
        """
        import threading

        import oddjob

        assert oddjob.whereis("job") is None
        job = oddjob.async_perform("job", threading.current_thread)
        worker = oddjob.await_(job, timeout=10)
        assert worker.name.startswith("oddjob"), worker.name
        assert worker in oddjob.workers("job")
        print(len(oddjob.workers("job")))
        """,
        core,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "5"


def test_whereis_does_not_start_the_default_pool():
    assert oddjob.whereis("job") is None
    assert oddjob.whereis("job") is None
    assert not [t for t in threading.enumerate() if t.name.startswith("oddjob")]


def test_default_pool_starts_lazily_with_five_workers(core):
    assert oddjob.whereis("job") is None
    ran = Recorder()
    oddjob.perform("job", ran, "first job")
    assert ran.wait_for_count(1) == ["first job"]
    assert isinstance(oddjob.whereis("job"), oddjob.Pool)
    assert len(oddjob.workers("job")) == 5
    job = oddjob.async_perform("job", lambda: "async")
    assert type(job) is core.Job
    assert job.pool == "job"
    assert oddjob.await_(job, timeout=WAIT) == "async"


def test_default_pool_runs_five_jobs_at_once():
    arrived = threading.Barrier(5)
    jobs = [oddjob.async_perform("job", arrived.wait, WAIT) for _ in range(5)]
    assert sorted(oddjob.await_many(jobs, timeout=WAIT)) == [0, 1, 2, 3, 4]


def test_default_pool_can_be_stopped_and_starts_again_on_next_use():
    assert oddjob.await_(oddjob.async_perform("job", lambda: 1), timeout=WAIT) == 1
    oddjob.stop("job")
    assert oddjob.whereis("job") is None
    assert oddjob.await_(oddjob.async_perform("job", lambda: 2), timeout=WAIT) == 2
    assert len(oddjob.workers("job")) == 5
