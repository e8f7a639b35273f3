"""oddjob.contrib.prometheus with the real prometheus_client: register() on a fresh
CollectorRegistry, known work on a pool, and the exposition text (generate_latest, parsed
back with prometheus_client's own parser) says what stats() says."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

import oddjob
from oddjob import _registry
from oddjob.contrib import prometheus as oddjob_prometheus
from support import WAIT, block_workers, gate

OUTCOMES = ("completed", "failed", "cancelled", "dropped", "expired")
COUNTERS = {
    "oddjob_jobs_submitted_total": "submitted",
    "oddjob_jobs_rejected_total": "rejected",
    "oddjob_job_retries_total": "retried",
    "oddjob_worker_crashes_total": "crashes",
    "oddjob_pool_restarts_total": "restarts",
}
GAUGES = {"oddjob_queued": "queued", "oddjob_running": "running", "oddjob_workers": "workers"}
SUMMARIES = {"oddjob_queue_wait_seconds": "queue_wait", "oddjob_run_time_seconds": "run_time"}


class Scrape:
    """One scrape of a registry, parsed: families by name, and sample values."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.text = generate_latest(registry).decode()
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}
        self.values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in self.families.values():
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.values, f"sample {key} twice in {self.text}"
                self.values[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.values[(name, frozenset(labels.items()))]

    def pools(self) -> set[str]:
        return {dict(labels)["pool"] for name, labels in self.values if name.startswith("oddjob_")}


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    oddjob_prometheus.register(registry)
    try:
        yield registry
    finally:
        oddjob_prometheus.unregister(registry)


def sleep_ms(n: int) -> int:
    time.sleep(0.001)  # longer than a few µs: every job is timed
    return n


def fail(n: int) -> None:
    time.sleep(0.001)
    raise ValueError(n)


def assert_matches_stats(scrape: Scrape, name: str) -> None:
    """Every sample of pool `name` is the field of its stats() (taken once settled)."""
    stats = oddjob.stats(name)
    for outcome in OUTCOMES:
        assert scrape.value("oddjob_jobs_total", pool=name, outcome=outcome) == getattr(
            stats, outcome
        ), outcome
    for metric, field in {**COUNTERS, **GAUGES}.items():
        assert scrape.value(metric, pool=name) == getattr(stats, field), metric
    for metric, field in SUMMARIES.items():
        latency = getattr(stats, field)
        assert scrape.value(f"{metric}_count", pool=name) == latency.count
        assert scrape.value(f"{metric}_sum", pool=name) == pytest.approx(
            latency.mean * latency.count
        )
        for quantile, attr in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")):
            assert scrape.value(metric, pool=name, quantile=quantile) == pytest.approx(
                getattr(latency, attr)
            )


def test_the_exposition_has_every_metric_of_the_pool_with_its_values(registry, make_pool):
    name = make_pool(2, max_queue=2, on_full="raise")
    release = gate()
    blockers = block_workers(name, 2, release)
    cancelled = oddjob.async_perform(name, sleep_ms, -1)
    filler = oddjob.async_perform(name, sleep_ms, -2)
    with pytest.raises(oddjob.QueueFullError):
        oddjob.async_perform(name, sleep_ms, -3)  # the queue (2) is full: rejected
    assert cancelled.cancel()
    release.set()
    oddjob.await_many([*blockers, filler], WAIT)
    # One at a time: every one of them runs, never refused by max_queue.
    results = [oddjob.await_(oddjob.async_perform(name, sleep_ms, i), WAIT) for i in range(5)]
    assert results == list(range(5))
    for i in range(3):
        with pytest.raises(ValueError):
            oddjob.await_(oddjob.async_perform(name, fail, i), WAIT)

    scrape = Scrape(registry)
    assert name in scrape.pools()
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="completed") == 2 + 1 + 5
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="failed") == 3
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="cancelled") == 1
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="dropped") == 0
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="expired") == 0
    assert scrape.value("oddjob_jobs_submitted_total", pool=name) == 2 + 2 + 5 + 3
    assert scrape.value("oddjob_jobs_rejected_total", pool=name) == 1
    assert scrape.value("oddjob_queued", pool=name) == 0
    assert scrape.value("oddjob_running", pool=name) == 0
    assert scrape.value("oddjob_workers", pool=name) == 2
    assert scrape.value("oddjob_worker_crashes_total", pool=name) == 0
    # Every job that ran slept 1 ms or more, so every one was timed.
    assert scrape.value("oddjob_run_time_seconds_count", pool=name) == 2 + 1 + 5 + 3
    # The blockers ran as long as the test took to release them; the 9 others, 1 ms each.
    assert scrape.value("oddjob_run_time_seconds_sum", pool=name) >= 9 * 0.001
    run_time = [
        scrape.value("oddjob_run_time_seconds", pool=name, quantile=q)
        for q in ("0.5", "0.9", "0.99")
    ]
    assert run_time == sorted(run_time)
    assert run_time[0] >= 0.001 * 0.95  # 1 ms, within the histogram's error
    assert scrape.value("oddjob_queue_wait_seconds_count", pool=name) >= 1
    assert_matches_stats(scrape, name)


def test_metric_types_and_help(registry, make_pool):
    make_pool(1)
    families = Scrape(registry).families
    assert families["oddjob_jobs"].type == "counter"
    for metric in COUNTERS:
        assert families[metric.removesuffix("_total")].type == "counter", metric
    for metric in GAUGES:
        assert families[metric].type == "gauge", metric
    for metric in SUMMARIES:
        assert families[metric].type == "summary", metric
    assert all(f.documentation for f in families.values())


def test_the_outcomes_add_up_to_the_jobs_submitted(registry, make_pool):
    name = make_pool(3)
    jobs = oddjob.async_perform_many(name, range(20), sleep_ms)
    failing = oddjob.async_perform_many(name, range(4), fail)
    oddjob.await_many(jobs, WAIT)
    for job in failing:
        with pytest.raises(ValueError):
            oddjob.await_(job, WAIT)
    scrape = Scrape(registry)
    finished = sum(scrape.value("oddjob_jobs_total", pool=name, outcome=o) for o in OUTCOMES)
    in_flight = scrape.value("oddjob_queued", pool=name) + scrape.value("oddjob_running", pool=name)
    assert finished + in_flight == scrape.value("oddjob_jobs_submitted_total", pool=name) == 24


def test_queued_and_running_while_the_pool_is_busy(registry, make_pool):
    name = make_pool(2)
    release = gate()
    blockers = block_workers(name, 2, release)
    queued = [oddjob.async_perform(name, sleep_ms, i) for i in range(3)]
    scrape = Scrape(registry)
    assert scrape.value("oddjob_running", pool=name) == 2
    assert scrape.value("oddjob_queued", pool=name) == 3
    assert scrape.value("oddjob_jobs_submitted_total", pool=name) == 5
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="completed") == 0
    release.set()
    oddjob.await_many(blockers + queued, WAIT)
    scrape = Scrape(registry)
    assert scrape.value("oddjob_running", pool=name) == 0
    assert scrape.value("oddjob_queued", pool=name) == 0
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="completed") == 5


def test_every_running_pool_is_exported_and_a_stopped_one_is_not(registry, make_pool):
    a, b = make_pool(1), make_pool(2)
    oddjob.await_many(oddjob.async_perform_many(a, range(3), sleep_ms), WAIT)
    scrape = Scrape(registry)
    assert {a, b} <= scrape.pools()
    assert scrape.value("oddjob_jobs_total", pool=a, outcome="completed") == 3
    assert scrape.value("oddjob_jobs_total", pool=b, outcome="completed") == 0
    assert scrape.value("oddjob_workers", pool=b) == 2
    oddjob.stop(a, timeout=WAIT)
    scrape = Scrape(registry)
    assert a not in scrape.pools()
    assert b in scrape.pools()


def test_with_no_pool_running_the_families_are_there_without_samples(registry):
    for pool in _registry.running():
        oddjob.stop(pool.name, timeout=WAIT)
    scrape = Scrape(registry)
    assert "oddjob_jobs" in scrape.families
    assert not scrape.pools()


def test_register_again_returns_the_registered_collector(make_pool):
    registry = CollectorRegistry()
    name = make_pool(1)
    first = oddjob_prometheus.register(registry)
    try:
        assert oddjob_prometheus.register(registry) is first
        # One sample per pool and outcome, never two (Scrape checks for duplicates).
        scrape = Scrape(registry)
        assert scrape.value("oddjob_workers", pool=name) == 1
    finally:
        assert oddjob_prometheus.unregister(registry) is True
    assert oddjob_prometheus.unregister(registry) is False
    assert name not in Scrape(registry).pools()
    assert "oddjob_jobs" not in Scrape(registry).families


def test_register_on_a_registry_with_a_clashing_collector_raises(make_pool):
    registry = CollectorRegistry()

    class Clash:
        def describe(self) -> list[GaugeMetricFamily]:
            return [GaugeMetricFamily("oddjob_queued", "someone else's")]

        def collect(self) -> list[GaugeMetricFamily]:
            return self.describe()

    registry.register(Clash())
    with pytest.raises(ValueError, match="oddjob_queued"):
        oddjob_prometheus.register(registry)
    assert oddjob_prometheus.unregister(registry) is False


def test_register_defaults_to_the_global_registry(make_pool):
    name = make_pool(1)
    collector = oddjob_prometheus.register()
    try:
        assert oddjob_prometheus.register(REGISTRY) is collector
        assert Scrape(REGISTRY).value("oddjob_workers", pool=name) == 1
    finally:
        assert oddjob_prometheus.unregister() is True
    assert name not in Scrape(REGISTRY).pools()


def test_a_collector_on_two_registries(make_pool):
    one, two = CollectorRegistry(), CollectorRegistry()
    name = make_pool(1)
    try:
        assert oddjob_prometheus.register(one) is not oddjob_prometheus.register(two)
        assert Scrape(one).value("oddjob_workers", pool=name) == 1
        assert Scrape(two).value("oddjob_workers", pool=name) == 1
    finally:
        oddjob_prometheus.unregister(one)
        oddjob_prometheus.unregister(two)


def test_worker_crashes_and_pool_restarts(registry, make_pool, oddjob_log):
    name = make_pool(2, max_restarts=1, max_seconds=60, restart_on_error=True)

    def boom() -> None:
        raise RuntimeError("boom")

    for _ in range(2):  # 2 crashes > max_restarts=1: one restart of every worker
        with pytest.raises(RuntimeError):
            oddjob.await_(oddjob.async_perform(name, boom), WAIT)
    deadline = time.monotonic() + WAIT
    while True:  # the supervisor restarts the workers after the job has failed
        scrape = Scrape(registry)
        restarted = scrape.value("oddjob_pool_restarts_total", pool=name) == 1
        if restarted and scrape.value("oddjob_workers", pool=name) == 2:
            break
        assert time.monotonic() < deadline, scrape.text
        time.sleep(0.005)
    assert scrape.value("oddjob_worker_crashes_total", pool=name) == 2
    assert scrape.value("oddjob_jobs_total", pool=name, outcome="failed") == 2
