"""A bounded pool's queue, running jobs and queue wait over time, from ``oddjob.stats()``.

Each job fetches a page from a slow local HTTP server (every request takes 20-50 ms) on a
pool of 8 workers with at most 200 jobs queued. A producer submits in bursts, so that the
queue fills (the producer then blocks), drains and fills again. A sampler thread reads
``oddjob.stats(pool)`` every 50 ms, and a telemetry handler on ``job.start`` collects each
job's queue wait: the bottom panel shows the p99 of the jobs that started in each 50 ms
window (about a dozen jobs start in one, so it is close to the window's longest wait).
``stats().queue_wait`` is cumulative since the pool started; its p99 is drawn too, dashed,
to show how little it says about what is happening now.

    python examples/stats_over_time.py [PATH] [--seconds 10]

PATH defaults to docs/stats_over_time.png in this repository. Needs matplotlib.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import oddjob
from oddjob import telemetry

POOL, POOL_SIZE, MAX_QUEUE = "stats-demo", 8, 200
REQUEST_SECONDS = (0.020, 0.050)  # how long the server takes to answer, uniformly
BURSTS = (400, 150, 300)  # jobs per burst, in turn, the first after FIRST_BURST seconds
FIRST_BURST, BURST_EVERY = 0.5, 2.5
SAMPLE_EVERY = 0.05
TIMEOUT = 5.0  # the longest any one wait in this script may take
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "stats_over_time.png"

# The server is local: never send its requests through an HTTP proxy from the environment.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SlowHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(random.uniform(*REQUEST_SECONDS))
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line on stderr per request


class SlowServer(ThreadingHTTPServer):
    request_queue_size = 64  # every worker may connect at once


def fetch(url: str) -> None:
    """The job: one request to the slow server."""
    with opener.open(url, timeout=TIMEOUT) as response:
        response.read()


class QueueWaits:
    """A job.start handler keeping the queue waits of the pool's jobs since the last take()."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self._waits: list[float] = []

    def __call__(self, event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
        wait = measurements.get("queue_wait")
        if metadata["pool"] == self.pool and wait is not None:
            with self._lock:
                self._waits.append(wait)

    def take(self) -> list[float]:
        with self._lock:
            waits, self._waits = self._waits, []
        return waits


@dataclass(frozen=True)
class Sample:
    seconds: float  # since sampling began
    queued: int
    running: int
    window_p99: float  # seconds, of the jobs started since the last sample; NaN if none
    cumulative_p99: float  # seconds, stats().queue_wait.p99: every job since the start


def p99(values: list[float]) -> float:
    """The nearest-rank 99th percentile (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def produce(url: str, stop: threading.Event) -> None:
    """Submit bursts of jobs until ``stop``; perform blocks while the queue is full."""
    if stop.wait(FIRST_BURST):
        return
    for size in itertools.cycle(BURSTS):
        began = time.monotonic()
        for _ in range(size):
            if stop.is_set():
                return
            try:
                oddjob.perform(POOL, fetch, url)
            except (oddjob.QueueFullError, oddjob.PoolNotFoundError):
                return  # full for TIMEOUT seconds (block_timeout), or the pool stopped
        if stop.wait(BURST_EVERY - (time.monotonic() - began)):
            return


def sample(seconds: float, waits: QueueWaits) -> list[Sample]:
    """oddjob.stats(POOL) every SAMPLE_EVERY seconds for ``seconds``, at a fixed rate."""
    samples = []
    began = time.monotonic()
    for tick in range(1, round(seconds / SAMPLE_EVERY) + 1):
        time.sleep(max(0.0, began + tick * SAMPLE_EVERY - time.monotonic()))
        stats = oddjob.stats(POOL)
        samples.append(
            Sample(
                time.monotonic() - began,
                stats.queued,
                stats.running,
                p99(waits.take()),
                stats.queue_wait.p99,
            )
        )
    return samples


def run(seconds: float) -> list[Sample]:
    """Start the server, the pool, the producer and the sampler; stop them all again."""
    server = SlowServer(("127.0.0.1", 0), SlowHandler)
    serving = threading.Thread(target=server.serve_forever, args=(0.05,), name="server")
    serving.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    waits = QueueWaits(POOL)
    telemetry.attach("stats-over-time", ["job.start"], waits)
    stop = threading.Event()
    producer = threading.Thread(target=produce, args=(url, stop), name="producer")
    pool = oddjob.Pool(
        POOL, pool_size=POOL_SIZE, max_queue=MAX_QUEUE, on_full="block", block_timeout=TIMEOUT
    )
    try:
        pool.start()
        producer.start()
        # The sampler thread: a pool of one worker, so that its result (or its
        # exception) comes back here, with a deadline.
        with oddjob.Pool(f"{POOL}-sampler", pool_size=1) as sampler:
            return oddjob.await_(sampler.async_perform(sample, seconds, waits), seconds + TIMEOUT)
    finally:
        stop.set()
        if pool.running:  # drop what is queued; a producer blocked in perform wakes up
            pool.stop(cancel_pending=True, timeout=TIMEOUT)
        if producer.is_alive():
            producer.join(TIMEOUT)
        telemetry.detach("stats-over-time")
        server.shutdown()
        server.server_close()
        serving.join(TIMEOUT)


def plot(samples: list[Sample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window
    from matplotlib import pyplot

    t = [s.seconds for s in samples]
    figure, (queued, running, wait) = pyplot.subplots(
        3, 1, sharex=True, figsize=(10, 8), layout="constrained"
    )
    figure.suptitle(
        f"oddjob.stats() every {SAMPLE_EVERY * 1e3:.0f} ms on a pool of {POOL_SIZE} workers, "
        f'max_queue={MAX_QUEUE}, on_full="block"\n'
        f"jobs call an HTTP server answering in {REQUEST_SECONDS[0] * 1e3:.0f}-"
        f"{REQUEST_SECONDS[1] * 1e3:.0f} ms, submitted in bursts of "
        f"{', '.join(map(str, BURSTS))} jobs, one every {BURST_EVERY} s"
    )
    queued.plot(t, [s.queued for s in samples], color="tab:blue")
    queued.axhline(MAX_QUEUE, color="grey", linestyle="--", linewidth=1)
    queued.set_ylabel("queued (jobs)")
    queued.set_ylim(0, MAX_QUEUE * 1.1)
    queued.set_title(
        f"stats().queued; dashed: max_queue = {MAX_QUEUE}, where the producer blocks",
        loc="left",
    )

    running.plot(t, [s.running for s in samples], color="tab:green")
    running.axhline(POOL_SIZE, color="grey", linestyle="--", linewidth=1)
    running.set_ylabel("running (jobs)")
    running.set_ylim(0, POOL_SIZE * 1.2)
    running.set_title(f"stats().running; dashed: pool_size = {POOL_SIZE}", loc="left")

    window = [s.window_p99 * 1e3 for s in samples]
    cumulative = [s.cumulative_p99 * 1e3 for s in samples]
    wait.plot(t, window, color="tab:red", marker=".", markersize=4)
    wait.plot(t, cumulative, color="black", linestyle="--", linewidth=1)
    wait.set_ylabel("queue wait (ms)")
    highest = max([0.0, *cumulative, *(w for w in window if not math.isnan(w))])
    wait.set_ylim(0, max(1.0, highest) * 1.1)
    wait.set_title(
        f"p99 queue wait: solid, of the jobs started in each {SAMPLE_EVERY * 1e3:.0f} ms window "
        "(telemetry job.start; gaps: no job started);\ndashed, stats().queue_wait.p99, "
        "cumulative over every job since the pool started",
        loc="left",
    )
    wait.set_xlabel("time since sampling began (s)")
    for axes in (queued, running, wait):
        axes.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH, help="the PNG")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to sample (10)")
    args = parser.parse_args(argv)
    samples = run(args.seconds)
    plot(samples, args.path)
    waits = [s.window_p99 for s in samples if not math.isnan(s.window_p99)]
    print(
        f"{len(samples)} samples; at most {max(s.queued for s in samples)} jobs queued; "
        f"per-window p99 queue wait up to {max(waits, default=0) * 1e3:.0f} ms; "
        f"wrote {args.path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
