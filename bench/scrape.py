"""Read a service's ``/metrics`` before and after a load level and explain the server's time.

The services export cumulative Prometheus counters and histograms (see services/metrics.py),
so the difference of two scrapes is exactly what happened in between:

- ``stages_ms``: mean milliseconds per request in each pipeline stage (decode, preprocess,
  queue, compute, postprocess) = delta ``_sum`` / delta ``_count`` of
  ``versus_stage_duration_seconds{stage}``;
- ``avg_batch_size``: delta sum / delta count of ``versus_batch_size`` (images per batch the
  runtime executed: dynamic batching at work);
- ``request_ms``: mean and histogram-estimated p50/p99 of the server-side request duration of
  the inference routes (the client's latency minus this is network + client time);
- ``requests_by_code`` and ``rejected_by_reason`` deltas.

Parsing uses ``prometheus_client.parser`` (the reference implementation), not regexes.
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

STAGES = ("decode", "preprocess", "queue", "compute", "postprocess")
SCRAPE_TIMEOUT_S = 5.0
MS_PER_S = 1e3

STAGE_METRIC = "versus_stage_duration_seconds"
REQUEST_METRIC = "versus_request_duration_seconds"
BATCH_METRIC = "versus_batch_size"
REQUESTS_TOTAL = "versus_requests_total"
REJECTED_TOTAL = "versus_rejected_requests_total"

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
Snapshot = dict[SampleKey, float]
"""``{(sample name, sorted label pairs): value}`` of one scrape."""


def parse_metrics(text: str) -> Snapshot:
    """Every sample of a Prometheus exposition text."""
    snapshot: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            snapshot[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return snapshot


def scrape(base_url: str, timeout: float = SCRAPE_TIMEOUT_S) -> Snapshot:
    """GET ``<base_url>/metrics`` and parse it (raises OSError if the service is gone)."""
    with urllib.request.urlopen(f"{base_url.rstrip('/')}/metrics", timeout=timeout) as response:
        return parse_metrics(response.read().decode("utf-8"))


def is_inference_route(route: str) -> bool:
    """``/predict`` and the Open Inference Protocol's ``.../infer`` (not health or metrics)."""
    return route == "/predict" or route.endswith("/infer")


def _delta(before: Snapshot, after: Snapshot, name: str, **match: str
           ) -> dict[tuple[tuple[str, str], ...], float]:
    """after - before for every series of ``name`` whose labels include ``match``."""
    result = {}
    for (sample_name, labels), value in after.items():
        if sample_name != name or any(dict(labels).get(k) != v for k, v in match.items()):
            continue
        result[labels] = value - before.get((sample_name, labels), 0.0)
    return result


def total_growth(before: Snapshot, after: Snapshot, name: str, **match: str) -> float:
    """How much the series of ``name`` matching ``match`` grew in all, between two scrapes."""
    return sum(_delta(before, after, name, **match).values())


def _mean(sum_delta: float, count_delta: float, scale: float = 1.0) -> float | None:
    return sum_delta / count_delta * scale if count_delta > 0 else None


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding the
    ``q`` quantile of cumulative bucket counts ``{upper bound: count}`` (None if empty)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # in the +Inf bucket: the largest finite bound
            if count == lower_count:
                return bound
            fraction = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return bounds[-1]


def _request_buckets(before: Snapshot, after: Snapshot) -> dict[float, float]:
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in _delta(before, after, REQUEST_METRIC + "_bucket").items():
        label = dict(labels)
        if is_inference_route(label.get("route", "")):
            buckets[float(label["le"])] += value
    return dict(buckets)


def server_delta(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """What the server did between two scrapes (see the module doc for the fields)."""
    stages = {}
    for stage in STAGES:
        count = total_growth(before, after, STAGE_METRIC + "_count", stage=stage)
        total = total_growth(before, after, STAGE_METRIC + "_sum", stage=stage)
        stages[stage] = _mean(total, count, MS_PER_S)
    inference_sum = inference_count = 0.0
    for labels, value in _delta(before, after, REQUEST_METRIC + "_count").items():
        if is_inference_route(dict(labels).get("route", "")):
            inference_count += value
            inference_sum += _delta(before, after, REQUEST_METRIC + "_sum").get(labels, 0.0)
    buckets = _request_buckets(before, after)
    p50, p99 = (histogram_quantile(q, buckets) for q in (0.5, 0.99))
    by_code: dict[str, float] = defaultdict(float)
    for labels, value in _delta(before, after, REQUESTS_TOTAL).items():
        label = dict(labels)
        if is_inference_route(label.get("route", "")) and value:
            by_code[label.get("code", "?")] += value
    rejected: dict[str, float] = defaultdict(float)
    for labels, value in _delta(before, after, REJECTED_TOTAL).items():
        if value:
            rejected[dict(labels).get("reason", "?")] += value
    batches = total_growth(before, after, BATCH_METRIC + "_count")
    return {
        "stages_ms": stages,
        "request_ms": {
            "mean": _mean(inference_sum, inference_count, MS_PER_S),
            "p50": None if p50 is None else p50 * MS_PER_S,
            "p99": None if p99 is None else p99 * MS_PER_S,
        },
        "inference_requests": inference_count,
        "batches": batches,
        "avg_batch_size": _mean(total_growth(before, after, BATCH_METRIC + "_sum"), batches),
        "requests_by_code": dict(by_code),
        "rejected_by_reason": dict(rejected),
    }
