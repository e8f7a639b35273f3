"""Prometheus metrics for oddjob's pools (extra ``oddjob[prometheus]``).

    from oddjob.contrib import prometheus as oddjob_prometheus

    oddjob_prometheus.register()        # prometheus_client.REGISTRY, or register(registry)
    prometheus_client.start_http_server(8000)

``register()`` adds a collector that, at each scrape, reads ``stats()`` of every pool
running then (an O(1) snapshot per pool: the queue is never walked) and exports, each
labelled with ``pool`` (the pool's name):

=================================  ========  ===================================================
``oddjob_jobs_total{outcome}``     counter   jobs finished, by how: ``completed`` (returned),
                                             ``failed`` (raised), ``cancelled``, ``dropped``
                                             (owner thread died), ``expired``
``oddjob_jobs_submitted_total``    counter   jobs accepted into the queue
``oddjob_jobs_rejected_total``     counter   jobs refused with ``QueueFullError``
``oddjob_job_retries_total``       counter   job runs that failed and were retried
``oddjob_worker_crashes_total``    counter   workers that crashed (initializer failures too)
``oddjob_pool_restarts_total``     counter   times the whole worker set was restarted
``oddjob_queued``                  gauge     jobs waiting in the queue
``oddjob_running``                 gauge     jobs running now
``oddjob_workers``                 gauge     live workers
``oddjob_queue_wait_seconds``      summary   time from submit to start
``oddjob_run_time_seconds``        summary   time from start to return or raise
=================================  ========  ===================================================

**Outcomes.** Every job accepted into a pool ends in exactly one outcome, so that
``sum by (pool) (oddjob_jobs_total) + oddjob_queued + oddjob_running ==
oddjob_jobs_submitted_total`` once the pool is settled. A rejected job was never accepted
and a retry is not an end (the job ends later in one of the outcomes), so those two are
counters of their own, not outcomes.

**Summaries.** ``_count`` and ``_sum`` cover the jobs the core timed (it times every job
longer than a few microseconds and samples shorter ones; every job while a job telemetry
handler is attached); ``_sum`` is the mean times the count. The ``quantile`` samples
(0.5, 0.9, 0.99) are over the whole life of the pool, not a sliding window, within 5%
relative error.

**Lifetimes.** The values are the pool's since it started: a pool stopped and started
again starts from zero, which Prometheus reads as a counter reset. A pool that is not
running has no samples.

``register()`` again on the same registry returns the collector registered there already
(one set of samples per pool, never two); ``unregister()`` removes it. Only
prometheus_client's public API is used: metric families for custom collectors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .. import _registry
from .._errors import OddJobError

if TYPE_CHECKING:
    from .._stats import Latency, PoolStats

__all__ = ["OddjobCollector", "register", "unregister"]

#: The outcomes of oddjob_jobs_total: PoolStats fields, each a way a job ended.
OUTCOMES = ("completed", "failed", "cancelled", "dropped", "expired")
QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"))

_lock = threading.Lock()
_registered: WeakKeyDictionary[CollectorRegistry, OddjobCollector] = WeakKeyDictionary()


class OddjobCollector(Collector):
    """A prometheus_client collector of every running pool's ``stats()``."""

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (the registry checks names with these)."""
        return iter(_Families().all())

    def collect(self) -> Iterator[Metric]:
        families = _Families()
        for pool in _registry.running():
            try:
                stats = pool.stats()
            except OddJobError:  # stopped since running() listed it
                continue
            families.add(stats)
        return iter(families.all())


def register(registry: CollectorRegistry | None = None) -> OddjobCollector:
    """Register the oddjob collector on ``registry`` (default: ``prometheus_client.REGISTRY``)
    and return it; on a registry that has it already, return that one.

    Raises:
        ValueError: the registry has another collector that exports one of these names
            (prometheus_client's ``DuplicateTimeseries``).
    """
    registry = REGISTRY if registry is None else registry
    with _lock:
        collector = _registered.get(registry)
        if collector is None:
            collector = OddjobCollector()
            registry.register(collector)
            _registered[registry] = collector
        return collector


def unregister(registry: CollectorRegistry | None = None) -> bool:
    """Remove the oddjob collector from ``registry`` (default: ``prometheus_client.REGISTRY``);
    False if it was not registered there."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        collector = _registered.pop(registry, None)
        if collector is None:
            return False
        registry.unregister(collector)
        return True


class _Families:
    """One scrape's metric families, filled pool by pool."""

    def __init__(self) -> None:
        labels = ["pool"]
        self.jobs = CounterMetricFamily(
            "oddjob_jobs",
            "Jobs that finished, by outcome: completed (returned), failed (raised), "
            "cancelled, dropped (owner thread died), expired.",
            labels=["pool", "outcome"],
        )
        self.counters = [
            (
                CounterMetricFamily(
                    "oddjob_jobs_submitted", "Jobs accepted into the queue.", labels=labels
                ),
                "submitted",
            ),
            (
                CounterMetricFamily(
                    "oddjob_jobs_rejected", "Jobs refused with QueueFullError.", labels=labels
                ),
                "rejected",
            ),
            (
                CounterMetricFamily(
                    "oddjob_job_retries", "Job runs that failed and were retried.", labels=labels
                ),
                "retried",
            ),
            (
                CounterMetricFamily(
                    "oddjob_worker_crashes", "Workers that crashed.", labels=labels
                ),
                "crashes",
            ),
            (
                CounterMetricFamily(
                    "oddjob_pool_restarts",
                    "Times the pool's whole worker set was restarted.",
                    labels=labels,
                ),
                "restarts",
            ),
        ]
        self.gauges = [
            (
                GaugeMetricFamily("oddjob_queued", "Jobs waiting in the queue.", labels=labels),
                "queued",
            ),
            (GaugeMetricFamily("oddjob_running", "Jobs running now.", labels=labels), "running"),
            (GaugeMetricFamily("oddjob_workers", "Live workers.", labels=labels), "workers"),
        ]
        self.summaries = [
            (
                SummaryMetricFamily(
                    "oddjob_queue_wait_seconds",
                    "Seconds from submit to start (timed jobs, since the pool started).",
                    labels=labels,
                ),
                "queue_wait",
            ),
            (
                SummaryMetricFamily(
                    "oddjob_run_time_seconds",
                    "Seconds from start to return or raise (timed jobs, since the pool started).",
                    labels=labels,
                ),
                "run_time",
            ),
        ]

    def all(self) -> list[Metric]:
        return [
            self.jobs,
            *(family for family, _ in self.counters),
            *(family for family, _ in self.gauges),
            *(family for family, _ in self.summaries),
        ]

    def add(self, stats: PoolStats) -> None:
        pool = stats.pool
        for outcome in OUTCOMES:
            self.jobs.add_metric([pool, outcome], getattr(stats, outcome))
        for family, field in self.counters:
            family.add_metric([pool], getattr(stats, field))
        for gauge, field in self.gauges:
            gauge.add_metric([pool], getattr(stats, field))
        for summary, field in self.summaries:
            latency: Latency = getattr(stats, field)
            for quantile, name in QUANTILES:
                summary.add_sample(
                    summary.name, {"pool": pool, "quantile": quantile}, getattr(latency, name)
                )
            summary.add_metric([pool], latency.count, latency.mean * latency.count)
