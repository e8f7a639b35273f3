"""Calling a rate-limited, sometimes failing HTTP API through one oddjob pool.

A local HTTP server stands in for the external API. It allows QUOTA requests in any window of
PER seconds and answers 429 (Too Many Requests) to any request beyond that; every FAIL_EVERY-th
request it answers 503 (Service Unavailable), a transient failure; and each answer takes it
SERVER_SECONDS. The client makes JOBS calls through one pool of POOL_SIZE workers that uses
all three of oddjob's options for external services:

- ``rate_limit``: at most QUOTA job starts in any window of PER + MARGIN seconds. The server
  counts requests when they arrive, a little after their job started and not all equally
  late; MARGIN (100 ms) absorbs that.
- ``retry``: a job whose call raised TransientError (a 429 or a 503) runs again, up to
  ATTEMPTS runs in all, after backoff delays of 50, 100 and 200 ms at most (full jitter).
  A retry waits without holding a worker, and each run is a start under the rate limit.
- ``max_queue_time``: a call still queued after MAX_QUEUE_TIME seconds is not worth making
  any more (whoever asked has given up): it fails with JobExpiredError and is never sent.

    python examples/external_api.py [--jobs 150]

It prints what the server saw (requests, the most in any window of PER seconds, 429s and
503s) and what the pool did (jobs that succeeded, failed and expired, stats().retried and
stats().expired), and exits with status 1 if the server ever saw more than QUOTA requests in
a window of PER seconds.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import oddjob

POOL, POOL_SIZE, JOBS = "external-api", 10, 150
QUOTA, PER = 50, 1.0  # the API's quota: at most 50 requests in any window of 1 s
MARGIN = 0.1  # seconds added to the pool's window: requests arrive a little after they start
FAIL_EVERY = 7  # every 7th request is answered 503
SERVER_SECONDS = 0.005  # how long the server takes over each answer
ATTEMPTS, BACKOFF, MAX_BACKOFF = 4, 0.05, 1.0
MAX_QUEUE_TIME = 1.5  # seconds: a call queued for longer is dropped, never sent
TIMEOUT = 10.0  # the longest any one wait in this script may take

# The server is local: never send its requests through an HTTP proxy from the environment.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Api:
    """The server's rules and what it saw: the arrival time of every request, the 429s and
    the 503s. Thread-safe: the server answers each request on a thread of its own."""

    def __init__(self, quota: int, per: float, fail_every: int) -> None:
        self.quota, self.per, self.fail_every = quota, per, fail_every
        self._lock = threading.Lock()
        self._window: collections.deque[float] = collections.deque()  # arrivals < per ago
        self.arrivals: list[float] = []
        self.too_many = 0  # answered 429
        self.unavailable = 0  # answered 503

    def answer(self) -> int:
        """The status code for a request arriving now."""
        now = time.monotonic()
        with self._lock:
            self.arrivals.append(now)
            while self._window and self._window[0] <= now - self.per:
                self._window.popleft()
            self._window.append(now)
            if len(self._window) > self.quota:
                self.too_many += 1
                return 429
            if len(self.arrivals) % self.fail_every == 0:
                self.unavailable += 1
                return 503
            return 200

    def busiest_window(self) -> int:
        """The most requests that arrived within any window of ``per`` seconds."""
        with self._lock:
            arrivals = sorted(self.arrivals)
        most, first = 0, 0
        for last, arrived in enumerate(arrivals):
            while arrived - arrivals[first] >= self.per:
                first += 1
            most = max(most, last - first + 1)
        return most


class ApiHandler(BaseHTTPRequestHandler):
    server: ApiServer

    def do_GET(self) -> None:
        status = self.server.api.answer()
        time.sleep(SERVER_SECONDS)
        body = b"ok\n" if status == 200 else b"try again later\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line on stderr per request


class ApiServer(ThreadingHTTPServer):
    request_queue_size = 64  # every worker may connect at once

    def __init__(self, api: Api) -> None:
        super().__init__(("127.0.0.1", 0), ApiHandler)
        self.api = api


@contextmanager
def serving(api: Api) -> Iterator[str]:
    """The API's URL while the block runs, its server answering on a thread."""
    server = ApiServer(api)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="api-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


class TransientError(Exception):
    """The API said "not now" (429 or 503): worth another try after a pause."""


def call(url: str) -> bytes:
    """The job: one request to the API."""
    try:
        with opener.open(url, timeout=TIMEOUT) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        if exc.code in (429, 503):
            raise TransientError(f"HTTP {exc.code} from {url}") from exc
        raise


@dataclass(frozen=True)
class Outcome:
    succeeded: int
    retried_then_succeeded: int  # of those, the jobs that took more than one run
    failed: int  # still failing after ATTEMPTS runs
    expired: int  # never sent: queued for longer than MAX_QUEUE_TIME
    stats: oddjob.PoolStats
    seconds: float


def run(url: str, jobs: int) -> Outcome:
    """Make ``jobs`` calls to ``url`` through one pool, and wait for every one."""
    retry = oddjob.Retry(
        attempts=ATTEMPTS, on=(TransientError,), backoff=BACKOFF, max_backoff=MAX_BACKOFF
    )
    with oddjob.Pool(
        POOL,
        pool_size=POOL_SIZE,
        rate_limit=(QUOTA, PER + MARGIN),
        retry=retry,
        max_queue_time=MAX_QUEUE_TIME,
    ) as pool:
        began = time.monotonic()
        handles = [pool.async_perform(call, url) for _ in range(jobs)]
        succeeded = retried = failed = expired = 0
        for job in oddjob.as_completed(handles, timeout=jobs / QUOTA * PER + TIMEOUT):
            error = job.exception()
            if error is None:
                succeeded += 1
                retried += job.attempts > 1
            elif isinstance(error, oddjob.JobExpiredError):
                expired += 1
            else:
                failed += 1
        seconds = time.monotonic() - began
        stats = pool.stats()
    return Outcome(succeeded, retried, failed, expired, stats, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"calls to make ({JOBS})")
    args = parser.parse_args(argv)
    api = Api(QUOTA, PER, FAIL_EVERY)
    with serving(api) as url:
        outcome = run(url, args.jobs)
    busiest, stats = api.busiest_window(), outcome.stats
    print(
        f"{args.jobs} calls on {POOL_SIZE} workers: rate_limit=({QUOTA}, {PER + MARGIN:g}), "
        f"retry=Retry(attempts={ATTEMPTS}, backoff={BACKOFF:g}), "
        f"max_queue_time={MAX_QUEUE_TIME:g}"
    )
    print(
        f"server: {len(api.arrivals)} requests, at most {busiest} in any {PER:g} s window "
        f"(quota {QUOTA}); {api.too_many} answered 429, {api.unavailable} answered 503"
    )
    print(
        f"pool: {outcome.succeeded} succeeded ({outcome.retried_then_succeeded} after a retry), "
        f"{outcome.failed} failed, {outcome.expired} expired; stats(): retried "
        f"{stats.retried}, expired {stats.expired}"
    )
    print(f"wall time {outcome.seconds:.2f} s")
    if busiest > QUOTA:
        print(f"QUOTA EXCEEDED: {busiest} requests within {PER:g} s, the quota is {QUOTA}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
