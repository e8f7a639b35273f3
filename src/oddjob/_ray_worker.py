"""A Ray worker: a worker thread of the pool whose jobs run as Ray tasks.

The pool's queue, limits, retries, stats and events stay in the submitting process, as
with the other backends; each worker thread runs ``queue.work`` with ``RayUnit.run`` as
its runner, which sends the job to Ray and waits for its result:

    worker thread: queue.work --> unit.run(fn, args, kwargs) --> task.remote(...)
                                  <-- ray.get(ref, timeout=job_timeout) <--

The limit is Ray's own: the pool's slots are a named, detached placement group of
``pool_size`` bundles (``oddjob.pool.<name>``), and every task of the pool asks for one
bundle. Ray starts a task only when a bundle is free, so every program using the same
pool name in the same Ray namespace shares the same ``pool_size`` slots: a second
program's worker threads wait in Ray's queue, not beside the first program's tasks.
The group belongs to the cluster, not to a program: the first pool to start makes it,
the others join it, and it stays until ``remove_slots(name)`` (or the cluster's end),
so that no program's exit takes slots from the others.

    the task raises          --> the job fails with that exception (the Ray traceback
                                 as its __cause__, a RemoteTraceback)
    its worker process dies  --> the job fails with WorkerCrashedError; Ray frees the
                                 bundle; this worker thread goes on (the dead process
                                 was Ray's: no crash of the pool's)
    job_timeout passes       --> the task is cancelled (its process killed) and the job
                                 fails with JobTimeoutError
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import threading
import time
import types
from typing import Any, Final

from ._config import PoolOptions
from ._errors import ConfigError, JobTimeoutError, RemoteTraceback, WorkerCrashedError

#: The Ray namespace oddjob joins when it connects on its own: programs that share it
#: share their pools' slots (named placement groups are per namespace).
NAMESPACE: Final = "oddjob"
#: What one slot holds: a sliver of a CPU, so that bundles fit anywhere (the limit is
#: the number of bundles, not CPUs).
SLOT: Final = {"CPU": 0.001}
#: How long a pool's start waits for its slots to be placed on the cluster.
SLOTS_TIMEOUT: Final = 30.0
#: How long a connect may try the cluster's address before giving up (ray.init itself
#: would wait minutes for an address nobody listens on).
CONNECT_TIMEOUT: Final = 5.0
#: How many Ray remote functions are kept, one per module-level job function.
_REMOTES_KEPT: Final = 256

#: How often a job still running looks whether its pool's slots are still there (they
#: can be removed from another program): without them its task would wait for ever.
SLOTS_CHECK_EVERY: Final = 10.0

_lock = threading.Lock()


def slots_name(pool: str) -> str:
    """The name of the pool's placement group in its Ray namespace."""
    return f"oddjob.pool.{pool}"


def _ray() -> Any:
    _auth_from_file()  # before the first import of ray: it reads RAY_AUTH_MODE then
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "backend='ray' needs Ray, which is not installed: pip install 'oddjob[ray]'"
        ) from exc
    return ray


def check(pool: str, options: PoolOptions) -> None:
    """Refuse, when the pool is made, what this backend cannot do.

    Raises:
        ConfigError: Ray is not installed, or an initializer or finalizer is set (a Ray
            task has no worker of its own to set up).
    """
    for option in ("initializer", "finalizer"):
        if getattr(options, option) is not None:
            raise ConfigError(
                f"pool {pool!r} (backend='ray'): {option} is not supported: jobs run as "
                "Ray tasks, in whichever Ray worker process Ray picks, with no worker "
                "life of their own to set up or tear down"
            )
    _ray()


def _auth_from_file() -> None:
    # Ray 2.60 turns token authentication on for a cluster that ray.init() starts, and
    # writes the token to ~/.ray/auth_token; a driver connecting by explicit address
    # uses it only when RAY_AUTH_MODE=token is set before ray is imported. Setting it
    # costs nothing against a cluster with authentication off.
    if "ray" in sys.modules or "RAY_AUTH_MODE" in os.environ:
        return
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(path):
        os.environ["RAY_AUTH_MODE"] = "token"


def _check_reachable(address: str) -> None:
    # ``host:port`` (or ``ray://host:port``): refuse at once what nobody listens on.
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or another form ray.init resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ConnectionError(
            f"backend='ray': nothing answers at address {address!r} ({exc}); start a "
            "cluster with `ray start --head`, or give address=None to start a local one"
        ) from exc


def connect(address: str | None) -> Any:
    """Ray, connected: as the program connected it already, else to ``address``
    (None: a new local cluster, or the one RAY_ADDRESS names) in oddjob's namespace."""
    ray = _ray()
    with _lock:
        if not ray.is_initialized():
            if address is not None:
                _check_reachable(address)
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=True)
    return ray


def slots(ray: Any, pool: str, size: int) -> Any:
    """The pool's placement group of ``size`` bundles, made if no program made it yet,
    once Ray has placed it.

    Raises:
        ConfigError: the group exists with another number of slots (another program
            started this pool with another pool_size).
        TimeoutError: the cluster has no room for the bundles within SLOTS_TIMEOUT.
    """
    pgs = _placement_groups()
    name = slots_name(pool)
    group = _find(pgs, name)
    if group is None:
        try:
            group = pgs.placement_group(
                [dict(SLOT) for _ in range(size)],
                strategy="SPREAD",
                name=name,
                lifetime="detached",
            )
        except Exception:
            group = _find(pgs, name)  # another program made it first: join that one
            if group is None:
                raise
    if group.bundle_count != size:
        raise ConfigError(
            f"pool {pool!r} (backend='ray'): its slots on the cluster ({name!r}) number "
            f"{group.bundle_count}, made by a program that started it with "
            f"pool_size={group.bundle_count}, not {size}; use the same pool_size "
            "everywhere, or remove_slots() the old ones first"
        )
    if not group.wait(SLOTS_TIMEOUT):
        raise TimeoutError(
            f"pool {pool!r} (backend='ray'): Ray did not place its {size} slots within "
            f"{SLOTS_TIMEOUT} s (no node has room for them?)"
        )
    return group


def _placement_groups() -> Any:
    # The module: ray.util's attribute of that name is its function.
    return importlib.import_module("ray.util.placement_group")


def _find(pgs: Any, name: str) -> Any:
    try:
        return pgs.get_placement_group(name)
    except ValueError:  # none by that name in this namespace
        return None


def remove_slots(pool: str, address: str | None = None) -> bool:
    """Remove the pool's slots from the Ray cluster (if not connected yet: at
    ``address``, else RAY_ADDRESS's, else the one ``ray start`` made here; never a new
    local one): whether there were any. Tasks of the pool still running are killed;
    pools of that name still running anywhere fail their jobs with WorkerCrashedError
    until they are started again (which makes new slots)."""
    if not _ray().is_initialized():
        connect(address or os.environ.get("RAY_ADDRESS") or "auto")
    pgs = _placement_groups()
    group = _find(pgs, slots_name(pool))
    if group is None:
        return False
    pgs.remove_placement_group(group)
    return True


def _plain_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
    return fn(*args, **(kwargs or {}))


def _timed_call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
    # With job_timeout: the task says when it starts (its first value), so that the time
    # spent waiting for a slot (held by another program, maybe) does not count.
    yield None
    yield fn(*args, **(kwargs or {}))


def _by_reference(fn: Any) -> bool:
    # A module-level function that pickles by reference: its remote function can be
    # made once and kept (what it runs is looked up by name on the worker, never a stale
    # copy). Others (closures, lambdas, __main__'s) travel with each job.
    if type(fn) is not types.FunctionType or fn.__closure__ is not None:
        return False
    module = fn.__module__
    if module in (None, "__main__") or "<locals>" in fn.__qualname__:
        return False
    found: Any = sys.modules.get(module)
    for part in fn.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is fn


class RaySetup:
    """What every worker of a Ray pool shares, resolved when the pool starts: the
    connection, the slots, and the task options that put each job in one of them."""

    __slots__ = (
        "_lock",
        "_options",
        "_plain",
        "_remotes",
        "job_timeout",
        "pool",
        "ray",
        "slots",
        "timed",
    )

    def __init__(self, pool: str, options: PoolOptions) -> None:
        check(pool, options)
        self.pool = pool
        self.ray = connect(options.address)
        self.slots = slots(self.ray, pool, options.pool_size)
        self.job_timeout = options.job_timeout
        # id(fn) -> (fn, its remote function with this pool's options): per pool, as the
        # options name the pool's slots.
        self._remotes: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self._options = {
            "num_cpus": SLOT["CPU"],
            # A job runs once, as with every backend: oddjob's own retry option decides.
            "max_retries": 0,
            "retry_exceptions": False,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                self.slots, placement_group_bundle_index=-1
            ),
        }
        # Made here once (Ray exports a function at its first call): the task of every
        # job that travels with its function, and of every job of a pool with
        # job_timeout (see _timed_call).
        self._plain = self.ray.remote(_plain_call).options(**self._options)
        self.timed = self.ray.remote(_timed_call).options(num_returns="streaming", **self._options)

    def task(self, fn: Any) -> tuple[Any, bool]:
        """The remote function to run fn with, and whether it takes fn's own arguments
        (True) or (fn, args, kwargs)."""
        if _by_reference(fn):
            remotes, key = self._remotes, id(fn)
            found = remotes.get(key)
            if found is not None and found[0] is fn:
                return found[1], True
            remote = self.ray.remote(fn).options(**self._options)
            with self._lock:
                if len(remotes) >= _REMOTES_KEPT:
                    remotes.pop(next(iter(remotes)))
                remotes[key] = (fn, remote)  # fn is kept: its id is not reused meanwhile
            return remote, True
        return self._plain, False

    def slots_removed(self) -> bool:
        """Whether the pool's slots were removed from the cluster (remove_slots)."""
        table = _placement_groups().placement_group_table(self.slots)
        return bool(table.get("state") == "REMOVED")


class RayUnit:
    """One worker thread of a Ray pool; ``run`` is the queue's runner."""

    __slots__ = ("_setup", "_worker", "died", "pool", "runner")

    def __init__(self, pool: str, setup: RaySetup, worker: Any) -> None:
        self.pool = pool
        self._setup = setup
        self._worker = worker
        #: Never set: a Ray worker process that dies fails its job, not this worker.
        self.died: BaseException | None = None
        self.runner = self.run

    def start(self) -> BaseException | None:
        return None  # nothing to set up here: Ray's worker processes are Ray's

    def stop(self) -> BaseException | None:
        return None

    def run(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> Any:
        """The queue's runner: ``fn(*args, **kwargs)`` as a Ray task in one of the pool's
        slots; its result, or its exception raised here."""
        setup = self._setup
        ray = setup.ray
        if setup.job_timeout is not None:
            ref = setup.timed.remote(fn, args, kwargs)
        else:
            remote, own_arguments = setup.task(fn)
            if own_arguments:
                ref = remote.remote(*args, **(kwargs or {}))
            else:
                ref = remote.remote(fn, args, kwargs)
        exceptions = ray.exceptions
        try:
            if setup.job_timeout is None:
                return self._get(ref, fn, None)
            self._get(ref, fn, None, stream=True)  # its slot is found: it runs
            return self._get(ref, fn, setup.job_timeout, stream=True)
        except exceptions.GetTimeoutError:
            ray.cancel(ref, force=True)
            raise JobTimeoutError(
                f"pool {self.pool!r}: {_job_name(fn)} ran longer than job_timeout="
                f"{setup.job_timeout} s; its Ray task was cancelled (its worker process "
                "killed)"
            ) from None
        except exceptions.RayTaskError as exc:
            error = _job_exception(exc)  # raised below, outside Ray's exception
        except (
            exceptions.WorkerCrashedError,
            exceptions.NodeDiedError,
            exceptions.ObjectLostError,
            exceptions.TaskCancelledError,
            # Its slots were removed (remove_slots) while it ran or waited for one.
            exceptions.TaskPlacementGroupRemoved,
        ) as exc:
            # The job fails; this worker thread is sound and stays: a Ray worker process
            # is Ray's, not the pool's, so its death is no crash of the pool's (a lost
            # node with many of the pool's jobs must not restart every worker here).
            raise WorkerCrashedError(
                f"pool {self.pool!r}: the Ray worker running {_job_name(fn)} died: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from None
        try:
            raise error
        finally:
            del error  # the traceback holds this frame

    def _get(self, ref: Any, fn: Any, timeout: float | None, stream: bool = False) -> Any:
        """The task's result (stream: the next value of its stream) within timeout
        (None: no limit; GetTimeoutError after it), looking every SLOTS_CHECK_EVERY
        seconds whether the pool's slots still exist."""
        setup = self._setup
        ray = setup.ray
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = SLOTS_CHECK_EVERY
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            if stream:
                ready, _ = ray.wait([ref], timeout=wait, fetch_local=False)
                if ready:
                    return ray.get(next(ref))
            else:
                try:
                    return ray.get(ref, timeout=wait)
                except ray.exceptions.GetTimeoutError:
                    pass
            if deadline is not None and time.monotonic() >= deadline:
                raise ray.exceptions.GetTimeoutError(f"timeout={timeout}")
            if setup.slots_removed():
                ray.cancel(ref, force=True)
                raise WorkerCrashedError(
                    f"pool {self.pool!r}: the pool's slots on the Ray cluster "
                    f"({slots_name(self.pool)!r}) were removed while {_job_name(fn)} "
                    "waited or ran; start the pool again to make new ones"
                )

    def __repr__(self) -> str:
        return f"<RayUnit {self._worker.name!r}>"


def _job_exception(exc: Any) -> BaseException:
    # The job's own exception, as Ray unpickled it, with the remote traceback (Ray's
    # message) as its __cause__; a RemoteError-like stand-in if Ray could not rebuild it.
    cause = getattr(exc, "cause", None)
    text = str(exc)
    if not isinstance(cause, BaseException):
        cause = RuntimeError(text)
    cause.__cause__ = RemoteTraceback(f'\n"""\n{text}\n"""')
    return cause


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no detail"


def _job_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"job {name}"
