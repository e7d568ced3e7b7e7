"""A Locust plugin file (no users): every request's completion time, latency and outcome,
one line each, in the file named by ``VERSUS_BENCH_SAMPLES``.

The bench passes it next to the project's locustfiles (``-f loadtest/,bench/locust_plugin.py``)
so that the locustfiles stay what a user runs by hand, while the bench gets raw samples:
exact percentiles over exactly the stable windows (Locust's own CSV percentiles cover the
whole run including ramp-up and are rounded into its response-time buckets), and windows
it can test for stability while the run is going. Only locust and the standard library are
imported here (gevent monkey-patching must not meet a framework).

Line format (tab-separated): ``end_epoch_s  latency_ms  ok(1/0)  http_code  method  name``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from locust import events

SAMPLES_ENV = "VERSUS_BENCH_SAMPLES"

_path = os.environ.get(SAMPLES_ENV)
# Line-buffered: the bench reads the file while Locust runs (a write per request is far
# cheaper than the HTTP request it records).
_out = open(_path, "a", buffering=1, encoding="utf-8") if _path else None  # noqa: SIM115


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float, response_length: int,
            response: Any = None, context: Any = None, exception: Any = None,
            start_time: float | None = None, url: str | None = None, **_: Any) -> None:
    if _out is None:
        return
    latency_ms = float(response_time or 0.0)
    end = (start_time + latency_ms / 1e3) if start_time else time.time()
    code = getattr(response, "status_code", 0) or 0
    ok = 0 if exception else 1
    _out.write(f"{end:.6f}\t{latency_ms:.3f}\t{ok}\t{int(code)}\t{request_type}\t{name}\n")


@events.quitting.add_listener
def _close(**_: Any) -> None:
    if _out is not None:
        _out.flush()
