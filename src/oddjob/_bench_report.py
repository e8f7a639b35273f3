"""What ``python -m oddjob bench`` measured, as a table, as JSON and as a chart.

Every figure is a ``Result``: the samples of one (workload, mode, peer) over the
repetitions. Ratios are computed here from the results alone, so that the table, the
JSON file and the chart cannot disagree.
"""

from __future__ import annotations

import importlib
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "FOOTNOTE",
    "Failure",
    "MODE_TITLES",
    "REFERENCE",
    "Result",
    "Stat",
    "headline",
    "headline_lines",
    "plot",
    "ratio",
    "section_lines",
    "table_heading",
    "to_json",
]

# The key of the peer every ratio is taken against: ThreadPoolExecutor.
REFERENCE: Final = "tpe"
_LOOP: Final = "loop"

# The heading of each mode's section, in table order.
MODE_TITLES: Final = {
    "perform": "perform: fire and forget, one call per job; done once the pool has drained",
    "perform_many": "perform_many: the whole batch in one call; done once every job has run",
    "async_many": "async_perform_many + await_many: a handle per job, then every result",
    "round_trip": "round trip: submit one job and await it, one at a time; p50 (p99)",
    "queued_bytes": "bytes per queued job: fire-and-forget jobs behind busy workers (tracemalloc)",
    "async_each": "async jobs created one call each, run and collected",
}

FOOTNOTE: Final = (
    "± is half the range of the runs, as a share of their median. vs TPE is the median\n"
    "over ThreadPoolExecutor's: above 1 is faster for jobs/s, below 1 is better for\n"
    "times and bytes."
)

# Column widths of the table.
_PEER_WIDTH: Final = 27
_CALL_WIDTH: Final = 30
_VALUE_WIDTH: Final = 22


@dataclass(frozen=True)
class Stat:
    """The samples of one figure, one per repetition."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    @property
    def spread(self) -> float:
        """Half the range of the samples, as a fraction of their median."""
        median = self.median
        return (self.high - self.low) / 2 / median if median else 0.0


@dataclass(frozen=True)
class Result:
    """One measured figure.

    ``mode`` is a ``MODE_TITLES`` key, except that a round trip gives two results,
    ``round_trip_p50`` and ``round_trip_p99``. ``unit`` is "jobs/s", "s" (seconds) or "B"
    (bytes per job).
    """

    workload: str
    mode: str
    peer: str  # the row label
    peer_key: str  # as --peers names it
    call: str
    unit: str
    stat: Stat


@dataclass(frozen=True)
class Failure:
    """A peer whose run raised in some workload and mode: it has no figure there."""

    workload: str
    mode: str
    peer: str
    peer_key: str
    call: str
    error: str  # the exception's type and message


def _find(results: Iterable[Result], workload: str, mode: str, peer_key: str) -> Result | None:
    for result in results:
        if (result.workload, result.mode, result.peer_key) == (workload, mode, peer_key):
            return result
    return None


def _median(results: Iterable[Result], workload: str, mode: str, peer_key: str) -> float | None:
    found = _find(results, workload, mode, peer_key)
    return None if found is None else found.stat.median


def _over(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def ratio(results: Sequence[Result], result: Result, to: str = REFERENCE) -> float | None:
    """``result``'s median over that of the peer keyed ``to``, same workload and mode."""
    return _over(result.stat.median, _median(results, result.workload, result.mode, to))


# -- the table ----------------------------------------------------------------------------


def _quantity(value: float, unit: str) -> str:
    if unit == "jobs/s":
        return f"{value:,.0f}/s"
    if unit == "B":
        return f"{value:,.0f} B"
    if value >= 1.0:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.2f} ms"
    return f"{value * 1e6:.1f} µs"


def _ratio_text(value: float | None) -> str:
    if value is None:
        return "—"
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 0.1 else 3
    return f"{value:,.{decimals}f}x"


def _row(peer: str, call: str, value: str, spread: str, vs: str) -> str:
    return (
        f"    {peer:<{_PEER_WIDTH}}{call:<{_CALL_WIDTH}}{value:>{_VALUE_WIDTH}}{spread:>7}{vs:>9}"
    )


def table_heading() -> str:
    """The column names, aligned with the rows."""
    return _row("peer", "call", "median", "±", "vs TPE")


def section_lines(
    results: Sequence[Result], workload: str, mode: str, failures: Sequence[Failure] = ()
) -> list[str]:
    """The table section of one workload and mode: a heading, then a row per peer."""
    lines = [f"  {MODE_TITLES[mode]}"]
    shown = "round_trip_p50" if mode == "round_trip" else mode
    for result in (r for r in results if (r.workload, r.mode) == (workload, shown)):
        value = _quantity(result.stat.median, result.unit)
        if mode == "round_trip":
            p99 = _median(results, workload, "round_trip_p99", result.peer_key)
            value += "" if p99 is None else f" ({_quantity(p99, 's')})"
        spread = f"±{result.stat.spread:.0%}"
        vs = _ratio_text(ratio(results, result))
        lines.append(_row(result.peer, result.call, value, spread, vs))
    for failure in (f for f in failures if (f.workload, f.mode) == (workload, mode)):
        lines.append(
            f"    {failure.peer:<{_PEER_WIDTH}}{failure.call:<{_CALL_WIDTH}}failed: {failure.error}"
        )
    return lines


# -- the tracked figures ------------------------------------------------------------------


def headline(results: Sequence[Result]) -> dict[str, float | None]:
    """The figures the project tracks, by name (None where they were not measured)."""

    def vs_reference(workload: str, mode: str) -> float | None:
        ours = _median(results, workload, mode, "oddjob")
        return _over(ours, _median(results, workload, mode, REFERENCE))

    return {
        "perform_noop_vs_tpe_submit": vs_reference("noop", "perform"),
        "perform_many_noop_vs_tpe_map": vs_reference("noop", "perform_many"),
        "async_many_noop_vs_tpe_submit_result": vs_reference("noop", "async_many"),
        "perform_cpu_fraction_of_loop": _over(
            _median(results, "cpu", "perform", "oddjob"),
            _median(results, "cpu", "perform", _LOOP),
        ),
        "round_trip_p50_noop_vs_tpe": vs_reference("noop", "round_trip_p50"),
        "queued_bytes_per_job": _median(results, "noop", "queued_bytes", "oddjob"),
        "queued_bytes_per_job_tpe": _median(results, "noop", "queued_bytes", REFERENCE),
        "async_jobs_seconds": _median(results, "noop", "async_each", "oddjob"),
        "async_jobs_seconds_tpe": _median(results, "noop", "async_each", REFERENCE),
    }


def headline_lines(
    results: Sequence[Result], core: str, pool_size: int, async_jobs: int, async_pool_size: int
) -> list[str]:
    """The tracked figures in words, one a line, then the async-jobs line."""
    figures = headline(results)

    def times(value: float | None) -> str:
        return "not measured" if value is None else _ratio_text(value)

    def fraction(value: float | None) -> str:
        return "not measured" if value is None else f"{value:.2f}"

    def size(value: float | None) -> str:
        return "not measured" if value is None else f"{value:,.0f} B"

    rows: list[tuple[str, Callable[[float | None], str], str]] = [
        ("perform, no-op jobs/s vs ThreadPoolExecutor.submit", times, "perform_noop_vs_tpe_submit"),
        (
            "perform_many, no-op jobs/s vs ThreadPoolExecutor.map",
            times,
            "perform_many_noop_vs_tpe_map",
        ),
        (
            "async_perform_many+await_many, no-op jobs/s vs submit+result",
            times,
            "async_many_noop_vs_tpe_submit_result",
        ),
        (
            "perform, ~10 µs jobs/s as a fraction of the single-thread loop's",
            fraction,
            "perform_cpu_fraction_of_loop",
        ),
        (
            "round trip p50, no-op, as a fraction of ThreadPoolExecutor's",
            fraction,
            "round_trip_p50_noop_vs_tpe",
        ),
        ("bytes per queued fire-and-forget job", size, "queued_bytes_per_job"),
        ("  the same for ThreadPoolExecutor", size, "queued_bytes_per_job_tpe"),
    ]
    width = max(len(label) for label, _, _ in rows)
    lines = [f"Tracked figures (oddjob on the {core} core, pool size {pool_size}):"]
    lines += [f"  {label:<{width}}  {show(figures[key]):>12}" for label, show, key in rows]

    ours = _find(results, "noop", "async_each", "oddjob")
    if ours is not None:
        others = [
            f"{r.peer}: {r.stat.median:#.3g} s"
            for r in results
            if r.mode == "async_each" and r.peer_key != "oddjob"
        ]
        lines.append(
            f"{async_jobs:,} async jobs created, run and collected "
            f"(pool = CPU count = {async_pool_size}): {ours.stat.median:#.3g} s "
            f"±{ours.stat.spread:.0%}" + (f" ({'; '.join(others)})" if others else "")
        )
    return lines


# -- JSON -----------------------------------------------------------------------------------


def to_json(
    results: Sequence[Result],
    environment: dict[str, Any],
    settings: dict[str, Any],
    workloads: list[dict[str, Any]],
    failures: Sequence[Failure] = (),
) -> dict[str, Any]:
    """Everything measured, machine-readable; ``headline`` holds the tracked figures."""
    return {
        "schema": 1,
        "environment": environment,
        "settings": settings,
        "workloads": workloads,
        "results": [
            {
                "workload": r.workload,
                "mode": r.mode,
                "peer": r.peer,
                "peer_key": r.peer_key,
                "call": r.call,
                "unit": r.unit,
                "median": r.stat.median,
                "min": r.stat.low,
                "max": r.stat.high,
                "spread": r.stat.spread,
                "samples": list(r.stat.samples),
                "ratio_to_tpe": ratio(results, r),
            }
            for r in results
        ],
        "headline": headline(results),
        "failures": [
            {
                "workload": f.workload,
                "mode": f.mode,
                "peer": f.peer,
                "peer_key": f.peer_key,
                "call": f.call,
                "error": f.error,
            }
            for f in failures
        ],
    }


# -- the chart ------------------------------------------------------------------------------

# One colour per peer key, the same in every panel.
_COLOURS: Final = {
    "oddjob": "#d62728",
    "executor": "#ff7f0e",
    "tpe": "#1f77b4",
    "threadpool": "#17becf",
    "asyncio": "#2ca02c",
    "pebble": "#9467bd",
    "loop": "#7f7f7f",
}
_THROUGHPUT_MODES: Final = ("perform", "perform_many", "async_many")


def _bars(
    axes: Any,
    groups: Sequence[str],
    peers: Sequence[tuple[str, str]],
    find: Callable[[str, str], Result | None],
    scale: float = 1.0,
) -> None:
    """Grouped bars on a log scale: a group per entry of ``groups`` and in it a bar per
    peer (key, name) that ``find(group, key)`` has a result for, whiskers from min to max;
    oddjob's bars are labelled with their ratio to ThreadPoolExecutor's."""
    width = 0.8 / max(1, len(peers))
    for index, (key, name) in enumerate(peers):
        xs: list[float] = []
        heights: list[float] = []
        errors: tuple[list[float], list[float]] = ([], [])
        labels: list[str] = []
        for group_index, group in enumerate(groups):
            result = find(group, key)
            if result is None:
                continue
            xs.append(group_index + (index - (len(peers) - 1) / 2) * width)
            median = result.stat.median * scale
            heights.append(median)
            errors[0].append(median - result.stat.low * scale)
            errors[1].append(result.stat.high * scale - median)
            reference = find(group, REFERENCE)
            vs = None if reference is None else _over(result.stat.median, reference.stat.median)
            labels.append(_ratio_text(vs) if vs is not None else "")
        bars = axes.bar(
            xs, heights, width, yerr=errors, label=name, color=_COLOURS.get(key), capsize=2
        )
        if key == "oddjob":
            axes.bar_label(bars, labels, padding=2, fontsize=8, color=_COLOURS["oddjob"])
    axes.set_xticks(range(len(groups)))
    axes.set_yscale("log")
    axes.grid(axis="y", which="both", alpha=0.3)


def plot(
    path: str,
    results: Sequence[Result],
    workloads: Sequence[tuple[str, str]],
    title: str,
) -> None:
    """Write a PNG chart of the results to ``path``: a throughput panel per workload,
    then the round-trip latencies and the bytes per queued job.

    Args:
        path: where the PNG goes.
        results: what was measured.
        workloads: (key, title) of each workload measured, in order.
        title: the chart's title.

    Raises:
        ModuleNotFoundError: matplotlib is not installed.
    """
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")  # files only: never open a window
    pyplot = importlib.import_module("matplotlib.pyplot")

    peers = list(dict.fromkeys((r.peer_key, r.peer) for r in results))
    columns = max(2, len(workloads))
    figure = pyplot.figure(figsize=(5.2 * columns, 9.5), layout="constrained")
    grid = figure.add_gridspec(2, columns)

    for column, (key, name) in enumerate(workloads):

        def throughput(mode: str, peer: str, workload: str = key) -> Result | None:
            return _find(results, workload, mode, peer)

        axes = figure.add_subplot(grid[0, column])
        _bars(axes, _THROUGHPUT_MODES, peers, throughput)
        axes.set_xticklabels(["perform", "perform_many", "async + await"])
        axes.set_title(f"{name}: throughput (higher is better)")
        axes.set_ylabel("jobs/s")

    latency = figure.add_subplot(grid[1, : columns - 1])
    _bars(
        latency,
        [key for key, _ in workloads],
        peers,
        lambda workload, peer: _find(results, workload, "round_trip_p50", peer),
        scale=1e6,
    )
    latency.set_xticklabels([name for _, name in workloads])
    latency.set_title("round trip p50, one job at a time (lower is better)")
    latency.set_ylabel("µs")

    memory = figure.add_subplot(grid[1, columns - 1])
    queued = [p for p in peers if _find(results, "noop", "queued_bytes", p[0]) is not None]
    _bars(memory, ["noop"], queued, lambda _, peer: _find(results, "noop", "queued_bytes", peer))
    memory.set_xticklabels([""])
    memory.set_title("bytes per queued job (lower is better)")
    memory.set_ylabel("bytes")

    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(peers))
    figure.suptitle(f"{title}\nlabels in red: oddjob's figure over ThreadPoolExecutor's")
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
