"""The Flask app factory shared by the four services (pallets/flask tutorial style).

``create_app(config)`` builds one app around one :class:`~services.engine.InferenceEngine`.
Under gunicorn it runs in each worker *after* the fork (``preload_app = False``, the app is
imported from ``services.wsgi``), so the framework is initialised and the model loaded and
warmed up inside the process that serves it; the worker accepts connections only then.

``config`` takes the ``VERSUS_*`` names without the prefix (see ``services.settings``) on top
of the environment, plus ``PREDICTOR``: an already loaded predictor to serve (tests load each
runtime once per session). ``start=False`` leaves the engine unloaded (``/readyz`` = 503)
until ``app.extensions["versus"].start()``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider

from services import memory, oip, pillow_warnings, routes_health, routes_web
from services.engine import InferenceEngine
from services.errors import register_error_handlers
from services.settings import ServiceSettings, env_mapping

#: Content-Security-Policy of the HTML pages: no external anything, thumbnails as data: URIs.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


class StrictJSONProvider(DefaultJSONProvider):
    """Every JSON response is strict JSON: a NaN or infinity raises instead of being written
    as the ``NaN`` / ``Infinity`` that Python emits and other parsers refuse. Answers that
    could hold one (model outputs) are checked before they get here, so this is the net."""

    sort_keys = False  # keep the documented field order of every response

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def create_app(config: Mapping[str, Any] | None = None, *, start: bool = True) -> Flask:
    """Build the service app: settings, engine (loaded + warmed unless ``start=False``),
    blueprints, error handlers and request metrics."""
    values = {**env_mapping(), **(config or {})}
    settings = ServiceSettings.from_mapping(values)
    engine = InferenceEngine(settings, predictor=values.get("PREDICTOR"))

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = StrictJSONProvider(app)
    app.extensions["versus"] = engine
    for blueprint in (routes_web.bp, routes_health.bp, oip.bp):
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    pillow_warnings.install()
    memory.limit_arenas()
    _instrument(app, engine)
    if start:
        engine.start()
    return app


def _instrument(app: Flask, engine: InferenceEngine) -> None:
    """Count every request by route template and status, time it, track in-flight ones."""
    metrics = engine.metrics

    @app.before_request
    def _begin() -> None:
        g.versus_started = time.perf_counter()
        metrics.inflight.inc()

    @app.after_request
    def _end(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("versus_started", time.perf_counter())
        metrics.observe_request(route, response.status_code, time.perf_counter() - started)
        if response.mimetype == "text/html":
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.teardown_request
    def _teardown(_exc: BaseException | None) -> None:
        if g.pop("versus_started", None) is not None:
            metrics.inflight.dec()
