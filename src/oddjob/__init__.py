"""oddjob: named, supervised job pools with a compiled core.

Backpressure for calls to databases and external APIs: fire-and-forget jobs,
async jobs whose results come back, batches. See the README for a tour.
"""

from typing import TYPE_CHECKING

from . import telemetry
from ._api import (
    async_perform,
    async_perform_many,
    await_,
    await_many,
    perform,
    perform_many,
    stop,
    whereis,
    workers,
)
from ._backend import core as _core_impl
from ._config import configure
from ._decorator import perform_this
from ._errors import (
    ConfigError,
    JobExpiredError,
    JobTimeoutError,
    OddJobError,
    PoolAlreadyStartedError,
    PoolBrokenError,
    PoolNotFoundError,
    QueueFullError,
    RemoteError,
    RemoteTraceback,
    WorkerCrashedError,
)
from ._executor import Executor
from ._introspection import PoolState, QueuedJob, pool, pool_id, supervisor, supervisor_id
from ._pool import Pool
from ._retry import Retry
from ._scheduler import (
    TimerRef,
    cancel_timer,
    perform_after,
    perform_at,
    perform_many_after,
    perform_many_at,
    read_timer,
)
from ._stats import Latency, PoolStats, stats
from ._supervision import WorkerInfo, WorkerSupervisor, current_worker
from ._supervisor import Supervisor, child_spec, start_link
from ._version import __version__
from ._waiting import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait

if TYPE_CHECKING:  # the generic Job[T] that async_perform returns (both cores have it)
    from . import aio
    from ._core_py import Job
else:  # the class of the core in use: the compiled one unless ODDJOB_NO_EXTENSIONS
    Job = _core_impl.Job

__all__ = [
    "ALL_COMPLETED",
    "ConfigError",
    "Executor",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Job",
    "JobExpiredError",
    "JobTimeoutError",
    "Latency",
    "OddJobError",
    "Pool",
    "PoolAlreadyStartedError",
    "PoolBrokenError",
    "PoolNotFoundError",
    "PoolState",
    "PoolStats",
    "QueueFullError",
    "QueuedJob",
    "RemoteError",
    "RemoteTraceback",
    "Retry",
    "Supervisor",
    "TimerRef",
    "WorkerCrashedError",
    "WorkerInfo",
    "WorkerSupervisor",
    "__version__",
    "aio",
    "as_completed",
    "async_perform",
    "async_perform_many",
    "await_",
    "await_many",
    "cancel_timer",
    "child_spec",
    "configure",
    "current_worker",
    "perform",
    "perform_after",
    "perform_at",
    "perform_many",
    "perform_many_after",
    "perform_many_at",
    "perform_this",
    "pool",
    "pool_id",
    "read_timer",
    "start_link",
    "stats",
    "stop",
    "supervisor",
    "supervisor_id",
    "telemetry",
    "wait",
    "whereis",
    "workers",
]


def __getattr__(name: str) -> object:
    # oddjob.aio is imported on first use: importing oddjob must not import asyncio.
    if name == "aio":
        import importlib

        return importlib.import_module(".aio", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
