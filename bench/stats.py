"""Small statistics shared by the bench: spreads over repeats, latency percentiles, windows.

Every timing in a report carries its spread over repeats as ``{"min", "median", "max", "n",
"values"}`` (:func:`spread`): one number without its spread hides the noise of a shared
machine, and the raw values stay in results.json for anyone who wants another statistic.

Throughput windows follow perf_analyzer: completions are counted in consecutive fixed-length
windows, and a load level is *stable* when the last ``count`` windows agree within a
tolerance (10 %) in throughput and in median latency (:func:`stable_tail`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

PERCENTILES = (50, 90, 95, 99)
"""Latency percentiles reported everywhere (p50/p90/p95/p99)."""

Spread = dict[str, Any]


def spread(values: Iterable[float | None]) -> Spread | None:
    """``{"min", "median", "max", "n", "values"}`` of the finite values, or None if none."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not kept:
        return None
    return {"min": min(kept), "median": statistics.median(kept), "max": max(kept),
            "n": len(kept), "values": kept}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ascending ``sorted_values``, linear interpolation
    (numpy's default), so that p99 of 50 samples is not simply the maximum."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def latency_summary(latencies_ms: Iterable[float]) -> dict[str, float] | None:
    """p50/p90/p95/p99, mean, min and max of latencies in ms (None for no samples)."""
    ordered = sorted(latencies_ms)
    if not ordered:
        return None
    summary = {f"p{q}": percentile(ordered, q) for q in PERCENTILES}
    summary.update(mean=statistics.fmean(ordered), min=ordered[0], max=ordered[-1])
    return summary


@dataclass(frozen=True)
class Sample:
    """One completed request as the load generator saw it."""

    end: float
    """Completion time, seconds since the epoch."""
    latency_ms: float
    ok: bool
    code: int = 0
    """HTTP status (0 when no response arrived: connection refused or reset, timeout)."""


@dataclass(frozen=True)
class Window:
    """Completions in ``[start, start + length)``."""

    start: float
    length: float
    ok: int
    failed: int
    median_ms: float | None

    @property
    def throughput(self) -> float:
        """Successful requests per second (failures never count as throughput)."""
        return self.ok / self.length


def windows(samples: Sequence[Sample], start: float, length: float, end: float) -> list[Window]:
    """Complete windows of ``length`` seconds from ``start`` up to ``end`` (a trailing partial
    window is dropped: its rate would be biased low)."""
    count = int((end - start) // length) if end > start else 0
    buckets: list[list[Sample]] = [[] for _ in range(count)]
    for sample in samples:
        index = math.floor((sample.end - start) / length)
        if 0 <= index < count:
            buckets[index].append(sample)
    result = []
    for i, bucket in enumerate(buckets):
        good = sorted(s.latency_ms for s in bucket if s.ok)
        result.append(Window(start + i * length, length, len(good), len(bucket) - len(good),
                             statistics.median(good) if good else None))
    return result


def within(values: Sequence[float], tolerance: float) -> bool:
    """True when every value is within ``tolerance`` (relative) of their mean."""
    if not values:
        return False
    mean = statistics.fmean(values)
    if mean <= 0:
        return False
    return all(abs(v - mean) <= tolerance * mean for v in values)


def stable_tail(series: Sequence[Window], count: int, tolerance: float) -> bool:
    """perf_analyzer's criterion: the last ``count`` windows agree within ``tolerance`` in
    throughput and in median latency (and every one of them completed requests)."""
    tail = series[-count:]
    if len(tail) < count or any(w.ok == 0 or w.median_ms is None for w in tail):
        return False
    return (within([w.throughput for w in tail], tolerance)
            and within([w.median_ms for w in tail if w.median_ms is not None], tolerance))
