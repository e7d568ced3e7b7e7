"""bench.stats: spreads, percentiles, windows and the perf_analyzer stability rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import (
    Sample,
    Window,
    latency_summary,
    percentile,
    spread,
    stable_tail,
    windows,
    within,
)


def test_spread_ignores_missing_and_non_finite_values() -> None:
    s = spread([3.0, None, 1.0, math.nan, 2.0])
    assert s == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3, "values": [3.0, 1.0, 2.0]}
    assert spread([]) is None
    assert spread([None, math.inf]) is None


@pytest.mark.parametrize("q", [0, 10, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear(q: float) -> None:
    values = sorted(np.random.default_rng(0).exponential(10.0, 57).tolist())
    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_latency_summary_has_the_reported_percentiles() -> None:
    summary = latency_summary([5.0, 1.0, 3.0])
    assert summary is not None
    assert set(summary) == {"p50", "p90", "p95", "p99", "mean", "min", "max"}
    assert summary["p50"] == 3.0 and summary["min"] == 1.0 and summary["max"] == 5.0
    assert latency_summary([]) is None


def samples_at(rate: float, start: float, seconds: float, latency: float = 10.0,
               ok: bool = True) -> list[Sample]:
    n = int(rate * seconds)
    return [Sample(start + (i + 0.5) / rate, latency, ok, 200 if ok else 0) for i in range(n)]


def test_windows_count_successes_and_drop_the_partial_tail() -> None:
    samples = samples_at(10, 100.0, 3.5) + samples_at(5, 100.0, 3.5, ok=False)
    series = windows(samples, 100.0, 1.0, 103.7)
    assert len(series) == 3  # [100,101) [101,102) [102,103); 103..103.7 is partial
    assert [w.ok for w in series] == [10, 10, 10]
    assert [w.failed for w in series] == [5, 5, 5]
    assert series[0].throughput == 10.0


def test_failures_are_never_throughput() -> None:
    series = windows(samples_at(1000, 0.0, 2.0, ok=False), 0.0, 1.0, 2.0)
    assert all(w.throughput == 0 for w in series)
    assert not stable_tail(series, 2, 0.1)


def test_within_is_relative_to_the_mean() -> None:
    assert within([100, 105, 95], 0.10)
    assert not within([100, 125, 95], 0.10)
    assert not within([], 0.10)


def test_stable_tail_needs_enough_agreeing_windows() -> None:
    steady = [Window(float(i), 1.0, 50, 0, 20.0) for i in range(3)]
    assert stable_tail(steady, 3, 0.10)
    assert not stable_tail(steady[:2], 3, 0.10)
    ramp = [Window(0.0, 1.0, 20, 0, 20.0), *steady[1:]]
    assert not stable_tail(ramp, 3, 0.10)
    slow_latency = [*steady[:2], Window(2.0, 1.0, 50, 0, 40.0)]
    assert not stable_tail(slow_latency, 3, 0.10)  # latency must be stable too
