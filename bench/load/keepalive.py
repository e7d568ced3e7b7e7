"""The bench's HTTP client: keep-alive HTTP/1.1 connections, one per thread, to one service.

Load generators must not pay a TCP handshake per request (the service would look slower than
it is), and ``http.client`` releases the GIL while it waits, so plain threads can drive a few
hundred requests/s. A connection the server closed between two requests is reopened once.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

DEFAULT_PORT = 80


class KeepAliveClient:
    """Per-thread keep-alive connections to the service at ``url`` (scheme://host:port)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORT
        self.timeout_s = timeout_s
        self._local = threading.local()

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """(status, response body) of ``POST path``; raises ``OSError`` or
        ``http.client.HTTPException`` when the request failed on a fresh connection too."""
        for attempt in range(2):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout_s)
                self._local.connection = connection
            try:
                connection.request("POST", path, body, dict(headers))
                response = connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")
