"""The request body, read whole, or a 400 when it ends before its ``Content-Length``.

gunicorn hands the app a body that simply stops when the client stops sending, so a client
that promised 5,000 bytes, sent 100 and half-closed its socket would have its 100 bytes
decoded as if they were the request. Reading through :func:`read_body` refuses that.
"""

from __future__ import annotations

from flask import request

from services.errors import ApiError


def read_body() -> bytes:
    """The whole body (not cached: the caller owns the only copy)."""
    data = request.get_data(cache=False)
    declared = request.content_length
    if declared is not None and len(data) < declared:
        raise ApiError(400, f"malformed request body: it ended before its declared length "
                            f"({len(data):,} of {declared:,} bytes)", reason="malformed_body")
    return data
