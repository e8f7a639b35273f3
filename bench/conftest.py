"""Benchmarks run over both cores, like the tests: `pytest bench` (pytest-benchmark)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from oddjob import _backend, _core_py


@pytest.fixture(params=["compiled", "python"])
def core(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    module = _core_py if request.param == "python" else _backend.compiled()
    if module is None:
        pytest.skip("the compiled core is not built")
    with _backend.use(module):
        yield module
