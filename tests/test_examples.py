"""The examples run: each, shortened, does what it says and stops everything it started."""

from __future__ import annotations

import importlib.util
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from oddjob import telemetry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A run of examples/external_api.py takes about 2 s; this bounds a hung one.
EXTERNAL_API_TIMEOUT = 60.0


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


def test_external_api_keeps_to_the_quota_and_retries_and_drops_stale_calls(
    core: ModuleType,
) -> None:
    """The example in a child process, on the core under test: it exits 0 (the server
    never saw more than its quota in a window), and its figures add up."""
    script = EXAMPLES / "external_api.py"
    if not script.exists():
        pytest.skip("examples/ is not here (the tests run from an installed wheel)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ODDJOB_")}
    env["ODDJOB_NO_EXTENSIONS"] = "1" if core.IMPLEMENTATION == "python" else "0"
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=EXTERNAL_API_TIMEOUT,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert done.stderr == ""  # no log record: every job's outcome was collected

    server = re.search(
        r"server: (\d+) requests, at most (\d+) in any 1 s window \(quota 50\); "
        r"(\d+) answered 429, (\d+) answered 503",
        out,
    )
    pool = re.search(
        r"pool: (\d+) succeeded \((\d+) after a retry\), (\d+) failed, (\d+) expired; "
        r"stats\(\): retried (\d+), expired (\d+)",
        out,
    )
    assert server and pool, out
    requests, busiest, too_many, unavailable = map(int, server.groups())
    succeeded, after_retry, failed, expired, retried, stats_expired = map(int, pool.groups())
    assert busiest <= 50
    assert too_many == 0  # the pool kept to the quota
    assert unavailable == requests // 7  # every 7th request
    assert succeeded + failed + expired == 150
    # Every 503 was retried but a job's last: each run is one request.
    assert retried == unavailable - failed
    assert requests == succeeded + failed + retried
    assert 0 < after_retry <= succeeded
    # 150 calls and their retries need more than the 2 windows that a call queued for
    # at most max_queue_time (1.5 s) can start in: the calls still queued after it expire.
    assert expired > 0
    assert stats_expired == expired
