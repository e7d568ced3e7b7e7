"""Error responses: every failure becomes ``{"error": "..."}`` with the right status, or an
HTML page when a browser asked (the upload form), and the service keeps serving.

Status mapping (the client's fault is never a 500):

- 400 bad input (no/empty file, undecodable image, malformed JSON, wrong tensor shape/dtype,
  an ``input`` parameter other than ``raw`` / ``dataset``,
  malformed HTTP body framing such as a bad chunk size, or a body that ends early),
- 404 unknown route or model, 405 wrong method (with ``Allow``),
- 413 body over ``MAX_BODY_BYTES`` (or an OIP body over the model's largest tensor), image
  over its byte or pixel limit, too many images, a decode larger than the memory budget,
- 415 wrong Content-Type or unsupported image format,
- 422 an input that drives the model to NaN or infinite outputs,
- 503 + ``Retry-After`` when the queue is full (checked before the body is read), the
  decode memory stays busy, the model is not ready or the worker drains.

Each refusal is counted in ``versus_rejected_requests_total{reason}``.
"""

from __future__ import annotations

import logging
import re
from functools import partial

from flask import Flask, Response, current_app, jsonify, render_template, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import (
    ClientDisconnected,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
)

from services.admission import BudgetBusy, OverBudget
from services.batching import BatcherStopped, QueueFull
from services.engine import NonFiniteOutput, NotReady, TooManyImages
from services.input_kind import BadInputKind
from shared.imaging import ImageError

log = logging.getLogger(__name__)

#: Paths that only ever answer JSON (machine APIs), whatever the Accept header says.
API_PREFIXES = ("/v2", "/model", "/metrics", "/healthz", "/readyz")


class ApiError(Exception):
    """A refusal with its HTTP status and a metric ``reason`` slug."""

    def __init__(self, status: int, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def wants_html() -> bool:
    """True when the client prefers HTML to JSON (a browser), never for the machine APIs."""
    if request.path.startswith(API_PREFIXES):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def _slug(name: str) -> str:
    """``UndecodableImage`` -> ``undecodable_image``; ``Not Found`` -> ``not_found``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.replace(" ", "_"))
    return name.lower().replace("__", "_")


def error_response(status: int, message: str, reason: str) -> Response:
    """Render one error as JSON or HTML, count it, add Retry-After to 503s."""
    engine = current_app.extensions["versus"]
    engine.metrics.rejected(reason)
    if wants_html():
        html = render_template("error.html", status=status, message=message, engine=engine)
        response = Response(html, status=status, mimetype="text/html")
    else:
        response = jsonify(error=message)
        response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(engine.settings.retry_after_s)
    return response


#: The service's own refusals: exception type -> (status, metric reason).
REFUSALS: dict[type[Exception], tuple[int, str]] = {
    TooManyImages: (413, "too_many_images"),
    BadInputKind: (400, "bad_input_kind"),
    OverBudget: (413, "over_decode_budget"),
    BudgetBusy: (503, "decode_memory_busy"),
    NonFiniteOutput: (422, "non_finite_output"),
    QueueFull: (503, "queue_full"),
    NotReady: (503, "not_ready"),
    BatcherStopped: (503, "draining"),
}


def _refusal(status: int, reason: str, exc: Exception) -> Response:
    return error_response(status, str(exc), reason)


def _too_large_message() -> str:
    """What a 413 from werkzeug means: a body over the limit, or (multipart only, the body
    may be small) too many form parts or too large a text field."""
    limit = request.max_content_length
    message = f"request body too large: the limit is {limit:,} bytes"
    if request.mimetype == "multipart/form-data":
        message = (f"multipart form refused: {message}, at most {request.max_form_parts:,} "
                   f"parts and {request.max_form_memory_size:,} bytes in a non-file field")
    return message


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that map every exception type above to a response."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.reason)

    @app.errorhandler(ImageError)
    def _image_error(exc: ImageError) -> Response:
        message = "; ".join([str(exc), *getattr(exc, "__notes__", [])])
        return error_response(exc.http_status, message, _slug(type(exc).__name__))

    for exc_type, (status, reason) in REFUSALS.items():
        app.register_error_handler(exc_type, partial(_refusal, status, reason))

    @app.errorhandler(ParseException)
    @app.errorhandler(NoMoreData)
    def _framing(exc: Exception) -> Response:
        """gunicorn raises these while the app reads the body: a chunk size that is not
        hex, chunk data without its CRLF, a body that ends before its last chunk."""
        detail = str(exc) or "the body ended before it was complete"
        return error_response(400, f"malformed request body: {detail}", "malformed_body")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        reason = _slug(exc.name)
        if isinstance(exc, RequestEntityTooLarge):
            message = _too_large_message()
        elif isinstance(exc, ClientDisconnected):
            message = "malformed request body: it ended before it was complete"
            reason = "malformed_body"
        response = error_response(status, message, reason)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal server error", "internal_error")
