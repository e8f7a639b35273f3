"""A second program using a Ray pool: ``python ray_driver.py ADDRESS POOL SIZE SPOOL TAG N``
starts Pool(POOL, backend="ray", pool_size=SIZE, address=ADDRESS), runs N jobs that each
record their interval under SPOOL, and exits 0 once all are done (tests/test_ray.py)."""

from __future__ import annotations

import sys

import oddjob
import process_jobs


def main(address: str, pool: str, size: str, spool: str, tag: str, count: str) -> None:
    with oddjob.Pool(pool, backend="ray", pool_size=int(size), address=address) as running:
        jobs = [
            running.async_perform(process_jobs.interval, spool, tag, 0.3) for _ in range(int(count))
        ]
        oddjob.await_many(jobs, timeout=120)


if __name__ == "__main__":
    main(*sys.argv[1:])
