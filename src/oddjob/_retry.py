"""Retry: how a pool runs a job again after it raised (the pool option ``retry``)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from ._errors import ConfigError

__all__ = ["Retry"]

_EXPECTED = {
    "attempts": "an int >= 1 (the most runs of a job, the first included)",
    "on": "an Exception subclass, or a non-empty tuple (or list) of them",
    "backoff": "a number >= 0 and finite (seconds), or a timedelta",
    "max_backoff": "a number >= 0 and finite (seconds), or a timedelta",
    "jitter": "True or False",
}


@dataclass(frozen=True, slots=True, init=False)
class Retry:
    """A retry policy: a job that raises one of ``on`` runs again, up to ``attempts`` runs.

    After run number ``n`` fails, the job waits ``delay(n)`` seconds (holding no worker)
    and re-enters its pool's queue at the tail. Frozen and validated when made, so a
    policy that exists is a sound one.

    Args:
        attempts: the most runs in all, the first included; an int >= 1 (1: never retry).
        on: the exceptions that are retried: an Exception subclass or a tuple (or list)
            of them; any other exception fails the job at once. Stored as a tuple.
        backoff: seconds before the first retry (a number >= 0 or a timedelta); each
            further retry waits twice as long as the one before.
        max_backoff: the cap on any one wait, seconds (a number >= 0 or a timedelta).
            It need not be >= backoff: it is a cap, so then every wait is max_backoff.
        jitter: wait a uniformly random time between 0 and the scheduled delay ("full
            jitter"), so that jobs failing together do not all retry together.

    Raises:
        ConfigError: a field is out of range or of the wrong type; the message names the
            field, the value and what was expected.
    """

    attempts: int
    on: tuple[type[Exception], ...]
    backoff: float
    max_backoff: float
    jitter: bool

    def __init__(
        self,
        attempts: int = 3,
        on: type[Exception] | tuple[type[Exception], ...] | list[type[Exception]] = (Exception,),
        backoff: float | timedelta = 0.1,
        max_backoff: float | timedelta = 30.0,
        jitter: bool = True,
    ) -> None:
        # type() rather than isinstance() throughout: True as a number of attempts is a
        # mistake, not 1, and no __bool__, __eq__ or __class__ of the value's own is called.
        if type(attempts) is not int or attempts < 1:
            raise _bad("attempts", attempts)
        if type(jitter) is not bool:
            raise _bad("jitter", jitter)
        # Frozen: the generated __setattr__ refuses, so set the slots directly.
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "on", _exceptions(on))
        object.__setattr__(self, "backoff", _seconds("backoff", backoff))
        object.__setattr__(self, "max_backoff", _seconds("max_backoff", max_backoff))
        object.__setattr__(self, "jitter", jitter)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after run number ``attempt`` (1-based) failed, before the next.

        ``min(max_backoff, backoff * 2**(attempt - 1))``, and with ``jitter`` a uniformly
        random time between 0 and that.

        Args:
            attempt: the number of the run that failed, 1 for the first.

        Raises:
            ValueError: ``attempt`` < 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt={attempt!r}: expected an int >= 1 (1 for the first run)")
        try:
            # ldexp scales by a power of two exactly, and raises rather than computing
            # 2**(attempt - 1) as an int the size of attempt when attempt is huge.
            scheduled = math.ldexp(self.backoff, attempt - 1)
        except OverflowError:
            scheduled = math.inf  # beyond any float: the cap applies
        capped = min(self.max_backoff, scheduled)
        return random.uniform(0.0, capped) if self.jitter else capped


def _bad(name: str, value: object) -> ConfigError:
    return ConfigError(f"Retry({name}={value!r}): expected {_EXPECTED[name]}")


def _exceptions(value: object) -> tuple[type[Exception], ...]:
    """``on`` as a tuple of Exception subclasses, or ConfigError naming what is wrong."""
    items = tuple(value) if type(value) is tuple or type(value) is list else (value,)
    if not items:
        raise _bad("on", value)
    classes: list[type[Exception]] = []
    for item in items:
        # type(item), not isinstance(item, type): no __class__ of the value's own is
        # consulted; issubclass of a real class only walks its MRO.
        if not issubclass(type(item), type):
            raise ConfigError(
                f"Retry(on={value!r}): {item!r} is not a class; expected {_EXPECTED['on']}"
            )
        cls = cast(type, item)
        if not issubclass(cls, Exception):
            # KeyboardInterrupt, SystemExit, GeneratorExit: retrying them would keep a
            # process from being interrupted or from exiting.
            raise ConfigError(
                f"Retry(on={value!r}): {cls!r} is not an Exception subclass (a "
                f"BaseException-only class is never retried); expected {_EXPECTED['on']}"
            )
        classes.append(cls)
    return tuple(classes)


def _seconds(name: str, value: object) -> float:
    """A number of seconds >= 0 and finite (an int, a float or a timedelta) as a float."""
    seconds: float
    # "is", not "in (int, float)": a comparison could call an __eq__ of the value's type.
    if type(value) is int or type(value) is float:
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond float range
            raise _bad(name, value) from None
    elif issubclass(type(value), timedelta):
        seconds = cast(timedelta, value).total_seconds()
    else:
        raise _bad(name, value)
    # Finite: a wait of inf would hold the job (and a draining stop()) forever.
    if not 0.0 <= seconds < math.inf:  # False for NaN too
        raise _bad(name, value)
    return seconds
