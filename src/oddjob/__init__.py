"""oddjob: named, supervised job pools with a compiled core.

Backpressure for calls to databases and external APIs: fire-and-forget jobs,
async jobs whose results come back, batches. See the README for a tour.
"""

from ._backend import core as _core_impl
from ._version import __version__
from .api import (
    async_perform,
    async_perform_many,
    await_,
    await_many,
    perform,
    perform_many,
    start_link,
    stop,
    whereis,
    workers,
)
from .errors import ConfigError, OddJobError, PoolAlreadyStartedError, PoolNotFoundError
from .pool import Pool

Job = _core_impl.Job

__all__ = [
    "ConfigError",
    "Job",
    "OddJobError",
    "Pool",
    "PoolAlreadyStartedError",
    "PoolNotFoundError",
    "__version__",
    "async_perform",
    "async_perform_many",
    "await_",
    "await_many",
    "perform",
    "perform_many",
    "start_link",
    "stop",
    "whereis",
    "workers",
]
