"""The examples run: each, shortened, does what it says and stops everything it started."""

from __future__ import annotations

import importlib.util
import re
import struct
import sys
from pathlib import Path
from types import ModuleType

import pytest

from oddjob import telemetry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """examples/<name>.py as a module (examples/ is not a package), in sys.modules for
    the test's length (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # needs the plot extra (matplotlib): CI installs it for the slow run
def test_stats_over_time_draws_its_three_panels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    example = load("stats_over_time", monkeypatch)
    path = tmp_path / "plots" / "stats.png"  # a folder that does not exist yet

    assert example.main(["--seconds", "1", str(path)]) == 0

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1000, 800)
    assert len(data) > 30_000  # three panels of lines and text, not a blank canvas
    out = capsys.readouterr().out
    found = re.search(r"(\d+) samples; at most (\d+) jobs queued", out)
    assert found, out
    samples, most_queued = map(int, found.groups())
    assert samples == 20  # 1 s at one every 50 ms
    # The first burst (400 jobs) fills the queue: 8 run, 200 wait, the producer blocks.
    assert most_queued >= example.MAX_QUEUE // 2
    assert telemetry.handlers() == []
