"""oddjob's exceptions. Waiting past a deadline raises the builtin ``TimeoutError``."""

__all__ = ["ConfigError", "OddJobError", "PoolAlreadyStartedError", "PoolNotFoundError"]


class OddJobError(Exception):
    """Base class of every error oddjob raises on its own account."""


class PoolNotFoundError(OddJobError, LookupError):
    """A call named a pool that is not running (and is not configured to start lazily)."""


class PoolAlreadyStartedError(OddJobError):
    """``start_link`` (or ``Pool.start``) named a pool that is already running."""


class ConfigError(OddJobError, ValueError):
    """A configuration value is wrong; the message names the key, the value and the expected."""
