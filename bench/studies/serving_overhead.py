"""Serving overhead of the versus services: what HTTP + Flask + batching cost on top of the
runtime itself, per runtime, with ResNet-50 (random init) at 224 px on this machine's CPU.

    python -m bench.studies.serving_overhead [--runtimes torch,onnx] [--rounds 4] [--out reports/]

For each runtime, one at a time (no two runtimes compete for the cores), a real gunicorn
service (``python -m services``) and an in-process child holding the same artifact's
predictor are started, loaded and warmed up; then they take turns on the otherwise idle
cores, the in-process phases bracketing the HTTP ones:

    in-process, HTTP, in-process, HTTP, ..., HTTP, in-process        (``--rounds`` HTTP phases)

- in-process: p50 of one single-image ``predictor.predict``, and images/s at every batch
  size the service's batcher can run (the runtime's ceiling at that size);
- HTTP: p50 of sequential single ``POST /predict`` requests, and of each one's latency minus
  the server's own compute time for it; then images/s with ``--clients`` concurrent
  keep-alive clients, with the service's own metrics over that phase: the fraction of the
  time its runtime was busy (``versus_batch_duration_seconds``) and the mean batch it ran,
  and the CPU cores the service and the clients used.

The estimators are built for a shared machine whose speed drifts by 10-20% within minutes
(:func:`summarize`): the reference batch size is the one with the best median images/s over
all in-process phases; each HTTP phase is compared with the mean of the two in-process
phases around it (a linear drift cancels), giving one efficiency (HTTP images/s / in-process
images/s at the reference batch, target >= 0.9) and one overhead (HTTP p50 - predict p50,
target <= 5 ms) per round; the report gives their medians over rounds and the range.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from bench.load.keepalive import KeepAliveClient
from bench.load.threads import run_clients
from bench.proctree import tree_cpu_seconds
from bench.scrape import scrape, total_growth
from bench.services import LocalServiceSettings, start_service
from bench.studies import add_output_args, study_artifacts
from shared.processes import REPO, child_environment, emit_result, parse_result, usable_cpu_count
from training.fixtures import RUNTIMES

OVERHEAD_TARGET_MS = 5.0
EFFICIENCY_TARGET = 0.9
REQUEST_TIMEOUT_S = 120.0
READY_DEADLINE_S = 900.0
"""Load + warm-up of ResNet-50 (JAX compiles every batch bucket) on a busy 2-core machine."""


def test_image(size: int, seed: int = 0) -> bytes:
    """A ``size`` px JPEG, the shape of a real upload after the client resized it."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# ---------------------------------------------------------------------- in-process child

def serve_in_process(runtime: str, model_dir: Path, threads: int, max_batch: int,
                     requests: int, batch_seconds: float, commands: IO[str]) -> None:
    """Child mode: load and warm up the predictor, then print one result line per line read
    from ``commands`` (until EOF): p50 of ``requests`` single-image predicts and images/s at
    each batch size the service's batcher runs, each timed for ``batch_seconds``, with the
    main bench's timing (``bench.inprocess.time_batches``)."""
    from bench.inprocess import time_batches
    from services.predictors import load_predictor

    predictor = load_predictor(runtime, model_dir, threads=threads)
    predictor.warmup(max_batch)
    size = predictor.image_size
    inputs = np.random.default_rng(0).standard_normal((max_batch, size, size, 3))
    inputs = inputs.astype(np.float32)
    sizes = predictor.buckets_for(max_batch) or sorted(
        {2**k for k in range(max_batch.bit_length()) if 2**k < max_batch} | {max_batch})
    emit_result({"ready": True})
    for _ in commands:
        single = time_batches(predictor.predict, inputs, 1, max(1, requests // 3),
                              min_time_s=0.0)  # ~``requests`` calls (>= 3 per repeat)
        by_batch = {n: time_batches(predictor.predict, inputs, n, repeats=1,
                                    min_time_s=batch_seconds)["images_per_s"]["median"]
                    for n in sizes}
        emit_result({"predict_p50_ms": single["ms_per_batch"]["median"],
                     "images_per_s_by_batch": by_batch})


class InProcess:
    """The parent's handle on a :func:`serve_in_process` child: a fresh process per runtime,
    so that each starts clean, loaded once and measured on demand; idle (blocked on its
    stdin) while the service is measured."""

    def __init__(self, runtime: str, model_dir: Path, threads: int, args: argparse.Namespace,
                 log: Path) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.studies.serving_overhead", "--in-process", runtime,
             "--model-dir", str(model_dir), "--threads", str(threads),
             "--max-batch-size", str(args.max_batch_size), "--requests", str(args.requests),
             "--batch-seconds", str(args.batch_seconds)],
            cwd=REPO, env=child_environment(), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
        )
        self._result()  # loaded and warm

    def _result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            result = parse_result(line)
            if result is not None:
                return result
        raise RuntimeError(f"in-process child exited with {self.process.wait()}; "
                           f"see {self._log.name}")

    def measure(self) -> dict[str, Any]:
        """One in-process phase (see :func:`serve_in_process`)."""
        assert self.process.stdin is not None
        self.process.stdin.write("measure\n")
        self.process.stdin.flush()
        return self._result()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# ---------------------------------------------------------------------- HTTP

class Client:
    """Raw JPEG bodies to /predict over the bench's keep-alive client."""

    def __init__(self, port: int) -> None:
        self.client = KeepAliveClient(f"http://127.0.0.1:{port}", REQUEST_TIMEOUT_S)

    def predict(self, body: bytes) -> tuple[float, float]:
        """(client-side latency, the server's own ``compute`` time), both in ms."""
        started = time.perf_counter()
        status, payload = self.client.post("/predict", body, {"Content-Type": "image/jpeg"})
        latency_ms = (time.perf_counter() - started) * 1e3
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {payload[:200]!r}")
        return latency_ms, json.loads(payload)["timings_ms"]["compute"]


def measure_http(port: int, body: bytes, repeats: int, clients: int, seconds: float,
                 server_pid: int | None = None) -> dict[str, Any]:
    """Sequential single requests (p50 latency, and p50 of latency minus the server's own
    predict time for the same request: an overhead that background load cannot skew), then
    images/s with ``clients`` concurrent keep-alive clients, with the fraction of that time
    the runtime was busy, the mean batch size it ran, the images its batches computed per
    busy second, and the CPU cores the service and the clients (this process) used."""
    client = Client(port)
    for _ in range(5):
        client.predict(body)
    samples = [client.predict(body) for _ in range(repeats)]
    done = [0] * clients
    stop_at = time.perf_counter() + seconds

    def run(i: int) -> None:
        c = Client(port)
        while time.perf_counter() < stop_at:
            c.predict(body)
            done[i] += 1

    before = scrape(f"http://127.0.0.1:{port}")
    server_cpu = (tree_cpu_seconds(server_pid) or 0.0) if server_pid else 0.0
    elapsed, client_cpu = run_clients(run, clients)
    if server_pid:
        server_cpu = (tree_cpu_seconds(server_pid) or 0.0) - server_cpu
    after = scrape(f"http://127.0.0.1:{port}")
    batches = total_growth(before, after, "versus_batch_size_count")
    images = total_growth(before, after, "versus_batch_size_sum")
    busy_s = total_growth(before, after, "versus_batch_duration_seconds_sum")
    return {"http_p50_ms": statistics.median(lat for lat, _ in samples),
            "paired_overhead_ms": statistics.median(lat - comp for lat, comp in samples),
            "http_images_per_s": sum(done) / elapsed,
            "runtime_busy": busy_s / elapsed,
            "mean_batch": images / max(batches, 1),
            "images_per_busy_s": images / busy_s if busy_s else 0.0,
            "server_cpu_cores": server_cpu / elapsed if server_pid else None,
            "client_cpu_cores": client_cpu / elapsed}


# ---------------------------------------------------------------------- estimators

def summarize(in_process: Sequence[Mapping[str, Any]], http: Sequence[Mapping[str, Any]],
              served_batch: int | None = None) -> dict[str, Any]:
    """Per-round and median figures from ``len(http) + 1`` in-process phases bracketing the
    HTTP phases (in-process ``k`` and ``k + 1`` surround HTTP ``k``).

    The reference batch size is the one with the best median in-process images/s over all
    phases (a maximum over noisy sizes per phase would pick each phase's luckiest one); HTTP
    phase ``k`` is compared with the mean of its two neighbours, so a machine that slows down
    or speeds up steadily across a round does not bias the ratio.

    With ``served_batch`` (the service's preferred batch size), ``compute_speed`` says how
    fast the service's batches ran beside its request threads: images per busy second of
    its runtime over in-process images/s at that batch size."""
    if len(in_process) != len(http) + 1 or not http:
        raise ValueError(f"need one more in-process phase than HTTP phases (>= 1), got "
                         f"{len(in_process)} and {len(http)}")
    # images/s by batch size, keyed by str as the child's JSON has them
    rates = [{str(n): v for n, v in p["images_per_s_by_batch"].items()} for p in in_process]
    by_batch = {n: statistics.median(r[n] for r in rates) for n in rates[0]}
    reference = max(by_batch, key=by_batch.__getitem__)
    served = str(served_batch) if str(served_batch) in by_batch else None
    rounds = []
    for k, phase in enumerate(http):
        around = slice(k, k + 2)
        ceiling = statistics.mean(r[reference] for r in rates[around])
        predict_p50 = statistics.mean(p["predict_p50_ms"] for p in in_process[around])
        rounds.append({
            "in_process_images_per_s": ceiling, "predict_p50_ms": predict_p50,
            "efficiency": phase["http_images_per_s"] / ceiling,
            "overhead_ms": phase["http_p50_ms"] - predict_p50,
            "compute_speed": phase["images_per_busy_s"] / statistics.mean(
                r[served] for r in rates[around]) if served else None,
            **phase,
        })

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    efficiencies = [r["efficiency"] for r in rounds]
    speeds = [r["compute_speed"] for r in rounds if r["compute_speed"] is not None]
    return {
        "reference_batch": int(reference),
        "in_process_images_per_s_by_batch": {int(n): v for n, v in by_batch.items()},
        **{key: median(key) for key in (
            "in_process_images_per_s", "http_images_per_s", "efficiency", "predict_p50_ms",
            "http_p50_ms", "overhead_ms", "paired_overhead_ms", "runtime_busy", "mean_batch",
            "server_cpu_cores", "client_cpu_cores")},
        "efficiency_range": [min(efficiencies), max(efficiencies)],
        "compute_speed": statistics.median(speeds) if speeds else None,
        "rounds": rounds,
    }


def bench_runtime(runtime: str, model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the service and the in-process child for ``runtime``, alternate their phases
    (both stay loaded and idle meanwhile) and :func:`summarize`."""
    threads = args.threads or usable_cpu_count()
    settings = LocalServiceSettings(workers=1, intra_op_threads=threads,
                               max_batch_size=args.max_batch_size)
    service = start_service(runtime, model_dir, args.workdir, settings)
    child = None
    try:
        service.wait_ready(READY_DEADLINE_S)
        port = urlsplit(service.url).port
        child = InProcess(runtime, model_dir, threads, args,
                          args.workdir / f"in-process-{runtime}.log")
        body = test_image(args.image_size)
        in_process, http = [child.measure()], []
        for _ in range(args.rounds):
            http.append(measure_http(port, body, args.requests, args.clients, args.seconds,
                                     service.process.pid))
            in_process.append(child.measure())
    finally:
        if child is not None:
            child.close()
        service.stop()
    serving = service.readyz.get("serving", {})
    preferred = serving.get("preferred_batch_size")
    return {"runtime": runtime, "threads": threads, "preferred_batch_size": preferred,
            "service_images_per_s_by_batch": serving.get("images_per_s_by_batch_size"),
            **summarize(in_process, http, preferred), "in_process": in_process}


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"ResNet-50 (random init), {args.image_size} px, {usable_cpu_count()} CPU cores, "
        f"max batch {args.max_batch_size}, {args.clients} concurrent clients, "
        f"{args.rounds} rounds",
        "",
        "| runtime | predict p50 ms | HTTP p50 ms | overhead ms | paired overhead ms "
        "| in-process img/s (batch) | HTTP img/s | efficiency (range) | runtime busy "
        "| mean batch (preferred) | compute speed | CPU cores: service + clients |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        low, high = r["efficiency_range"]
        lines.append(
            f"| {r['runtime']} | {r['predict_p50_ms']:.1f} | {r['http_p50_ms']:.1f} | "
            f"{r['overhead_ms']:.1f} | {r['paired_overhead_ms']:.1f} | "
            f"{r['in_process_images_per_s']:.1f} ({r['reference_batch']}) | "
            f"{r['http_images_per_s']:.1f} | {r['efficiency']:.2f} ({low:.2f}-{high:.2f}) | "
            f"{r['runtime_busy']:.2f} | {r['mean_batch']:.1f} ({r['preferred_batch_size']}) | "
            f"{_ratio(r['compute_speed'])} | "
            f"{r['server_cpu_cores']:.2f} + {r['client_cpu_cores']:.2f} |")
    lines += ["", f"Targets: overhead <= {OVERHEAD_TARGET_MS} ms, efficiency >= "
                  f"{EFFICIENCY_TARGET}. Medians over rounds, each HTTP phase against the mean "
                  "of the in-process phases before and after it. Overhead = HTTP p50 - "
                  "in-process predict p50; paired overhead = p50 over requests of (HTTP "
                  "latency - the server's compute time for that request). Efficiency = HTTP "
                  "images/s / in-process images/s at the batch size with the best median "
                  f"in-process images/s. Runtime busy = the service's batch compute seconds / "
                  f"wall seconds with {args.clients} clients; preferred = the batch size the "
                  "service measured as its best at warm-up; compute speed = images per busy "
                  "second of the service's runtime / in-process images/s at the preferred "
                  "batch size (below 1: batches ran slower beside the request threads); CPU "
                  "cores = CPU seconds / wall seconds of the service's processes and of the "
                  "client threads."]
    return "\n".join(lines)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.studies.serving_overhead",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runtimes", default=",".join(RUNTIMES),
                   help=f"comma-separated runtimes (default: {','.join(RUNTIMES)})")
    p.add_argument("--image-size", type=int, default=224, help="input size (default: 224)")
    p.add_argument("--stage-sizes", default="resnet50", help="architecture (default: resnet50)")
    p.add_argument("--max-batch-size", type=int, default=16, help="(default: 16)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default: 16)")
    p.add_argument("--seconds", type=float, default=10.0,
                   help="duration of each concurrent HTTP phase (default: 10)")
    p.add_argument("--batch-seconds", type=float, default=1.0,
                   help="in-process timing per batch size per phase (default: 1)")
    p.add_argument("--requests", type=int, default=30,
                   help="timed single requests / predicts per phase (default: 30)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: all cores)")
    p.add_argument("--rounds", type=int, default=4,
                   help="HTTP phases, each between two in-process ones (default: 4)")
    add_output_args(p, "serving_overhead")
    p.add_argument("--in-process", metavar="RUNTIME", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.rounds < 1:
        raise SystemExit("--rounds must be >= 1")
    if args.in_process:  # child mode, driven by the parent over stdin/stdout
        serve_in_process(args.in_process, args.model_dir, args.threads, args.max_batch_size,
                         args.requests, args.batch_seconds, sys.stdin)
        return
    runtimes = args.runtimes.split(",")
    args.workdir.mkdir(parents=True, exist_ok=True)
    model_dirs = study_artifacts(args.workdir, args.stage_sizes, args.image_size, runtimes)
    results = []
    for runtime in runtimes:  # one at a time: never two runtimes competing for the cores
        results.append(bench_runtime(runtime, model_dirs[runtime], args))
        print(json.dumps(results[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_overhead.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results, args)
    (args.out / "serving_overhead.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
