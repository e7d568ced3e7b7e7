"""What a SIGKILLed gunicorn worker costs clients, straight to gunicorn and behind the proxy.

    python -m bench.robustness.worker_kill --model onnx=models/dr/onnx/1 \
        --model torch=models/dr/torch/1 \
        [--workers 1,2] [--modes direct,proxy] [--clients 4] [--json worker-kill.json]

For each runtime, worker count and mode the service is started on loopback (mode ``proxy``:
behind the nginx of deploy/nginx/, via :mod:`bench.robustness.proxy`), ``--clients`` closed-loop
clients (keep-alive sessions, like real API clients) send ``POST /predict`` with a small
PNG, and after ``--warm-s`` one worker is SIGKILLed. Every request ends in one outcome:

- ``ok``: 200; ``503``: 503 with Retry-After (the proxy's "upstream gone", or the service's
  own "busy"); ``status-<n>``: any other HTTP status;
- ``lost``: no HTTP answer at all (connection reset or refused, or no answer in
  ``--request-timeout-s``): what a client cannot tell from a network failure.

Reported per run: requests sent, outcomes, the requests in flight at the kill, the time from
the kill to the first 200 of a request sent after it, the longest stretch without any 200,
and the longest wait for an error answer (behind the proxy, a 503 comes at once while no
worker is ready: services/availability.py). The run ends ``--settle-s`` after that first
success, or ``--recovery-timeout-s`` after the kill. Loopback only; every process started
is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from bench.proctree import children
from bench.robustness.proxy import proxied_service
from bench.robustness.sample_image import random_png
from bench.services import LocalServiceSettings, Service

MODES = ("direct", "proxy")
READY_TIMEOUT_S = 300.0


@dataclass
class Outcome:
    started: float
    ended: float
    kind: str


@dataclass
class KillRun:
    """One kill: settings and what the clients saw."""

    runtime: str
    mode: str
    workers: int
    killed_pid: int
    sent: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    in_flight_at_kill: int = 0
    in_flight_outcomes: dict[str, int] = field(default_factory=dict)
    first_success_after_kill_s: float | None = None
    slowest_error_answer_s: float | None = None
    """The longest any request waited for an answer that was not a 200 (a 503, say)."""
    longest_gap_without_success_s: float = 0.0
    respawned: bool = False


def _request_outcome(session: requests.Session, url: str, body: bytes, timeout_s: float
                     ) -> str:
    try:
        response = session.post(url + "/predict", data=body, timeout=timeout_s, headers={
            "Content-Type": "image/png", "Accept": "application/json"})
    except requests.RequestException:
        return "lost"
    if response.status_code == 200:
        return "ok"
    if response.status_code == 503 and "Retry-After" in response.headers:
        return "503"
    return f"status-{response.status_code}"


def _client(url: str, body: bytes, stop: threading.Event, timeout_s: float, pause_s: float,
            outcomes: list[Outcome], lock: threading.Lock) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            started = time.monotonic()
            kind = _request_outcome(session, url, body, timeout_s)
            with lock:
                outcomes.append(Outcome(started, time.monotonic(), kind))
            if kind != "ok":
                session.close()  # a broken keep-alive connection is not reused
            stop.wait(pause_s)


def summarize(run: KillRun, outcomes: list[Outcome], killed_at: float) -> KillRun:
    """Fill ``run``'s counts and times from the clients' outcomes."""
    run.sent = len(outcomes)
    run.outcomes = dict(Counter(o.kind for o in outcomes))
    held = [o for o in outcomes if o.started < killed_at <= o.ended]
    run.in_flight_at_kill = len(held)
    run.in_flight_outcomes = dict(Counter(o.kind for o in held))
    after = [o.ended for o in outcomes if o.kind == "ok" and o.started >= killed_at]
    run.first_success_after_kill_s = min(after) - killed_at if after else None
    waits = [o.ended - o.started for o in outcomes if o.kind not in ("ok", "lost")]
    run.slowest_error_answer_s = max(waits, default=None)
    successes = sorted(o.ended for o in outcomes if o.kind == "ok")
    gaps = [b - a for a, b in zip(successes, successes[1:], strict=False)]
    run.longest_gap_without_success_s = max(gaps, default=0.0)
    return run


def kill_once(service: Service, url: str, runtime: str, mode: str, workers: int, body: bytes,
              args: argparse.Namespace) -> KillRun:
    """Drive ``url`` with the clients, SIGKILL one of ``service``'s workers, measure."""
    assert service.process is not None
    stop, lock = threading.Event(), threading.Lock()
    outcomes: list[Outcome] = []
    threads = [threading.Thread(target=_client, daemon=True, args=(
        url, body, stop, args.request_timeout_s, args.pause_s, outcomes, lock))
        for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    time.sleep(args.warm_s)
    before = children(service.process.pid)
    victim = before[0]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    deadline = killed_at + args.recovery_timeout_s
    while time.monotonic() < deadline:
        with lock:
            recovered = any(o.kind == "ok" and o.started >= killed_at for o in outcomes)
        if recovered:
            time.sleep(args.settle_s)
            break
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(args.request_timeout_s + 5)
    run = KillRun(runtime, mode, workers, victim)
    run.respawned = bool(set(children(service.process.pid)) - set(before))
    with lock:
        return summarize(run, list(outcomes), killed_at)


def run_one(runtime: str, model: Path, workers: int, mode: str, workdir: Path, body: bytes,
            args: argparse.Namespace) -> KillRun:
    settings = LocalServiceSettings(workers=workers, http_threads=args.http_threads,
                               intra_op_threads=args.intra_op_threads,
                               max_batch_size=args.max_batch_size, queue_size=32)
    with proxied_service(runtime, model, workdir, settings, proxy=mode == "proxy",
                         ready_timeout_s=READY_TIMEOUT_S) as (service, proxy):
        url = proxy.url if proxy is not None else service.url
        return kill_once(service, url, runtime, mode, workers, body, args)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.robustness.worker_kill",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="RUNTIME=DIR",
                   help="a runtime and its model directory (repeatable)")
    p.add_argument("--workers", default="1,2", help="worker counts to try (default: 1,2)")
    p.add_argument("--modes", default=",".join(MODES), help="direct (gunicorn) and/or proxy "
                   "(nginx in front) (default: direct,proxy)")
    p.add_argument("--clients", type=int, default=4, help="closed-loop clients (default: 4)")
    p.add_argument("--pause-s", type=float, default=0.02, help="pause between a client's "
                   "requests (default: 0.02)")
    p.add_argument("--warm-s", type=float, default=3.0, help="load before the kill "
                   "(default: 3.0)")
    p.add_argument("--settle-s", type=float, default=2.0, help="load after the first "
                   "success after the kill (default: 2.0)")
    p.add_argument("--recovery-timeout-s", type=float, default=90.0,
                   help="give up waiting for a success after the kill (default: 90)")
    p.add_argument("--request-timeout-s", type=float, default=30.0,
                   help="a request without an answer by then is lost (default: 30)")
    p.add_argument("--http-threads", type=int, default=32, help="default: 32")
    p.add_argument("--intra-op-threads", type=int, default=1, help="default: 1")
    p.add_argument("--max-batch-size", type=int, default=8, help="default: 8")
    p.add_argument("--workdir", type=Path, help="logs (default: a temporary directory)")
    p.add_argument("--json", type=Path, help="also write the runs here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    models = dict(item.split("=", 1) for item in args.model)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="versus-worker-kill-"))
    body = random_png()
    runs = []
    for runtime, model in models.items():
        for workers in (int(w) for w in args.workers.split(",")):
            for mode in args.modes.split(","):
                run = run_one(runtime, Path(model), workers, mode, workdir / runtime, body, args)
                runs.append(asdict(run))
                print(json.dumps(runs[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    lost = sum(r["outcomes"].get("lost", 0) for r in runs if r["mode"] == "proxy")
    print(f"{len(runs)} runs; requests lost behind the proxy: {lost}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
