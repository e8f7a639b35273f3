"""Hosting pools in an application: child specs and the Supervisor that starts and
stops a list of them together, in the shape of OddJob's OTP child specs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from types import TracebackType
from typing import Any

from . import _registry
from ._config import PoolOptions
from ._errors import ConfigError
from ._pool import Pool

__all__ = ["Supervisor", "child_spec", "parse_child", "start_link"]

#: Restart strategies a Supervisor accepts. Pools are independent of each other, so
#: only OTP's one_for_one applies: one pool's troubles never restart another.
STRATEGIES = ("one_for_one",)


def parse_child(arg: Any, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Split a pool spec into (name, options).

    ``arg`` is a name, a dict of options with ``"name"``, or a ``(name, options)`` pair;
    ``options`` (keyword options of the call) are merged over it.

    Raises:
        TypeError: no name, a name that is not a str, or a spec of another shape.
    """
    opts: dict[str, Any] = {}
    name: Any = None
    if isinstance(arg, dict):
        opts.update(arg)
        name = opts.pop("name", None)
    elif isinstance(arg, tuple):
        if len(arg) != 2 or not isinstance(arg[1], dict):
            raise TypeError(f"a pool spec tuple must be (name, options_dict), got {arg!r}")
        name, extra = arg
        opts.update(extra)
    elif arg is None or isinstance(arg, str):
        name = arg
    else:
        raise TypeError(
            "a pool spec is a name, a dict of options with 'name', or a (name, options) "
            f"pair, not {type(arg).__name__}"
        )
    if options:
        opts.update(options)
    name = opts.pop("name", name)
    if name is None:
        raise TypeError("a pool spec needs a name")
    if type(name) is not str:
        raise TypeError(f"a pool name must be a str, not {type(name).__name__}")
    return name, opts


def start_link(arg: Any = None, /, **options: Any) -> Pool:
    """Start and register a pool. ``arg`` is a name, a dict of options with "name",
    or a ``(name, options)`` pair; keyword options are merged over it.

    Returns:
        The running Pool.

    Raises:
        PoolAlreadyStartedError: a pool of that name is running.
        TypeError: no name, or a name that is not a str.
        ConfigError: an unknown option or a bad value.
    """
    name, opts = parse_child(arg, options)
    return Pool(name, **opts).start()


def child_spec(arg: Any) -> dict[str, Any]:
    """The child spec of a pool: ``{"id": "<name>_sup", "start": (start_link, (name,
    options)), "type": "supervisor"}``; ``start[0](*start[1])`` starts that pool."""
    name, opts = parse_child(arg)
    PoolOptions.build(**opts)  # a bad spec fails now, not when it is started
    return {"id": f"{name}_sup", "start": (start_link, ((name, opts),)), "type": "supervisor"}


def _is_spec(child: Any) -> bool:
    return isinstance(child, dict) and "start" in child


class Supervisor:
    """Hosts pools for an application: starts them all, stops them all.

    Args:
        children: names, option dicts, ``(name, options)`` pairs or child specs.
        strategy: "one_for_one" (the pools are independent of each other).
        max_restarts, max_seconds: the restart intensity given to each child pool that
            does not set its own (None: the configured values, 3 and 5 by default).

    Raises:
        ValueError: an unknown strategy.
        ConfigError: a bad restart intensity or child option.
        TypeError: a child of another shape.
    """

    def __init__(
        self,
        children: Iterable[Any],
        *,
        strategy: str = "one_for_one",
        max_restarts: int | None = None,
        max_seconds: float | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
        intensity: dict[str, Any] = {
            key: value
            for key, value in (("max_restarts", max_restarts), ("max_seconds", max_seconds))
            if value is not None
        }
        PoolOptions.build(**intensity)
        self.strategy = strategy
        self._starts: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        for child in children:
            if _is_spec(child):
                start = child["start"]
                if not (isinstance(start, tuple) and len(start) == 2 and callable(start[0])):
                    raise TypeError(f"child spec 'start' must be (callable, args), not {start!r}")
                self._starts.append((str(child.get("id", start)), start[0], tuple(start[1])))
                continue
            name, opts = parse_child(child)
            opts = {**intensity, **opts}
            PoolOptions.build(**opts)
            self._starts.append((f"{name}_sup", start_link, ((name, opts),)))
        ids = [child_id for child_id, _, _ in self._starts]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"children={ids!r}: expected each child only once")
        self._pools: list[Pool] = []

    @property
    def children(self) -> list[Pool]:
        """The pools this supervisor started, in start order."""
        return list(self._pools)

    def start(self) -> Supervisor:
        """Start every child in order. If one fails, those already started are stopped
        and the error is raised."""
        if self._pools:
            raise RuntimeError("this Supervisor is already started")
        try:
            for _, start, args in self._starts:
                started = start(*args)
                if isinstance(started, Pool):
                    self._pools.append(started)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, timeout: float | timedelta | None = None) -> None:
        """Stop every child, in reverse start order, each draining its queue.

        Every child is stopped (it accepts no more jobs) before any is waited for, and
        ``timeout`` bounds the wait for all of them together.

        Raises:
            TimeoutError: some children's workers were still running at the deadline
                (the message names them; they are stopped all the same and exit once
                their jobs end).
        """
        pools, self._pools = self._pools, []
        late = _registry.stop_pools(list(reversed(pools)), timeout)
        if late:
            raise TimeoutError(
                f"Supervisor.stop: the workers of {', '.join(repr(p.name) for p in late)} "
                f"were still running after {timeout} seconds; every child is stopped"
            )

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Supervisor {self.strategy} children={[c for c, _, _ in self._starts]}>"
