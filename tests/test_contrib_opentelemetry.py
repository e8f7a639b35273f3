"""oddjob.contrib.opentelemetry with the real OpenTelemetry SDK (no mocks): one span per
job, a child of the span current at submit, current while the job runs, with the pool
and queue wait as attributes and ERROR status on a failure; uninstrument stops it.

Spans are exported by a SimpleSpanProcessor into an InMemorySpanExporter, on the worker,
when the span ends. A span ends before the job's result is published, so an awaited
job's span is there once await_ returns; a fire-and-forget job's is waited for."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import oddjob
from oddjob import aio, telemetry
from oddjob.contrib import opentelemetry as oddjob_otel
from support import WAIT, block_workers, gate


class Tracing:
    """A TracerProvider of its own (the global one is never set), exporting to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("oddjob tests")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def job_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name.startswith("oddjob ")]

    def wait_job_spans(self, n: int, timeout: float = WAIT) -> list[ReadableSpan]:
        """The job spans, once there are at least n (bounded)."""
        deadline = time.monotonic() + timeout
        while len(found := self.job_spans()) < n and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(found) >= n, f"expected {n} job spans within {timeout}s, got {found!r}"
        return found

    def named(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.spans() if s.name == name]
        return span


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    t = Tracing()
    oddjob_otel.instrument(t.provider)
    try:
        yield t
    finally:
        oddjob_otel.uninstrument()
        t.provider.shutdown()


def attr(span: ReadableSpan, key: str) -> Any:
    assert span.attributes is not None, span
    return span.attributes[key]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def double(n: int) -> int:
    return 2 * n


def fail(message: str) -> None:
    raise ValueError(message)


def current_span_id() -> int:
    return trace.get_current_span().get_span_context().span_id


def assert_children_of(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> None:
    for span in spans:
        assert span.parent is not None, span
        assert span.parent.span_id == parent.context.span_id
        assert span.context.trace_id == parent.context.trace_id


# -- one span per job, a child of the span current at submit --------------------------


def test_an_async_jobs_span_is_a_child_of_the_span_current_at_submit(tracing, make_pool):
    name = make_pool(1)
    with tracing.tracer.start_as_current_span("request"):
        job = oddjob.async_perform(name, double, 21)
    assert oddjob.await_(job, WAIT) == 42
    # Ended on the worker before the result was published: no wait needed.
    (span,) = tracing.job_spans()
    assert_children_of([span], tracing.named("request"))
    assert span.name == f"oddjob {double.__qualname__}"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert attr(span, "oddjob.pool") == name
    assert attr(span, "code.function") == "double"
    assert attr(span, "code.namespace") == __name__
    queue_wait = attr(span, "oddjob.queue_wait")
    assert isinstance(queue_wait, float) and 0 <= queue_wait < WAIT
    assert span.events == ()


def test_a_fire_and_forget_jobs_span_is_a_child_of_the_span_current_at_submit(tracing, make_pool):
    name = make_pool(2)
    with tracing.tracer.start_as_current_span("request"):
        oddjob.perform(name, double, 1)
    (span,) = tracing.wait_job_spans(1)
    assert_children_of([span], tracing.named("request"))
    assert attr(span, "oddjob.pool") == name


def test_a_job_submitted_outside_any_span_starts_a_trace(tracing, make_pool):
    name = make_pool(1)
    assert oddjob.await_(oddjob.async_perform(name, double, 1), WAIT) == 2
    (span,) = tracing.job_spans()
    assert span.parent is None


def test_queue_wait_is_the_time_the_job_waited_in_the_queue(tracing, make_pool):
    name = make_pool(1)
    release = gate()
    blockers = block_workers(name, 1, release)
    queued_at = time.monotonic()
    job = oddjob.async_perform(name, double, 1)
    time.sleep(0.1)
    release.set()
    assert oddjob.await_(job, WAIT) == 2
    waited = time.monotonic() - queued_at
    oddjob.await_many(blockers, WAIT)
    (span,) = [s for s in tracing.wait_job_spans(2) if attr(s, "code.function") == "double"]
    queue_wait = attr(span, "oddjob.queue_wait")
    assert 0.1 <= queue_wait <= waited


def test_the_span_covers_the_run_and_is_the_current_span_inside_the_job(tracing, make_pool):
    name = make_pool(1)

    def slow() -> int:
        time.sleep(0.02)
        return current_span_id()

    with tracing.tracer.start_as_current_span("request"):
        job = oddjob.async_perform(name, slow)
    inside = oddjob.await_(job, WAIT)
    (span,) = tracing.job_spans()
    assert inside == span.context.span_id
    assert span.name == f"oddjob {slow.__qualname__}"
    assert span.name.endswith(".<locals>.slow")
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time >= 20_000_000  # ns


def test_a_span_made_inside_the_job_is_a_child_of_the_jobs_span(tracing, make_pool):
    name = make_pool(1)

    def work() -> str:
        with tracing.tracer.start_as_current_span("query"):
            return "done"

    with tracing.tracer.start_as_current_span("request"):
        job = oddjob.async_perform(name, work)
    assert oddjob.await_(job, WAIT) == "done"
    (span,) = tracing.job_spans()
    assert_children_of([span], tracing.named("request"))
    assert_children_of([tracing.named("query")], span)


def test_a_job_submitted_from_a_job_is_a_child_of_that_jobs_span(tracing, make_pool):
    outer_pool, inner_pool = make_pool(1), make_pool(1)

    def outer() -> int:
        return oddjob.await_(oddjob.async_perform(inner_pool, double, 5), WAIT)

    with tracing.tracer.start_as_current_span("request"):
        job = oddjob.async_perform(outer_pool, outer)
    assert oddjob.await_(job, WAIT) == 10
    spans = tracing.job_spans()
    (outer_span,) = [s for s in spans if attr(s, "oddjob.pool") == outer_pool]
    (inner_span,) = [s for s in spans if attr(s, "oddjob.pool") == inner_pool]
    assert_children_of([outer_span], tracing.named("request"))
    assert_children_of([inner_span], outer_span)


def test_the_submitters_context_is_unchanged(tracing, make_pool):
    name = make_pool(1)
    with tracing.tracer.start_as_current_span("request") as request:
        job = oddjob.async_perform(name, double, 1)
        oddjob.await_(job, WAIT)
        assert trace.get_current_span() is request
    assert trace.get_current_span() is trace.INVALID_SPAN


# -- failures ----------------------------------------------------------------------------


def test_a_failing_jobs_span_has_error_status_and_an_exception_event(tracing, make_pool):
    name = make_pool(1)
    with tracing.tracer.start_as_current_span("request"):
        job = oddjob.async_perform(name, fail, "no such row")
    with pytest.raises(ValueError, match="no such row"):
        oddjob.await_(job, WAIT)
    (span,) = tracing.job_spans()
    assert_children_of([span], tracing.named("request"))
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: no such row"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "no such row"
    # The job's own traceback (the SDK is given it: a handler handles no exception).
    stacktrace = str(event.attributes["exception.stacktrace"])
    assert "in fail" in stacktrace and "ValueError: no such row" in stacktrace


def test_a_failing_fire_and_forget_jobs_span_has_error_status(tracing, make_pool, oddjob_log):
    name = make_pool(1)
    oddjob.perform(name, fail, "lost")
    (span,) = tracing.wait_job_spans(1)
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    # The failure is still logged, as without tracing.
    oddjob_log.wait_for(lambda r: r.levelname == "ERROR" and "lost" in r.getMessage())


def test_a_job_after_a_failing_one_gets_its_own_span_and_parent(tracing, make_pool):
    name = make_pool(1)
    with tracing.tracer.start_as_current_span("first"):
        failed = oddjob.async_perform(name, fail, "x")
    with tracing.tracer.start_as_current_span("second"):
        ok = oddjob.async_perform(name, double, 2)
    with pytest.raises(ValueError):
        oddjob.await_(failed, WAIT)
    assert oddjob.await_(ok, WAIT) == 4
    bad, good = tracing.job_spans()
    assert_children_of([bad], tracing.named("first"))
    assert_children_of([good], tracing.named("second"))
    assert good.status.status_code is StatusCode.UNSET


# -- batches, timers, asyncio -------------------------------------------------------------


def test_each_job_of_a_batch_gets_a_span_whose_parent_is_the_submitters(tracing, make_pool):
    name = make_pool(3)
    with tracing.tracer.start_as_current_span("batch"):
        jobs = oddjob.async_perform_many(name, range(10), double)
    assert oddjob.await_many(jobs, WAIT) == [2 * n for n in range(10)]
    spans = tracing.job_spans()
    assert len(spans) == 10
    assert len({s.context.span_id for s in spans}) == 10
    assert_children_of(spans, tracing.named("batch"))


def test_each_job_of_a_fire_and_forget_batch_gets_a_span(tracing, make_pool):
    name = make_pool(2)
    with tracing.tracer.start_as_current_span("batch"):
        oddjob.perform_many(name, range(6), double)
    spans = tracing.wait_job_spans(6)
    assert len({s.context.span_id for s in spans}) == 6
    assert_children_of(spans, tracing.named("batch"))


def test_batches_from_two_requests_keep_their_own_parents(tracing, make_pool):
    name = make_pool(2)
    with tracing.tracer.start_as_current_span("a"):
        jobs_a = oddjob.async_perform_many(name, range(5), double)
    with tracing.tracer.start_as_current_span("b"):
        jobs_b = oddjob.async_perform_many(name, range(5), double)
    oddjob.await_many(jobs_a + jobs_b, WAIT)
    spans = tracing.job_spans()
    parents = [parent_id(s) for s in spans]
    assert parents.count(tracing.named("a").context.span_id) == 5
    assert parents.count(tracing.named("b").context.span_id) == 5


def test_a_timers_job_is_a_child_of_the_span_current_when_it_was_set(tracing, make_pool):
    name = make_pool(1)
    with tracing.tracer.start_as_current_span("schedule"):
        oddjob.perform_after(0.01, name, double, 3)
    (span,) = tracing.wait_job_spans(1)
    assert_children_of([span], tracing.named("schedule"))


def test_an_aio_job_is_a_child_of_the_tasks_current_span(tracing, make_pool):
    name = make_pool(1)

    async def main() -> int:
        with tracing.tracer.start_as_current_span("handler"):
            return await aio.run(name, double, 4)

    assert asyncio.run(main()) == 8
    (span,) = tracing.job_spans()
    assert_children_of([span], tracing.named("handler"))


# -- copy_context=False -------------------------------------------------------------------


def test_with_copy_context_false_the_parent_is_the_workers_current_span(tracing, make_pool):
    name = make_pool(1, copy_context=False)
    with tracing.tracer.start_as_current_span("request"):
        first = oddjob.async_perform(name, current_span_id)
    second = oddjob.async_perform(name, current_span_id)
    inside_first, inside_second = oddjob.await_many([first, second], WAIT)
    span_1, span_2 = tracing.job_spans()
    # The worker's context has no span: each job starts a trace of its own, and the
    # first job's span is no longer current in the worker once it has ended.
    assert span_1.parent is None and span_2.parent is None
    assert span_1.context.trace_id != span_2.context.trace_id
    assert (inside_first, inside_second) == (span_1.context.span_id, span_2.context.span_id)


# -- instrument / uninstrument ------------------------------------------------------------


def handler_ids() -> list[Any]:
    return [info.id for info in telemetry.handlers()]


def test_uninstrument_stops_the_spans(make_pool):
    t = Tracing()
    name = make_pool(1)
    oddjob_otel.instrument(t.provider)
    try:
        assert oddjob_otel.instrumented()
        assert handler_ids().count(oddjob_otel.HANDLER_ID) == 1
        oddjob.await_(oddjob.async_perform(name, double, 1), WAIT)
        assert len(t.job_spans()) == 1
    finally:
        assert oddjob_otel.uninstrument() is True
    assert oddjob_otel.HANDLER_ID not in handler_ids()
    assert not oddjob_otel.instrumented()
    with t.tracer.start_as_current_span("request"):
        oddjob.await_(oddjob.async_perform(name, current_span_id), WAIT)
        oddjob.perform(name, double, 2)
    oddjob.await_(oddjob.async_perform(name, double, 3), WAIT)  # after the perform
    assert len(t.job_spans()) == 1
    assert oddjob_otel.uninstrument() is False


def test_instrument_twice_keeps_one_handler_and_uses_the_latest_provider(make_pool):
    first, second = Tracing(), Tracing()
    name = make_pool(1)
    try:
        oddjob_otel.instrument(first.provider)
        oddjob_otel.instrument(first.provider)
        assert handler_ids().count(oddjob_otel.HANDLER_ID) == 1
        oddjob.await_(oddjob.async_perform(name, double, 1), WAIT)
        oddjob_otel.instrument(second.provider)
        assert handler_ids().count(oddjob_otel.HANDLER_ID) == 1
        oddjob.await_(oddjob.async_perform(name, double, 2), WAIT)
    finally:
        oddjob_otel.uninstrument()
    assert len(first.job_spans()) == 1
    assert len(second.job_spans()) == 1


def test_uninstrument_ends_the_spans_of_running_jobs(make_pool):
    t = Tracing()
    name = make_pool(1)
    release = gate()
    oddjob_otel.instrument(t.provider)
    try:
        (blocker,) = block_workers(name, 1, release)
    finally:
        oddjob_otel.uninstrument()
    # The running job's span is ended (exported) now, not lost.
    (span,) = t.job_spans()
    assert attr(span, "code.function").endswith("blocker")
    release.set()
    assert oddjob.await_(blocker, WAIT) == "blocker 0"
    assert len(t.job_spans()) == 1


@pytest.mark.parametrize("copy_context", [True, False])
@pytest.mark.parametrize("again", ["while it runs", "after it ended"])
def test_instrument_again_after_uninstrument_during_a_job(make_pool, caplog, copy_context, again):
    """uninstrument during a job, then instrument again (before or after the job ends):
    nothing is logged, and the worker's next job has the span current at its submit as
    parent, never the ended one (with copy_context=False the worker's context is left
    as it was before that job)."""
    t = Tracing()
    name = make_pool(1, copy_context=copy_context)
    release = gate()
    try:
        oddjob_otel.instrument(t.provider)
        (blocker,) = block_workers(name, 1, release)
        oddjob_otel.uninstrument()
        if again == "while it runs":
            oddjob_otel.instrument(t.provider)
        release.set()
        oddjob.await_(blocker, WAIT)
        if again == "after it ended":
            oddjob_otel.instrument(t.provider)
        with t.tracer.start_as_current_span("request"):
            job = oddjob.async_perform(name, current_span_id)
        inside = oddjob.await_(job, WAIT)
        after = oddjob.await_(oddjob.async_perform(name, current_span_id), WAIT)
    finally:
        oddjob_otel.uninstrument()
    first, second, third = t.job_spans()
    assert attr(first, "code.function").endswith("blocker")
    assert (inside, after) == (second.context.span_id, third.context.span_id)
    assert third.parent is None
    if copy_context:
        assert_children_of([second], t.named("request"))
    else:  # the worker's own context: no span
        assert second.parent is None
    errors = [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    assert not errors, errors


def test_instrument_during_a_running_job_leaves_it_alone(make_pool):
    """A job that started before instrument() has no span; its end is ignored."""
    t = Tracing()
    name = make_pool(1)
    release = gate()
    (blocker,) = block_workers(name, 1, release)
    oddjob_otel.instrument(t.provider)
    try:
        release.set()
        assert oddjob.await_(blocker, WAIT) == "blocker 0"
        oddjob.await_(oddjob.async_perform(name, double, 1), WAIT)
    finally:
        oddjob_otel.uninstrument()
    (span,) = t.job_spans()
    assert attr(span, "code.function") == "double"


def test_jobs_on_many_threads_each_get_their_own_span(tracing, make_pool):
    name = make_pool(4)
    n_threads, per_thread = 4, 50
    errors: list[BaseException] = []

    def submitter(i: int) -> None:
        try:
            with tracing.tracer.start_as_current_span(f"submitter {i}"):
                jobs = [oddjob.async_perform(name, current_span_id) for _ in range(per_thread)]
                oddjob.await_many(jobs, WAIT)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT)
    assert not errors
    spans = tracing.job_spans()
    assert len(spans) == n_threads * per_thread
    for i in range(n_threads):
        parent = tracing.named(f"submitter {i}")
        assert sum(parent_id(s) == parent.context.span_id for s in spans) == per_thread
