"""``python -m bench soak``: one service at saturation, good and bad requests mixed, for
minutes; every request must be answered and the service's memory must stay flat.

    python -m bench soak --url http://127.0.0.1:8004 --pid <gunicorn master pid> --minutes 10
    python -m bench soak --model onnx=models/dr/onnx/1 [--proxy] --minutes 10  # started here

``--concurrency`` closed-loop clients (keep-alive sessions, no pause: saturation) send a
weighted mix of requests (:data:`MIX`): good images, undecodable bytes, a wrong
Content-Type, a body over the service's limit (``Content-Length`` says so; the body is sent
until the answer arrives) and malformed Open Inference Protocol JSON. An answer is
acceptable when it is a 200, a 4xx, or a 503 with Retry-After (busy); anything else is a bad
answer, and no HTTP answer at all is a lost request.

Reported per ``--interval-s`` (default: a minute): requests sent and answered, p50/p99 of
every answered request and of the good ones, and the RSS of the service's process tree (the
gunicorn master and its workers, from /proc); in total: answers by kind and status. Exit
status 1 when a request was lost or badly answered, or when RSS at the end exceeds RSS at
the end of the first interval by more than ``--max-rss-growth`` (default 5 %); 2 for usage
errors. Loopback only, bounded by ``--minutes``.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests

from bench.proctree import tree_rss_bytes
from bench.robustness.proxy import DEFAULT_MAX_BODY_BYTES, proxied_service
from bench.robustness.sample_image import random_png
from bench.services import LocalServiceSettings, ServiceError

PROG = "python -m bench soak"
MIX = {"good": 70, "undecodable": 8, "wrong-content-type": 7, "oversized": 5,
       "bad-oip-json": 10}
"""Relative weights of the request kinds."""
REQUEST_TIMEOUT_S = 30.0
OVERSIZED_PIECE = b"\0" * 65536
BAD_OIP_BODIES = (b'{"inputs": [{"name": "image", "datatype": "BYTES"',  # truncated
                  b'{"inputs": "not a list"}',
                  b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], '
                  b'"data": [1.0]}]}')  # shape and data disagree
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class Answer:
    kind: str
    started: float
    elapsed_s: float
    status: int | None
    """None: no HTTP answer (lost)."""
    retry_after: bool = False

    @property
    def acceptable(self) -> bool:
        if self.status is None:
            return False
        return self.status == 200 or 400 <= self.status < 500 or (
            self.status == 503 and self.retry_after)


class Target:
    """The service under soak: its URL, OIP model name, body limit and sample images."""

    def __init__(self, url: str, max_body_bytes: int, seed: int = 0) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.max_body_bytes = max_body_bytes
        manifest = requests.get(self.url + "/model", timeout=10).json()
        self.model_name = manifest.get("dataset", "model")
        self.images = [random_png(seed + i) for i in range(8)]

    def send(self, session: requests.Session, kind: str, rng: random.Random) -> Answer:
        started = time.monotonic()
        try:
            if kind == "oversized":
                status, retry_after = self._oversized()
            else:
                path, body, content_type = self._request(kind, rng)
                response = session.post(self.url + path, data=body, timeout=REQUEST_TIMEOUT_S,
                                        headers={"Content-Type": content_type,
                                                 "Accept": "application/json"})
                status, retry_after = response.status_code, "Retry-After" in response.headers
        except (requests.RequestException, OSError):
            status, retry_after = None, False
        return Answer(kind, started, time.monotonic() - started, status, retry_after)

    def _request(self, kind: str, rng: random.Random) -> tuple[str, bytes, str]:
        image = rng.choice(self.images)
        if kind == "good":
            return "/predict", image, "image/png"
        if kind == "undecodable":
            return "/predict", rng.randbytes(2048), "image/png"
        if kind == "wrong-content-type":
            return "/predict", image, "text/plain"
        if kind == "bad-oip-json":
            return (f"/v2/models/{self.model_name}/infer", rng.choice(BAD_OIP_BODIES),
                    "application/json")
        raise ValueError(f"unknown request kind {kind!r}")

    def _oversized(self) -> tuple[int | None, bool]:
        """A body one byte over the limit, declared in Content-Length and sent only until
        the answer (sent from the header alone by nginx and Flask) is there."""
        declared = self.max_body_bytes + 1
        with socket.create_connection(self.address, timeout=REQUEST_TIMEOUT_S) as sock:
            sock.sendall((f"POST /predict HTTP/1.1\r\nHost: {self.address[0]}\r\n"
                          f"Content-Type: image/png\r\nAccept: application/json\r\n"
                          f"Content-Length: {declared}\r\nConnection: close\r\n\r\n").encode())
            sent = 0
            while sent < declared and not select.select([sock], [], [], 0)[0]:
                piece = OVERSIZED_PIECE[:declared - sent]
                try:
                    sock.sendall(piece)
                except OSError:
                    break  # closed after answering: read the answer
                sent += len(piece)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
        if not head.startswith(b"HTTP/"):
            return None, False
        lines = head.split(b"\r\n\r\n")[0].split(b"\r\n")
        retry_after = any(line.lower().startswith(b"retry-after:") for line in lines[1:])
        return int(lines[0].split()[1]), retry_after


def _client(target: Target, seed: int, until: float, answers: list[Answer],
            lock: threading.Lock) -> None:
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    with requests.Session() as session:
        while time.monotonic() < until:
            answer = target.send(session, rng.choices(kinds, weights)[0], rng)
            with lock:
                answers.append(answer)
            if answer.status is None:
                session.close()


def _percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 2) if values else None


def summarize(answers: list[Answer], rss: list[int], started: float, interval_s: float,
              max_rss_growth: float) -> dict[str, object]:
    """Per-interval and total figures, and the verdict (``passed``)."""
    intervals = []
    for index, rss_bytes in enumerate(rss):
        lo, hi = started + index * interval_s, started + (index + 1) * interval_s
        window = [a for a in answers if lo <= a.started < hi]
        answered = [a.elapsed_s for a in window if a.status is not None]
        good = [a.elapsed_s for a in window if a.kind == "good" and a.status == 200]
        intervals.append({
            "interval": index + 1, "sent": len(window), "answered": len(answered),
            "p50_ms": _percentile_ms(answered, 50), "p99_ms": _percentile_ms(answered, 99),
            "good_p50_ms": _percentile_ms(good, 50), "good_p99_ms": _percentile_ms(good, 99),
            "rss_mib": round(rss_bytes / 2**20, 1)})
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, status), count in sorted(Counter(
            (a.kind, "lost" if a.status is None else str(a.status)) for a in answers).items()):
        by_kind.setdefault(kind, {})[status] = count
    lost = sum(1 for a in answers if a.status is None)
    bad = sum(1 for a in answers if a.status is not None and not a.acceptable)
    growth = (rss[-1] / rss[0] - 1) if len(rss) > 1 and rss[0] else 0.0
    return {
        "sent": len(answers), "answered": len(answers) - lost, "lost": lost,
        "bad_answers": bad, "by_kind": by_kind, "intervals": intervals,
        "rss_growth_after_first_interval": round(growth, 4),
        "max_rss_growth": max_rss_growth,
        "passed": lost == 0 and bad == 0 and growth <= max_rss_growth,
    }


def soak(target: Target, pid: int, duration_s: float, interval_s: float, concurrency: int,
         max_rss_growth: float, log: Callable[[str], None] = print) -> dict[str, object]:
    """Saturate ``target`` for ``duration_s``; RSS of ``pid``'s tree at each interval's end."""
    answers: list[Answer] = []
    lock = threading.Lock()
    started = time.monotonic()
    until = started + duration_s
    clients = [threading.Thread(target=_client, args=(target, seed, until, answers, lock),
                                daemon=True) for seed in range(concurrency)]
    for client in clients:
        client.start()
    rss = []
    for index in range(max(1, round(duration_s / interval_s))):
        time.sleep(max(0.0, started + (index + 1) * interval_s - time.monotonic()))
        rss.append(tree_rss_bytes(pid))
        with lock:
            done = len(answers)
        log(f"soak: {time.monotonic() - started:6.0f} s  {done} answers  "
            f"rss {rss[-1] / 2**20:.1f} MiB")
    for client in clients:
        client.join(REQUEST_TIMEOUT_S + 5)
    with lock:
        return summarize(list(answers), rss, started, interval_s, max_rss_growth)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="One service at saturation with "
                                "good and bad requests: nothing lost, memory flat.",
                                epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running service (or its proxy); needs --pid")
    where.add_argument("--model", metavar="RUNTIME=DIR",
                       help="start this service here on loopback for the soak")
    p.add_argument("--pid", type=int, help="with --url: the service's gunicorn master")
    p.add_argument("--proxy", action="store_true", help="with --model: soak through the nginx "
                   "proxy of deploy/nginx/ (default: gunicorn directly)")
    p.add_argument("--minutes", type=float, default=10.0, help="duration (default: 10)")
    p.add_argument("--interval-s", type=float, default=60.0,
                   help="reporting interval (default: 60, a minute)")
    p.add_argument("--concurrency", type=int, default=16, help="clients (default: 16)")
    p.add_argument("--max-rss-growth", type=float, default=0.05,
                   help="allowed RSS growth after the first interval (default: 0.05 = 5%%)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"the service's VERSUS_MAX_BODY_BYTES "
                        f"(default: {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--intra-op-threads", type=int, default=1,
                   help="with --model (default: 1)")
    p.add_argument("--json", type=Path, help="also write the summary here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.url and args.pid is None:
        parser.error("--url needs --pid (the gunicorn master whose memory is watched)")
    if args.interval_s <= 0 or args.minutes * 60 < args.interval_s:
        parser.error("--minutes must cover at least one --interval-s")
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        if args.url:
            summary = soak(Target(args.url, args.max_body_bytes), args.pid, args.minutes * 60,
                           args.interval_s, args.concurrency, args.max_rss_growth, log)
        else:
            summary = _soak_started_here(args, log)
    except (requests.RequestException, ServiceError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if summary["passed"] else EXIT_FAILED


def _soak_started_here(args: argparse.Namespace, log: Callable[[str], None]
                       ) -> dict[str, object]:
    runtime, _, model = args.model.partition("=")
    workdir = Path(tempfile.mkdtemp(prefix="versus-soak-"))
    settings = LocalServiceSettings(workers=1, http_threads=32,
                               intra_op_threads=args.intra_op_threads)
    with proxied_service(runtime, Path(model), workdir, settings, proxy=args.proxy,
                         max_body_bytes=args.max_body_bytes) as (service, proxy):
        assert service.process is not None
        url = proxy.url if proxy is not None else service.url
        summary = soak(Target(url, args.max_body_bytes), service.process.pid,
                       args.minutes * 60, args.interval_s, args.concurrency,
                       args.max_rss_growth, log)
        return {"runtime": runtime, "via": "proxy" if proxy else "gunicorn", **summary}
