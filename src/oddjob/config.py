"""Process-wide defaults for pools.

This holds the built-in defaults and their validation; configure(), environment
variables and the TOML file arrive with supervision (issue 3) on top of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

#: Name of the pool started lazily when first named; False means none.
DEFAULT_POOL = "job"
#: Workers per pool unless configured otherwise (OddJob's default).
POOL_SIZE = 5
#: Crashes tolerated within MAX_SECONDS before the whole worker set is replaced.
MAX_RESTARTS = 3
MAX_SECONDS = 5.0
#: How long interpreter exit waits for a pool to drain its queue before giving up.
EXIT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """The options one pool runs with."""

    pool_size: int = POOL_SIZE
    max_restarts: int = MAX_RESTARTS
    max_seconds: float = MAX_SECONDS

    @classmethod
    def build(cls, base: PoolOptions | None = None, **options: Any) -> PoolOptions:
        """Validate ``options`` over ``base``; unknown keys and bad values raise ConfigError."""
        base = base or cls()
        values: dict[str, Any] = {
            "pool_size": base.pool_size,
            "max_restarts": base.max_restarts,
            "max_seconds": base.max_seconds,
        }
        for key, value in options.items():
            if key not in values:
                raise ConfigError(
                    f"unknown pool option {key!r} (value {value!r}); "
                    f"expected one of {', '.join(sorted(values))}"
                )
            values[key] = _check(key, value)
        return cls(**values)


def _check(key: str, value: Any) -> Any:
    if key == "pool_size":
        if type(value) is not int or value < 1:
            raise ConfigError(f"pool_size={value!r}: expected an int >= 1")
    elif key == "max_restarts":
        if type(value) is not int or value < 0:
            raise ConfigError(f"max_restarts={value!r}: expected an int >= 0")
    elif key == "max_seconds":
        if type(value) not in (int, float) or not value > 0:
            raise ConfigError(f"max_seconds={value!r}: expected a number > 0")
        value = float(value)
    return value


def default_pool() -> str | bool:
    """The name of the default pool (False when there is none)."""
    return DEFAULT_POOL


def options_for(name: str) -> PoolOptions | None:
    """Options of a configured pool (started lazily when named), or None if ``name``
    is not configured."""
    if name == default_pool():
        return PoolOptions()
    return None
