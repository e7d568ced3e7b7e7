"""Operational endpoints: liveness, readiness, the model's manifest and Prometheus metrics.

- ``GET /healthz``  200 while the process can answer at all (liveness: restart if not);
- ``GET /readyz``   200 once the model is loaded *and* warmed up (with the batching setup:
                    the preferred batch size and the images/s per batch size it was chosen
                    by at warm-up),
                    503 + Retry-After while loading or draining (route traffic here or not);
- ``GET /model``    the model's manifest;
- ``GET /metrics``  Prometheus exposition text (all workers merged).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from services.metrics import render_latest

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="alive")


@bp.get("/readyz")
def readyz() -> Response:
    engine = current_app.extensions["versus"]
    engine.require_ready()
    settings = engine.settings
    return jsonify(
        status="ready",
        model=engine.model_json(),
        serving={
            "max_batch_size": settings.max_batch_size,
            "preferred_batch_size": engine.batcher.preferred_batch_size,
            "max_queue_delay_ms": settings.max_queue_delay_ms,
            "queue_size": settings.queue_size,
            "intra_op_threads": settings.threads,
            "batch_buckets": engine.batcher.buckets,
            "images_per_s_by_batch_size": {
                str(n): round(rate, 2) for n, rate in engine.batcher.images_per_s.items()
            },
        },
    )


@bp.get("/model")
def model() -> Response:
    """``manifest.json`` exactly as validated (it round-trips through ``Manifest.from_dict``)."""
    return jsonify(current_app.extensions["versus"].manifest.to_dict())


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = render_latest()
    return Response(body, content_type=content_type)
