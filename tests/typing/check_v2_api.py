"""The v2 public API, "Waiting on many jobs" in API.md (as_completed, wait), as a user
types it: checked, never run, by mypy --strict and pyright (strict), as
check_public_api.py is. oddjob.aio has its own file, check_v2_aio.py.

Not a test module: pytest collects ``test_*.py`` only, so it never imports this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import assert_type

import oddjob
from oddjob import Job


def square(x: int) -> int:
    return x * x


def waiting(jobs: list[Job[int]]) -> None:
    assert_type(oddjob.as_completed(jobs), Iterator[Job[int]])
    assert_type(oddjob.as_completed(jobs, timeout=1.0), Iterator[Job[int]])
    for job in oddjob.as_completed(iter(jobs), timeout=timedelta(seconds=1)):
        assert_type(job, Job[int])
        assert_type(job.result(), int)

    done, not_done = oddjob.wait(jobs)
    assert_type(done, set[Job[int]])
    assert_type(not_done, set[Job[int]])
    assert_type(
        oddjob.wait(jobs, timeout=None, return_when=oddjob.FIRST_COMPLETED),
        tuple[set[Job[int]], set[Job[int]]],
    )
    assert_type(oddjob.wait(jobs, 0.5, oddjob.FIRST_EXCEPTION), tuple[set[Job[int]], set[Job[int]]])
    assert_type(
        oddjob.wait(jobs, return_when=oddjob.ALL_COMPLETED), tuple[set[Job[int]], set[Job[int]]]
    )
    oddjob.as_completed([square])  # type: ignore[arg-type]
