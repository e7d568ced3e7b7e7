"""Memory of one worker under a burst of big uploads: resident high-water mark and what
stays resident afterwards.

    python -m bench.robustness.upload_memory [--clients 32] [--side 7000] [--env MALLOC_ARENA_MAX=2]

A tiny model's service (``bench.robustness.tiny_service``: one worker, 32 request threads) takes
``--clients`` concurrent ``POST /predict`` of one PNG of ``--side`` x ``--side`` palette
pixels (7000 x 7000 = 49 MP, under the 50 MP limit, ~60 KB encoded), ``--rounds`` times.
Printed per round: the responses by status, the worker's RSS before, its high-water mark
(``VmHWM``, reset never: the peak since the worker started) and its RSS ``--settle-s``
seconds after the burst. With ``--json-mb``, the bursts are OIP JSON bodies of that many MB
instead (a BYTES input: the cost is the parse; the image inside is refused).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

from bench.robustness.tiny_service import (
    add_service_arguments,
    memory_mb,
    tiny_service,
    tiny_settings,
    worker_pids,
)


def palette_png(side: int) -> bytes:
    """A ``side`` x ``side`` palette PNG of one colour: tiny encoded, big decoded."""
    image = Image.new("P", (side, side), 3)
    image.putpalette(bytes(range(256)) * 3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def json_body(megabytes: float) -> bytes:
    """An OIP BYTES request whose base64 element makes the body ~``megabytes`` MB (valid JSON,
    an undecodable image: the cost measured is the parse)."""
    payload = base64.b64encode(bytes(int(megabytes * 2**20 * 3 / 4))).decode()
    return json.dumps({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                                   "data": [payload]}]}).encode()


def burst(url: str, body: bytes, headers: dict[str, str], clients: int) -> Counter[int]:
    """``clients`` concurrent POSTs of ``body``; their status codes."""
    def post(_: int) -> int:
        return requests.post(url, data=body, headers=headers, timeout=300).status_code

    with ThreadPoolExecutor(clients) as pool:
        return Counter(pool.map(post, range(clients)))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.robustness.upload_memory",
                                description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=32, help="concurrent uploads (default: 32)")
    p.add_argument("--side", type=int, default=7000, help="PNG side in pixels (default: 7000)")
    p.add_argument("--rounds", type=int, default=2, help="bursts (default: 2)")
    p.add_argument("--settle-s", type=float, default=3.0,
                   help="idle seconds before the RSS after a burst is read (default: 3)")
    p.add_argument("--json-mb", type=float, default=0.0,
                   help="burst OIP JSON bodies of this many MB instead (default: 0, PNGs)")
    add_service_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    env = dict(args.env)
    settings = tiny_settings(queue_size=64)
    png = palette_png(args.side)
    load = ("png", "/predict", png, {"Content-Type": "image/png"})
    if args.json_mb:
        load = ("json", "/v2/models/dr/infer", json_body(args.json_mb),
                {"Content-Type": "application/json"})
    name, path, body, headers = load
    with tiny_service(args.workdir, settings, env) as service:
        (pid,) = worker_pids(service)
        print(f"worker {pid}; env {env or '-'}; {args.clients} clients; {name} body of "
              f"{len(body):,} bytes" + ("" if args.json_mb else f" ({args.side} px square)"))
        print(f"{'load':5} {'round':>5} {'statuses':24} {'rss before':>10} {'peak (HWM)':>10} "
              f"{'rss after':>10} {'seconds':>8}")
        for round_ in range(1, args.rounds + 1):
            before = memory_mb(pid)["VmRSS"]
            started = time.perf_counter()
            statuses = burst(service.url + path, body, headers, args.clients)
            seconds = time.perf_counter() - started
            time.sleep(args.settle_s)
            mem = memory_mb(pid)
            print(f"{name:5} {round_:>5} {json.dumps(dict(statuses)):24} {before:>10.0f} "
                  f"{mem['VmHWM']:>10.0f} {mem['VmRSS']:>10.0f} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
