"""Latency histograms for the pure-Python core: the twin of ``_stats.h``.

Values are nanoseconds, counted in log-linear buckets as HDR histograms do: values
below 16 have a bucket each; above, every power of two is split into 16 equal buckets,
so a bucket's midpoint is within 1/32 (3.2%) of every value in it. Values up to 2**48 ns
(78 hours) fit in 720 buckets; larger ones count in the last (the exact maximum is kept).
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["Histogram", "Summary"]

_SUB_BITS: Final = 4
_SUB: Final = 1 << _SUB_BITS
_TOP_BIT: Final = 47
BUCKETS: Final = (_TOP_BIT - _SUB_BITS + 2) * _SUB
_LARGEST: Final = (1 << (_TOP_BIT + 1)) - 1
_QUANTILES: Final = (0.50, 0.90, 0.99)
_TOTAL_MASK: Final = (1 << 64) - 1

#: (count, mean, p50, p90, p99, max), the times in seconds.
Summary = tuple[int, float, float, float, float, float]


def bucket_of(ns: int) -> int:
    if ns < _SUB:
        return max(ns, 0)
    ns = min(ns, _LARGEST)
    bit = ns.bit_length() - 1
    return ((bit - _SUB_BITS + 1) << _SUB_BITS) + ((ns >> (bit - _SUB_BITS)) & (_SUB - 1))


def value_of(index: int) -> float:
    """The midpoint of bucket ``index``, in nanoseconds."""
    if index < _SUB:
        return float(index)
    shift = (index >> _SUB_BITS) - 1
    low = (_SUB + (index & (_SUB - 1))) << shift
    return low + ((1 << shift) - 1) / 2


class Histogram:
    """``record(ns)`` and ``summary()``; callers serialise access (the queue lock)."""

    __slots__ = ("_buckets", "count", "max_ns", "total_ns")

    def __init__(self) -> None:
        self._buckets = [0] * BUCKETS
        self.count = 0
        self.total_ns = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        ns = max(ns, 0)  # a clock that stepped back: count it as instant
        self._buckets[bucket_of(ns)] += 1
        self.count += 1
        self.total_ns = (self.total_ns + ns) & _TOTAL_MASK  # wraps as the C total does
        if ns > self.max_ns:
            self.max_ns = ns

    def summary(self) -> Summary:
        """A percentile is the midpoint of the bucket holding its rank (ceil(p * count)),
        never above the maximum."""
        count = self.count
        if count == 0:
            return (0, 0.0, 0.0, 0.0, 0.0, 0.0)
        ranks = [max(1, math.ceil(q * count)) for q in _QUANTILES]
        found: list[float] = []
        seen = 0
        for index, n in enumerate(self._buckets):
            if not n:
                continue
            seen += n
            while len(found) < len(ranks) and seen >= ranks[len(found)]:
                found.append(min(value_of(index), self.max_ns) / 1e9)
            if len(found) == len(ranks):
                break
        # The total rounded to a double first, as in C, so both cores give the same mean.
        mean = float(self.total_ns) / float(count) / 1e9
        return (count, mean, found[0], found[1], found[2], self.max_ns / 1e9)
