"""bench.scrape: deltas of two /metrics scrapes explain the server's time per stage."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bench.scrape import histogram_quantile, parse_metrics, server_delta

LABELS = ("framework", "model")


class FakeService:
    """The versus_* series a service exports, in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("versus_requests", "", [*LABELS, "route", "code"], registry=r)
        self.duration = Histogram("versus_request_duration_seconds", "", [*LABELS, "route"],
                                  buckets=(0.01, 0.05, 0.1, 0.5), registry=r)
        self.stages = Histogram("versus_stage_duration_seconds", "", [*LABELS, "stage"],
                                registry=r)
        self.batch = Histogram("versus_batch_size", "", LABELS, buckets=(1, 2, 4, 8),
                               registry=r)
        self.rejected = Counter("versus_rejected_requests", "", [*LABELS, "reason"],
                                registry=r)

    def request(self, seconds: float, stages: dict[str, float], route: str = "/predict",
                code: str = "200") -> None:
        self.requests.labels("onnx", "dr", route, code).inc()
        self.duration.labels("onnx", "dr", route).observe(seconds)
        for stage, value in stages.items():
            self.stages.labels("onnx", "dr", stage).observe(value)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


STAGES = {"decode": 0.002, "preprocess": 0.001, "queue": 0.004, "compute": 0.020,
          "postprocess": 0.0005}


def test_delta_gives_means_per_stage_and_batch_size() -> None:
    service = FakeService()
    service.request(1.0, {"compute": 1.0})  # before the level: must not count
    service.batch.labels("onnx", "dr").observe(1)
    service.request(0.5, {}, route="/metrics")
    before = parse_metrics(service.text())
    for _ in range(10):
        service.request(0.03, STAGES)
    for size in (2, 4, 4):
        service.batch.labels("onnx", "dr").observe(size)
    service.request(0.001, {}, route="/metrics")  # not an inference route
    service.rejected.labels("onnx", "dr", "queue_full").inc(2)
    delta = server_delta(before, parse_metrics(service.text()))
    for stage, seconds in STAGES.items():
        assert delta["stages_ms"][stage] == pytest.approx(seconds * 1e3)
    assert delta["inference_requests"] == 10
    assert delta["request_ms"]["mean"] == pytest.approx(30.0)
    assert 10.0 <= delta["request_ms"]["p50"] <= 50.0
    assert delta["avg_batch_size"] == pytest.approx(10 / 3)
    assert delta["batches"] == 3
    assert delta["requests_by_code"] == {"200": 10}
    assert delta["rejected_by_reason"] == {"queue_full": 2}


def test_an_idle_interval_has_no_means() -> None:
    text = FakeService().text()
    delta = server_delta(parse_metrics(text), parse_metrics(text))
    assert all(v is None for v in delta["stages_ms"].values())
    assert delta["avg_batch_size"] is None and delta["request_ms"]["mean"] is None


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert histogram_quantile(0.99, {0.1: 1.0, float("inf"): 10.0}) == pytest.approx(0.1)
