"""Chooses the core: the compiled ``_core`` unless ``ODDJOB_NO_EXTENSIONS`` is set
(or the extension is missing, with a warning naming why); else ``_core_py``.

Pools take ``core`` when they start, so tests can run one suite over both
implementations by pointing ``core`` at either module (see ``use``).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

from . import _core_py

NO_EXTENSIONS = os.environ.get("ODDJOB_NO_EXTENSIONS", "") not in ("", "0")

if TYPE_CHECKING or NO_EXTENSIONS or sys.implementation.name != "cpython":
    core = _core_py
else:
    try:
        core = importlib.import_module("oddjob._core")
    except ModuleNotFoundError:  # a pure-Python install (py3-none-any wheel): by design
        core = _core_py
    except ImportError as exc:  # built, but cannot load here: say why, run the twin
        warnings.warn(
            f"oddjob's compiled core cannot be loaded ({exc}); using the pure-Python core",
            RuntimeWarning,
            stacklevel=2,
        )
        core = _core_py


def compiled() -> ModuleType | None:
    """The compiled core module, or None where it cannot be imported."""
    fresh = "oddjob._core" not in sys.modules
    try:
        from . import _core
    except ImportError:
        return None
    telemetry = sys.modules.get("oddjob.telemetry")
    if fresh and telemetry is not None:
        telemetry._push_to(_core)  # handlers attached before it was imported
    return _core


@contextmanager
def use(module: ModuleType) -> Iterator[ModuleType]:
    """Make pools started inside the block run on ``module`` (a core implementation)."""
    global core
    previous = core
    core = module
    try:
        yield module
    finally:
        core = previous
