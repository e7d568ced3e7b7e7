"""Open-loop load: Poisson arrivals at a fixed rate, MLPerf's Server scenario (p99 latency at
a given request rate).

Why not Locust: Locust is a closed system. Each user sends its next request only after the
previous one came back, so when the server slows down the arrival rate drops with it and
the slow period is sampled less (coordinated omission). A ``wait_time`` drawn from an
exponential distribution does not change that: arrivals are still gated by completions.
An open-loop generator sends at the scheduled times whatever the server does, and measures
each latency from the request's *scheduled* arrival, so time spent waiting for a free
connection on the client counts too, exactly as it would for independent real clients.

Implementation: arrival times are drawn up front (exponential gaps, seeded); a scheduler
thread sleeps until each one and hands the request to a thread pool whose threads keep
one keep-alive HTTP connection each (``http.client`` releases the GIL while waiting, so a few
hundred requests/s are no problem for it). The run is bounded: ``duration_s`` of arrivals, a
drain timeout, and a backlog limit (``max_backlog`` scheduled-but-unfinished requests) that
ends the run early as "overloaded" when the service cannot keep up with the rate.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.load.keepalive import KeepAliveClient
from bench.stats import latency_summary

PREDICT_PATH = "/predict"
REQUEST_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 30.0
DEATH_CHECK_S = 1.0


@dataclass(frozen=True)
class OpenLoopPlan:
    rate_rps: float
    duration_s: float = 30.0
    warmup_s: float = 3.0
    """Arrivals in the first seconds are sent but not counted (connections, caches)."""
    max_connections: int = 64
    max_backlog: int = 512
    seed: int = 0


def poisson_arrivals(rate: float, duration_s: float, seed: int) -> list[float]:
    """Arrival offsets (s) of a Poisson process of ``rate`` per second over ``duration_s``."""
    if rate <= 0:
        raise ValueError(f"open-loop rate must be > 0, got {rate}")
    rng = random.Random(seed)
    times, t = [], rng.expovariate(rate)
    while t < duration_s:
        times.append(t)
        t += rng.expovariate(rate)
    return times


@dataclass
class _Result:
    scheduled: float
    sent: float
    done: float
    ok: bool
    code: int


Payload = tuple[bytes, Mapping[str, str]]
"""(body, headers) of one request: a ``/predict`` upload or an OIP inference request."""


class _Client:
    """``POST path`` over the bench's keep-alive client, failures as status 0; ``path``:
    ``/predict`` with its query (``?input=dataset`` for dataset images), or the OIP route."""

    def __init__(self, url: str, path: str = PREDICT_PATH) -> None:
        self.client = KeepAliveClient(url, REQUEST_TIMEOUT_S)
        self.path = path

    def post(self, body: bytes, headers: Mapping[str, str]) -> int:
        """POST the request, return the status (0 when the connection failed)."""
        try:
            status, _ = self.client.post(self.path, body, headers)
        except (OSError, http.client.HTTPException):
            return 0
        return status


def run_open_loop(url: str, payloads: Sequence[Payload], plan: OpenLoopPlan,
                  death: Callable[[], dict[str, Any] | None], path: str = PREDICT_PATH
                  ) -> dict[str, Any]:
    """Send Poisson arrivals to ``url`` + ``path`` (``payloads``: (body, headers) pairs,
    as the locustfile sends them); returns the JSON-able result (latencies from the
    scheduled arrival time; failures never count as throughput)."""
    arrivals = poisson_arrivals(plan.rate_rps, plan.duration_s, plan.seed)
    client = _Client(url, path)
    results: list[_Result] = []
    lock = threading.Lock()
    outstanding = threading.Semaphore(0)
    pending = [0]

    def send(scheduled: float, body: bytes, headers: Mapping[str, str]) -> None:
        sent = time.perf_counter()
        code = client.post(body, headers)
        done = time.perf_counter()
        with lock:
            results.append(_Result(scheduled, sent, done, 200 <= code < 300, code))
            pending[0] -= 1
        outstanding.release()

    status, died = "ok", None
    origin = time.perf_counter() + 0.1
    last_check = 0.0
    issued = 0
    with ThreadPoolExecutor(plan.max_connections, thread_name_prefix="openloop") as pool:
        for i, offset in enumerate(arrivals):
            scheduled = origin + offset
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            now = time.perf_counter()
            if now - last_check >= DEATH_CHECK_S:
                last_check = now
                died = death()
                if died is not None:
                    status = "died"
                    break
            with lock:
                if pending[0] >= plan.max_backlog:
                    status = "overloaded"
                    break
                pending[0] += 1
            pool.submit(send, scheduled, *payloads[i % len(payloads)])
            issued += 1
        drain_deadline = time.perf_counter() + DRAIN_TIMEOUT_S
        while True:
            with lock:
                left = pending[0]
            if left == 0 or time.perf_counter() > drain_deadline:
                break
            outstanding.acquire(timeout=0.2)
        if status == "ok" and left:
            status = "drain-timeout"
        pool.shutdown(wait=False, cancel_futures=True)
    if status == "ok":
        died = death()
        status = "ok" if died is None else "died"
    with lock:
        finished = list(results)
    return summarise(finished, plan, origin, issued, len(arrivals), status, died)


def summarise(results: Sequence[_Result], plan: OpenLoopPlan, origin: float, issued: int,
              planned: int, status: str, died: dict[str, Any] | None) -> dict[str, Any]:
    """The open-loop record: counts, achieved rate, latency from arrival and server time."""
    counted = [r for r in results if r.scheduled - origin >= plan.warmup_s]
    good = [r for r in counted if r.ok]
    span = plan.duration_s - plan.warmup_s
    codes: dict[str, int] = {}
    for r in counted:
        codes[str(r.code)] = codes.get(str(r.code), 0) + 1
    return {
        "status": status,
        "rate_rps": plan.rate_rps,
        "duration_s": plan.duration_s,
        "warmup_s": plan.warmup_s,
        "planned": planned,
        "issued": issued,
        "completed": len(results),
        "counted": len(counted),
        "ok": len(good),
        "failed": len(counted) - len(good),
        "error_rate": (len(counted) - len(good)) / len(counted) if counted else None,
        "achieved_rps": len(good) / span if span > 0 else None,
        "latency_ms": latency_summary((r.done - r.scheduled) * 1e3 for r in good),
        "service_ms": latency_summary((r.done - r.sent) * 1e3 for r in good),
        "client_wait_ms": latency_summary((r.sent - r.scheduled) * 1e3 for r in good),
        "codes": codes,
        "death": died,
        "max_connections": plan.max_connections,
    }


def warm_up(url: str, payloads: Sequence[Payload], seconds: float, users: int,
            path: str = PREDICT_PATH) -> dict[str, int]:
    """Closed-loop warm-up before a service is measured: ``users`` threads send back to back
    for ``seconds`` (caches, allocator, connection pools, JIT paths); nothing is recorded
    but the outcome counts."""
    client = _Client(url, path)
    stop_at = time.perf_counter() + seconds
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def loop(index: int) -> None:
        i = index
        while time.perf_counter() < stop_at:
            code = client.post(*payloads[i % len(payloads)])
            i += users
            with lock:
                counts["ok" if 200 <= code < 300 else "failed"] += 1

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + REQUEST_TIMEOUT_S)
    return counts
