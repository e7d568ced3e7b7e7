"""bench.load.openloop: Poisson arrivals sent regardless of completions, measured from arrival."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.load.openloop import OpenLoopPlan, poisson_arrivals, run_open_loop, warm_up

PAYLOADS = [(b"\xff\xd8fake-jpeg", {"Content-Type": "image/jpeg"})]


class Stub(ThreadingHTTPServer):
    daemon_threads = True
    delay_s = 0.005
    status = 200


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(self.server.delay_s)
        body = b'{"label": "a"}'
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: Stub) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def alive() -> None:
    return None


def test_arrivals_are_seeded_poisson() -> None:
    arrivals = poisson_arrivals(200.0, 50.0, seed=1)
    assert arrivals == poisson_arrivals(200.0, 50.0, seed=1)
    assert len(arrivals) == pytest.approx(10_000, rel=0.05)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # exponential gaps: mean == standard deviation == 1 / rate
    assert statistics.fmean(gaps) == pytest.approx(1 / 200, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(1 / 200, rel=0.08)
    with pytest.raises(ValueError):
        poisson_arrivals(0.0, 1.0, 0)


def test_open_loop_sustains_the_rate_and_reports_latency(stub: Stub) -> None:
    plan = OpenLoopPlan(rate_rps=40.0, duration_s=2.5, warmup_s=0.5, max_connections=8)
    result = run_open_loop(url(stub), PAYLOADS, plan, alive)
    assert result["status"] == "ok"
    assert result["failed"] == 0 and result["issued"] == result["planned"]
    assert result["achieved_rps"] == pytest.approx(40.0, rel=0.4)
    assert result["latency_ms"]["p50"] >= stub.delay_s * 1e3
    assert result["latency_ms"]["p99"] >= result["service_ms"]["p50"]


def test_errors_are_not_throughput(stub: Stub) -> None:
    stub.status = 503
    plan = OpenLoopPlan(rate_rps=30.0, duration_s=1.0, warmup_s=0.0, max_connections=4)
    result = run_open_loop(url(stub), PAYLOADS, plan, alive)
    assert result["ok"] == 0 and result["achieved_rps"] == 0
    assert result["error_rate"] == 1.0 and result["latency_ms"] is None
    assert set(result["codes"]) == {"503"}


def test_a_service_that_cannot_keep_up_ends_the_run_as_overloaded(stub: Stub) -> None:
    stub.delay_s = 0.5
    plan = OpenLoopPlan(rate_rps=100.0, duration_s=5.0, warmup_s=0.0, max_connections=2,
                        max_backlog=10)
    started = time.monotonic()
    result = run_open_loop(url(stub), PAYLOADS, plan, alive)
    assert result["status"] == "overloaded"
    assert result["issued"] < result["planned"]
    assert time.monotonic() - started < 5.0 + 2.0


def test_a_dead_service_is_reported_as_died(stub: Stub) -> None:
    death = {"exit_code": -9, "signal": 9, "log_tail": "killed"}
    plan = OpenLoopPlan(rate_rps=20.0, duration_s=2.0, warmup_s=0.0, max_connections=2)
    result = run_open_loop(url(stub), PAYLOADS, plan, lambda: death)
    assert result["status"] == "died" and result["death"] == death


def test_warm_up_counts_outcomes(stub: Stub) -> None:
    counts = warm_up(url(stub), PAYLOADS, 0.3, users=2)
    assert counts["ok"] > 0 and counts["failed"] == 0
