"""Prometheus metrics of a service, correct under several gunicorn workers.

Every series carries ``framework`` (torch, tensorflow, jax, onnx) and ``model`` (the dataset,
e.g. ``dr``), so one PromQL expression compares frameworks: ``sum by (framework) (...)``.

Names (``versus_`` prefix, base units, ``_total`` on counters):

- ``versus_requests_total{route,code}`` and ``versus_request_duration_seconds{route}``;
- ``versus_stage_duration_seconds{stage}``: decode, preprocess, queue, compute, postprocess
  (Triton's queue/compute split plus KServe's pre/predict/post split);
- ``versus_batch_size`` (images per executed batch) and ``versus_batch_duration_seconds``
  (the runtime's time per batch: ``rate(..._sum)`` is the fraction of time it is busy, the
  compute utilisation), ``versus_queue_depth`` (images waiting) and
  ``versus_inflight_requests`` gauges, ``versus_rejected_requests_total{reason}``;
- ``versus_model_info{version,framework_version,dataset,sha256}`` = 1, and
  ``versus_model_load_seconds`` (load + warm-up of the worker's model).

Multi-process mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn, see
deploy/gunicorn.conf.py) every worker writes its own files and ``/metrics`` merges them with
a ``MultiProcessCollector``; gauges say how to merge (``livesum`` for depths and in-flight
counts, ``livemax`` for info/load time) and dead workers' files are dropped by
``mark_process_dead`` in gunicorn's ``child_exit``. Without the variable (tests, Flask's dev
server) the default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

# ``*_created`` timestamps double the exposition and are absent in multi-process mode anyway.
disable_created_metrics()

LABELS = ("framework", "model")
STAGES = ("decode", "preprocess", "queue", "compute", "postprocess")

#: 0.5 ms .. 60 s: a CPU ResNet-50 batch takes 0.05-2 s, a decode or a queue wait < 1 ms.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

REQUESTS = Counter(
    "versus_requests", "HTTP requests by route and status code.", [*LABELS, "route", "code"]
)
REQUEST_DURATION = Histogram(
    "versus_request_duration_seconds", "HTTP request duration, receipt to response.",
    [*LABELS, "route"], buckets=LATENCY_BUCKETS,
)
STAGE_DURATION = Histogram(
    "versus_stage_duration_seconds", "Time per inference stage of a request.",
    [*LABELS, "stage"], buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "versus_batch_size", "Images per batch executed by the runtime (before bucket padding).",
    LABELS, buckets=BATCH_BUCKETS,
)
BATCH_DURATION = Histogram(
    "versus_batch_duration_seconds", "Seconds the runtime spent on one batch (padding included).",
    LABELS, buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "versus_queue_depth", "Images waiting in the batch queue.", LABELS,
    multiprocess_mode="livesum",
)
INFLIGHT = Gauge(
    "versus_inflight_requests", "HTTP requests being handled.", LABELS,
    multiprocess_mode="livesum",
)
REJECTED = Counter(
    "versus_rejected_requests", "Requests refused, by reason.", [*LABELS, "reason"]
)
MODEL_INFO = Gauge(
    "versus_model_info", "The served model (value 1).",
    [*LABELS, "version", "framework_version", "dataset", "sha256"], multiprocess_mode="livemax",
)
MODEL_LOAD = Gauge(
    "versus_model_load_seconds", "Seconds the worker spent loading and warming up its model.",
    LABELS, multiprocess_mode="livemax",
)


class ServiceMetrics:
    """The metric children of one served model (labels bound once, not per request)."""

    def __init__(self, framework: str, model: str) -> None:
        self.labels = (framework, model)
        self.stages = {stage: STAGE_DURATION.labels(*self.labels, stage) for stage in STAGES}
        self.batch_size = BATCH_SIZE.labels(*self.labels)
        self.batch_duration = BATCH_DURATION.labels(*self.labels)
        self.queue_depth = QUEUE_DEPTH.labels(*self.labels)
        self.inflight = INFLIGHT.labels(*self.labels)

    def observe_stages(self, seconds: dict[str, float]) -> None:
        """Record the stage durations of one request (stages absent from ``seconds`` skipped)."""
        for stage, value in seconds.items():
            if stage in self.stages:
                self.stages[stage].observe(value)

    def observe_batch(self, images: int, seconds: float) -> None:
        """Record one executed batch: its images and the runtime's seconds on it."""
        self.batch_size.observe(images)
        self.batch_duration.observe(seconds)

    def observe_request(self, route: str, code: int, seconds: float) -> None:
        REQUESTS.labels(*self.labels, route, str(code)).inc()
        REQUEST_DURATION.labels(*self.labels, route).observe(seconds)

    def rejected(self, reason: str) -> None:
        REJECTED.labels(*self.labels, reason).inc()

    def model_loaded(
        self, *, version: str, framework_version: str, dataset: str, sha256: str, seconds: float
    ) -> None:
        MODEL_INFO.labels(*self.labels, version, framework_version, dataset, sha256[:12]).set(1)
        MODEL_LOAD.labels(*self.labels).set(seconds)


def render_latest() -> tuple[bytes, str]:
    """The exposition text of this process, or of all workers in multi-process mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
