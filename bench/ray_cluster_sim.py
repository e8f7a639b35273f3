"""A Ray cluster of three nodes on this host, one of them lost while a pool is busy.

    python bench/ray_cluster_sim.py [--threads 3] [--jobs 30] [--sleep 0.2]
                                    [--remove-after 1.5] [--pool-size 4] [--temp-dir DIR]

With ``ray.cluster_utils.Cluster``: a head and two more raylets (1 CPU each), a driver
connected to it, and an oddjob pool with ``backend="ray", pool_size=4`` (``--pool-size``;
its slots: a placement group of as many bundles, SPREAD across the nodes). ``--threads``
threads each submit ``--jobs`` jobs (``async_perform``, one every few ms, so the queue
stays full) that sleep ``--sleep`` s and record, from inside the job, ``(start, end,
node id, pid)``: appended as lines to a file with O_APPEND (so that a job killed mid-way
has its start on record) and returned as the result. ``--remove-after`` s in, one
non-head node that is running jobs is removed (``cluster.remove_node``).

Printed: the most jobs that ever overlapped in time (a sweep over the recorded intervals,
ends before starts at ties; a job killed with its node ends, at the latest, when
remove_node returns), the jobs run on each node, the jobs that failed and with what (the
ones on the removed node should fail with ``oddjob.WorkerCrashedError``), how long after
the removal the pool ran pool_size jobs at once again (its slots back, re-placed on the
nodes left), where the slots were before and after, the jobs running in each half second
(their mean over it), and the totals. Every time is ``time.monotonic()``: one clock for
every process of the host.

Exit status: 0; 1 if more than pool_size jobs ever overlapped; 2 if a job did not end
within the deadline (or the run broke). The cluster is shut down at the end, whatever
happens; its files go under ``--temp-dir``, and so does the address file that Cluster
writes (RAY_TMPDIR), so that no other program's ``ray.init()`` finds this cluster.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

POOL_SIZE = 4  # the default of --pool-size
NODES = 3  # the head and two more
NAMESPACE = "oddjob-sim"
POOL = "sim"
DEFAULT_TEMP_DIR = os.environ.get("ODDJOB_RAY_TEMP_DIR") or os.path.join(
    tempfile.gettempdir(), "ray-oddjob-sim"
)
# Bounds on every wait: nodes joining, slots placed, all jobs done, the pool's stop.
NODE_TIMEOUT = 60.0
DEADLINE = 120.0  # from the first submit to the last job's end
STOP_TIMEOUT = 30.0
SUBMIT_GAP = 0.005
WARM_ROUNDS = 10
BIN = 0.5  # seconds per step of the timeline


# -- the job (it runs in Ray's worker processes: by value, this being __main__) ----------


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def sleeper(index: int, seconds: float, path: str) -> tuple[int, float, float, str, int]:
    """Sleep ``seconds``; record where and when, in the file and as the result."""
    import ray

    node, pid = ray.get_runtime_context().get_node_id(), os.getpid()
    start = time.monotonic()
    _append(path, f"start {index} {start!r} {node} {pid}")
    time.sleep(seconds)
    end = time.monotonic()
    _append(path, f"end {index} {end!r} {node} {pid}")
    return index, start, end, node, pid


# -- the record ----------------------------------------------------------------------------


@dataclass
class Run:
    """One job as recorded: by the job (start, end, node, pid) and by its caller."""

    index: int
    submitted: float = 0.0
    start: float | None = None
    end: float | None = None
    node: str | None = None
    pid: int | None = None
    settled: float | None = None  # when its caller saw it done
    error: BaseException | None = None
    unfinished: bool = False


@dataclass
class Removal:
    node_id: str = ""
    label: str = ""
    began: float = 0.0
    ended: float = 0.0
    running_on_it: int = 0
    slots_before: dict[int, str] = field(default_factory=dict)


def read_records(path: str, runs: dict[int, Run]) -> None:
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        kind, index, at, node, pid = line.split()
        run = runs[int(index)]
        run.node, run.pid = node, int(pid)
        if kind == "start":
            run.start = float(at)
        else:
            run.end = float(at)


def running_now(path: str) -> Counter[str]:
    """Jobs started and not ended, by node, as the file says now."""
    started: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as file:
            for line in file.read().splitlines():
                kind, index, _, node, _ = line.split()
                if kind == "start":
                    started[index] = node
                else:
                    started.pop(index, None)
    except FileNotFoundError:
        pass
    return Counter(started.values())


def intervals(runs: Sequence[Run], removal: Removal) -> list[tuple[float, float, Run]]:
    """(start, end) of every job that started; a job that never recorded its end (its
    node removed under it) ends when remove_node returned, or when its caller saw it
    fail, whichever is first."""
    found = []
    for run in runs:
        if run.start is None:
            continue
        end = run.end
        if end is None:
            candidates = [t for t in (removal.ended, run.settled) if t and t >= run.start]
            end = min(candidates) if candidates else run.start
        found.append((run.start, end, run))
    return found


def sweep(spans: Sequence[tuple[float, float, Run]]) -> list[tuple[float, int]]:
    """(time, jobs running just after it) at every start and end; ends first at ties."""
    events = [(start, 1) for start, _, _ in spans] + [(end, -1) for _, end, _ in spans]
    events.sort(key=lambda event: (event[0], event[1]))  # -1 (an end) sorts first
    level, steps = 0, []
    for at, delta in events:
        level += delta
        steps.append((at, level))
    return steps


def timeline(steps: Sequence[tuple[float, int]], origin: float, end: float) -> list[float]:
    """The mean number of jobs running in each BIN seconds from ``origin`` to ``end``."""
    bins = [0.0] * max(1, int((end - origin) / BIN) + 1)
    for (at, level), (following, _) in itertools.pairwise(steps):
        a, b = at - origin, following - origin
        while a < b:
            k = int(a / BIN)
            if k >= len(bins):
                break
            edge = min(b, (k + 1) * BIN)
            bins[k] += level * (edge - a) / BIN
            a = edge
    return bins


def slot_nodes(ray: Any, group: Any) -> dict[int, str]:
    table = ray.util.placement_group_table(group)
    return {int(k): v for k, v in (table.get("bundles_to_node_id") or {}).items()}


# -- the run -------------------------------------------------------------------------------


def submitter(
    oddjob: Any, runs: list[Run], seconds: float, path: str, done: list[Any], errors: list[Any]
) -> None:
    """Submit every run's job, one every SUBMIT_GAP s, then wait for each in turn."""
    try:
        jobs = []
        for run in runs:
            run.submitted = time.monotonic()
            jobs.append((run, oddjob.async_perform(POOL, sleeper, run.index, seconds, path)))
            time.sleep(SUBMIT_GAP)
        deadline = time.monotonic() + DEADLINE
        for run, job in jobs:
            try:
                run.error = job.exception(max(0.0, deadline - time.monotonic()))
                run.settled = time.monotonic()
            except TimeoutError:
                run.unfinished = True
        done.append(jobs)
    except BaseException as exc:  # reported by main
        errors.append(exc)


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_argument("--threads", type=int, default=3, help="submitting threads (3)")
    cli.add_argument("--jobs", type=int, default=30, help="jobs per thread (30)")
    cli.add_argument("--sleep", type=float, default=0.2, help="seconds each job sleeps")
    cli.add_argument(
        "--remove-after", type=float, default=1.5, help="seconds from the first submit"
    )
    cli.add_argument("--pool-size", type=int, default=POOL_SIZE, help="slots (4)")
    cli.add_argument("--temp-dir", default=DEFAULT_TEMP_DIR, help="Ray's files (and the jobs')")
    args = cli.parse_args(argv)
    size = args.pool_size

    temp_dir = os.path.abspath(args.temp_dir)
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    # Before ray is imported: Cluster writes its address to <RAY_TMPDIR>/ray/
    # ray_current_cluster, which a plain ray.init() elsewhere on the host would join.
    os.environ["RAY_TMPDIR"] = temp_dir
    import ray
    from ray.cluster_utils import Cluster

    import oddjob
    from oddjob import _ray_worker

    node_args = {"num_cpus": 1, "temp_dir": temp_dir, "include_dashboard": False}
    began = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args=node_args)
    pool = None
    status = 0
    try:
        workers = [cluster.add_node(**node_args) for _ in range(NODES - 1)]
        cluster.wait_for_nodes(timeout=NODE_TIMEOUT)
        cluster.connect(namespace=NAMESPACE)
        labels = {cluster.head_node.node_id: "head"}
        labels.update({node.node_id: f"worker{i + 1}" for i, node in enumerate(workers)})
        print(
            f"cluster: {len(labels)} nodes of 1 CPU each, up in "
            f"{time.monotonic() - began:.1f} s (Ray {ray.__version__}, files in {temp_dir})"
        )

        pool = oddjob.Pool(POOL, backend="ray", pool_size=size).start()
        group = _ray_worker.slots(ray, POOL, size)  # the pool's own group, placed

        def where(slots: dict[int, str]) -> str:
            counts = Counter(labels.get(node, node[:8]) for node in slots.values())
            return ", ".join(f"{label} {n}" for label, n in sorted(counts.items()))

        removal = Removal(slots_before=slot_nodes(ray, group))
        print(f"pool {POOL!r}: {size} slots placed on: {where(removal.slots_before)}")

        # Warm: every slot has run a job (Ray starts its worker processes on demand), so
        # that the removal meets the pool at full speed.
        warm_started = time.monotonic()
        seen: set[tuple[str, int]] = set()
        warm_path = os.path.join(tempfile.mkdtemp(prefix="warm-", dir=temp_dir), "records")
        for _ in range(WARM_ROUNDS):
            jobs = [
                oddjob.async_perform(POOL, sleeper, -1, args.sleep, warm_path) for _ in range(size)
            ]
            seen.update((node, pid) for _, _, _, node, pid in oddjob.await_many(jobs, DEADLINE))
            if len(seen) >= size:
                break
        print(
            f"warm: {len(seen)} Ray worker processes ran a job, in "
            f"{time.monotonic() - warm_started:.1f} s"
        )

        path = os.path.join(tempfile.mkdtemp(prefix="jobs-", dir=temp_dir), "records")
        total = args.threads * args.jobs
        runs = [Run(i) for i in range(total)]
        done: list[Any] = []
        errors: list[Any] = []
        threads = [
            threading.Thread(
                target=submitter,
                args=(oddjob, runs[t :: args.threads], args.sleep, path, done, errors),
                name=f"submitter-{t}",
            )
            for t in range(args.threads)
        ]
        first_submit = time.monotonic()
        for thread in threads:
            thread.start()

        # Part-way through: the non-head node running the most jobs now, else one with
        # slots on it.
        time.sleep(args.remove_after)
        busy = running_now(path)
        hosting = Counter(removal.slots_before.values())
        driver_node = ray.get_runtime_context().get_node_id()  # remove_node refuses it
        candidates = [n for n in workers if n.node_id != driver_node]
        victim = max(candidates, key=lambda n: (busy[n.node_id], hosting[n.node_id]))
        removal.node_id, removal.label = victim.node_id, labels[victim.node_id]
        removal.running_on_it = busy[victim.node_id]
        removal.began = time.monotonic()
        cluster.remove_node(victim)
        removal.ended = time.monotonic()
        print(
            f"removed {removal.label} at +{removal.began - first_submit:.2f} s "
            f"({removal.running_on_it} jobs running on it, "
            f"{hosting[victim.node_id]} slots on it); remove_node took "
            f"{removal.ended - removal.began:.2f} s"
        )

        for thread in threads:
            thread.join(DEADLINE + NODE_TIMEOUT)
        finished = time.monotonic()
        if errors or any(thread.is_alive() for thread in threads):
            print(f"submitters broke or hung: {errors!r}", file=sys.stderr)
            status = 2
        try:
            after = slot_nodes(ray, group)
            print(f"slots after the removal on: {where(after)}")
        except Exception as exc:  # the report goes on without it
            print(f"slots after the removal: unknown ({type(exc).__name__}: {exc})")

        read_records(path, runs)
        spans = intervals(runs, removal)
        steps = sweep(spans)
        peak = max((level for _, level in steps), default=0)
        peak_at = next((at for at, level in steps if level == peak), first_submit)
        print(
            f"most jobs at once: {peak} (limit {size}: "
            f"{'kept' if peak <= size else 'EXCEEDED'}), first at "
            f"+{peak_at - first_submit:.2f} s"
        )

        back = next((at for at, level in steps if at >= removal.ended and level >= size), None)
        if back is None:
            print(f"{size} jobs at once after the removal: never")
        else:
            print(
                f"{size} jobs at once again {back - removal.began:.2f} s after "
                f"remove_node was called ({back - removal.ended:.2f} s after it returned)"
            )

        per_node = Counter(labels.get(r.node, r.node[:8]) for r in runs if r.node)
        first = {}
        for r in sorted((r for r in runs if r.node and r.start), key=lambda r: r.start or 0):
            first.setdefault(labels.get(r.node or "", "?"), (r.start or 0) - first_submit)
        print(
            "jobs started per node: "
            + ", ".join(
                f"{label} {n} (first at +{first.get(label, 0):.2f} s)"
                for label, n in sorted(per_node.items())
            )
        )
        bins = timeline(steps, first_submit, finished)
        print(
            f"jobs running, mean per {BIN:g} s from the first submit (removal in bin "
            f"{int((removal.began - first_submit) / BIN)}): " + " ".join(f"{b:.1f}" for b in bins)
        )
        failed = [r for r in runs if r.error is not None]
        unfinished = [r for r in runs if r.unfinished]
        never_started = [r for r in runs if r.start is None]
        print(f"failed: {len(failed)}")
        for r in failed:
            on = labels.get(r.node, "did not start") if r.node else "did not start"
            text = str(r.error).splitlines()[0] if str(r.error) else ""
            text = text if len(text) <= 200 else text[:200] + "..."
            print(f"  job {r.index} (on {on}): {type(r.error).__name__}: {text}")
        crashed_elsewhere = [
            r
            for r in failed
            if not (isinstance(r.error, oddjob.WorkerCrashedError) and r.node == removal.node_id)
        ]
        if crashed_elsewhere:
            print(
                f"  not WorkerCrashedError on {removal.label}: "
                f"{[r.index for r in crashed_elsewhere]}"
            )
        ok = sum(1 for r in runs if r.settled is not None and r.error is None)
        stats = pool.stats()
        print(
            f"total: {total} jobs from {args.threads} threads, {ok} ok, {len(failed)} "
            f"failed, {len(unfinished)} unfinished, {len(never_started)} never started; "
            f"{finished - first_submit:.2f} s from the first submit (ideal without the "
            f"loss {total * args.sleep / size:.2f} s); pool: {stats.workers} workers, "
            f"{stats.crashes} crashes, {stats.restarts} restarts"
        )
        if unfinished:
            status = max(status, 2)
        if peak > size:
            status = 1
    except BaseException:
        status = 2
        raise
    finally:
        try:
            if pool is not None and pool.running:
                pool.stop(cancel_pending=True, timeout=STOP_TIMEOUT)
            if ray.is_initialized():
                _ray_worker.remove_slots(POOL)
        finally:
            ray.shutdown()
            cluster.shutdown()
    print(f"exit status {status}")
    return status


if __name__ == "__main__":
    sys.exit(main())
