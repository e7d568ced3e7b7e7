"""Slow and idle client floods, and how long well-behaved requests take while one is held.

    python -m bench.robustness.slow_clients --url http://127.0.0.1:8004 [--url http://127.0.0.1:9004]

A flood is ``count`` loopback connections to one service that misbehave in one way:

- ``idle``: connect and send nothing;
- ``slow-header``: a request line, then one header byte per ``interval_s``;
- ``slow-body``: complete headers announcing a 1 MB body, then one body byte per interval.

Behind a thread-per-connection server (gunicorn's gthread worker reads a request in one of
its ``threads``) each such connection holds a request thread, so a flood larger than the
thread count stalls everyone; behind the nginx proxy (deploy/nginx/) they cost an event-loop
slot each. :func:`measure` times ``requests`` good ``POST /predict`` calls, one after another,
while a flood is held; ``None`` marks one that got no answer within ``timeout_s``. One
background thread trickles all sockets; everything is bounded by count and time and closed
on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from bench.robustness.sample_image import random_png

KINDS = ("idle", "slow-header", "slow-body")
DEFAULT_COUNTS = {"idle": 128, "slow-header": 40, "slow-body": 40}
SLOW_BODY_BYTES = 1_000_000
CONNECT_TIMEOUT_S = 2.0


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


class Flood:
    """``count`` misbehaving connections to ``url``, held from ``__enter__`` to ``__exit__``
    (at most ``max_s`` seconds: the trickle stops then)."""

    def __init__(self, url: str, kind: str, count: int, interval_s: float = 1.0,
                 max_s: float = 60.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown flood kind {kind!r}; choose from {KINDS}")
        self.address, self.kind, self.count = _address(url), kind, count
        self.interval_s, self.max_s = interval_s, max_s
        self.sockets: list[socket.socket] = []
        self.closed_by_peer = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name=f"flood-{kind}", daemon=True)

    def _opening(self) -> bytes:
        host = f"{self.address[0]}:{self.address[1]}"
        if self.kind == "slow-header":
            return f"POST /predict HTTP/1.1\r\nHost: {host}\r\n".encode()
        if self.kind == "slow-body":
            return (f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
                    f"Content-Length: {SLOW_BODY_BYTES}\r\n\r\n").encode()
        return b""

    def __enter__(self) -> Flood:
        opening = self._opening()
        for _ in range(self.count):
            sock = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT_S)
            if opening:
                sock.sendall(opening)
            self.sockets.append(sock)
        self._thread.start()
        return self

    def _trickle(self) -> None:
        byte = b"x" if self.kind == "slow-header" else b"\0"
        deadline = time.monotonic() + self.max_s
        while not self._stop.wait(self.interval_s) and time.monotonic() < deadline:
            if self.kind == "idle":
                continue
            for sock in list(self.sockets):
                try:
                    sock.send(byte)
                except OSError:
                    self.sockets.remove(sock)
                    self.closed_by_peer += 1

    def held(self) -> int:
        """Connections still open (a peer that closed one is noticed at the next trickle)."""
        return len(self.sockets)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval_s + 5)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()


def timed_request(url: str, body: bytes, timeout_s: float, path: str = "/predict"
                  ) -> tuple[float | None, int | None]:
    """(seconds, status) of one ``POST path`` with a PNG body on a fresh connection;
    (None, None) when no answer came within ``timeout_s``."""
    host, port = _address(url)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.request("POST", path, body=body, headers={
            "Content-Type": "image/png", "Accept": "application/json"})
        response = connection.getresponse()
        response.read()
        return time.perf_counter() - started, response.status
    except OSError:
        return None, None
    finally:
        connection.close()


def measure(url: str, body: bytes, kind: str, count: int, requests: int = 5,
            timeout_s: float = 3.0, interval_s: float = 1.0) -> dict[str, object]:
    """Good-request latencies (None = no answer in ``timeout_s``) while a flood is held,
    and how many flood connections were still open after the last one."""
    with Flood(url, kind, count, interval_s=interval_s) as flood:
        time.sleep(interval_s)  # the flood is in place (and has trickled once)
        results = [timed_request(url, body, timeout_s) for _ in range(requests)]
        held = flood.held()
    return {"kind": kind, "count": count, "held": held,
            "latencies_s": [r[0] for r in results], "statuses": [r[1] for r in results]}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.robustness.slow_clients",
                                description="Good-request latency under slow/idle floods.")
    p.add_argument("--url", action="append", required=True,
                   help="service or proxy base URL (repeatable: e.g. gunicorn, then nginx)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"default: {','.join(KINDS)}")
    p.add_argument("--requests", type=int, default=5, help="good requests per flood "
                   "(default: 5)")
    p.add_argument("--timeout-s", type=float, default=3.0, help="per good request "
                   "(default: 3.0)")
    args = p.parse_args(argv)
    body = random_png()
    for url in args.url:
        for kind in args.kinds.split(","):
            result = measure(url, body, kind, DEFAULT_COUNTS[kind], args.requests,
                             args.timeout_s)
            print(json.dumps({"url": url, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
