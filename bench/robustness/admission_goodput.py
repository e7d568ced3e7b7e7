"""Goodput under overload: successful responses per second with many clients that retry a
503 at once, against the unloaded peak.

    python -m bench.robustness.admission_goodput [--overload-clients 64] \
        [--env VERSUS_QUEUE_WAIT_MS=0]

A tiny model's service (``bench.robustness.tiny_service``: one worker, 32 request threads, a batch
queue of ``--queue-size`` images, so that 64 clients overflow it) takes ``POST /predict`` of
one ``--image-side`` px noise image (``--format``; a PNG decodes in full, a JPEG is
reduced by ``draft()``) from closed-loop keep-alive clients (``--processes``
client processes, so the clients' own GIL is not the bottleneck). Each phase runs
``--seconds``: the unloaded levels (``--levels``, no 503 expected), whose best median
goodput is the peak, then ``--overload-clients`` clients that never back off, ``--rounds``
times interleaved (a shared machine drifts). Printed: per phase, responses/s by status,
and the median overload goodput as a fraction of the peak (target: 80%).
A service that reads and decodes every body before refusing it spends its CPU on 503s.
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from bench.robustness.tiny_service import (
    add_service_arguments,
    tiny_service,
    tiny_settings,
)


def noise_image(side: int, fmt: str, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _client_process(url: str, body: bytes, content_type: str, threads: int, seconds: float
                    ) -> Counter[int]:
    """``threads`` closed-loop clients for ``seconds``; their status codes (0: the server
    had closed the keep-alive connection, as gunicorn does after a response that left a
    body of over 64 KB unread; the client reconnects at once)."""
    from concurrent.futures import ThreadPoolExecutor

    parts = urlsplit(url)
    headers = {"Content-Type": content_type}

    def loop(_: int) -> Counter[int]:
        counts: Counter[int] = Counter()
        deadline = time.monotonic() + seconds
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while time.monotonic() < deadline:
            try:
                conn.request("POST", parts.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                counts[response.status] += 1
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                counts[0] += 1
                conn.close()
        conn.close()
        return counts

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(loop, range(threads)), Counter())


def phase(url: str, body: bytes, content_type: str, clients: int, processes: int,
          seconds: float) -> dict[int, float]:
    """Responses per second by status with ``clients`` clients spread over processes."""
    processes = min(processes, clients)
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        futures = [pool.submit(_client_process, url, body, content_type, n, seconds)
                   for n in shares]
        counts = sum((f.result() for f in futures), Counter())
    return {status: n / seconds for status, n in sorted(counts.items())}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.robustness.admission_goodput",
                                description=__doc__.split("\n")[0])
    p.add_argument("--levels", default="4,8,16",
                   help="unloaded client counts; the best is the peak (default: 4,8,16)")
    p.add_argument("--overload-clients", type=int, default=64, help="(default: 64)")
    p.add_argument("--seconds", type=float, default=5.0, help="per phase (default: 5)")
    p.add_argument("--rounds", type=int, default=3,
                   help="passes over all levels; medians are reported (default: 3)")
    p.add_argument("--processes", type=int, default=4, help="client processes (default: 4)")
    p.add_argument("--queue-size", type=int, default=16,
                   help="service batch queue, images (default: 16)")
    p.add_argument("--image-side", type=int, default=256, help="image side (default: 256)")
    p.add_argument("--format", choices=["PNG", "JPEG"], default="PNG",
                   help="image format (default: PNG)")
    add_service_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    settings = tiny_settings(args.queue_size)
    body = noise_image(args.image_side, args.format)
    content_type = f"image/{args.format.lower()}"
    levels = [int(n) for n in args.levels.split(",")]
    with tiny_service(args.workdir, settings, dict(args.env)) as service:
        url = service.url + "/predict"
        phase(url, body, content_type, 4, 1, 1.0)  # warm the path up
        print(f"{len(body):,} byte {args.format}; status 0 = reconnect after a closed "
              "keep-alive connection")
        print(f"{'round':>5}  {'clients':>7}  {'200/s':>8}  {'503/s':>8}  other/s")
        goodput: dict[int, list[float]] = {n: [] for n in [*levels, args.overload_clients]}
        for round_ in range(1, args.rounds + 1):  # interleaved: drift hits every level
            for clients in goodput:
                rates = phase(url, body, content_type, clients, args.processes, args.seconds)
                ok, refused = rates.pop(200, 0.0), rates.pop(503, 0.0)
                goodput[clients].append(ok)
                print(f"{round_:>5}  {clients:>7}  {ok:>8.1f}  {refused:>8.1f}  {rates or '-'}")
    medians = {n: statistics.median(rates) for n, rates in goodput.items()}
    overload = medians.pop(args.overload_clients)
    peak = max(medians.values())
    print(f"overload goodput {overload:.1f}/s = {overload / peak:.0%} of the unloaded peak "
          f"{peak:.1f}/s (medians of {args.rounds} rounds; {args.overload_clients} clients, "
          f"queue {args.queue_size})")


if __name__ == "__main__":
    main()
