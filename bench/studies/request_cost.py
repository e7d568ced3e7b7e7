"""Service CPU per request outside the runtime, by part: what the request path itself costs.

    python -m bench.studies.request_cost [--runtime onnx] [--clients 8] [--seconds 20]

Once a runtime computes an image in ~2.5 ms of CPU, the service's own work per request
(HTTP, multipart, decode, preprocess, JSON, metrics, batcher hand-off) decides how many
images two cores serve. Nothing is stubbed: a real model (ResNet stage sizes
``--stage-sizes``, default 1,1,1,1, at ``--image-size`` px, the cheapest real predictor) is
served by a real gunicorn service, and the payloads are the load test's own pool
(``--payload-profile small``: JPEGs re-encoded at 224 px, ``multipart`` uploads).

Three measurements, each printed:

1. **Served, per-thread accounting.** Concurrent keep-alive clients load the service; the
   worker's threads are read from ``/proc/<pid>/task/*/stat`` before and after. The batcher
   thread names itself ``versus-batcher`` and the runtime's pools inherit that name
   (``services.threadnames``), so *runtime-side* CPU (predict + the batcher's own work) and
   *request-side* CPU (gunicorn's accept loop and request threads) are told apart; each is
   divided by the requests answered 200.
2. **Parts in process** (``bench.studies.request_parts``, in a child process with a
   Prometheus multi-process directory, like a gunicorn worker): WSGI calls of the real app
   from ``--clients`` threads with the same bodies, the request path's own functions wrapped
   to charge their thread CPU *exclusively* to their part: multipart parsing (Werkzeug),
   decode, preprocess, the request thread's side of the batcher hand-off (room, queue, wait
   for the future), JSON encoding, Prometheus observations, and the rest (Flask/Werkzeug
   dispatch); plus the batcher thread's CPU outside predict. HTTP + gunicorn is the served
   request side's CPU beyond the app call.
3. **Sampling profile** (``py-spy --gil``, when it can attach) of the worker under the same
   load: the share of samples of the thread holding the GIL (Python running; C code that
   releases the GIL, like Pillow's decoder, is under-counted) by part, a check on 2 that
   needs no subtraction. py-spy's idle detection does not see every wait here, so stacks
   that end in a wait are dropped too.

CPU-time figures hold on a busy machine (they count only the CPU the service used); the
wall-clock rate printed beside them does not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.load.keepalive import KeepAliveClient
from bench.load.payloads import PayloadOptions, load_payloads
from bench.load.threads import run_clients
from bench.proctree import CLOCK_TICKS, children
from bench.services import LocalServiceSettings, start_service
from bench.studies import add_output_args, study_artifacts
from bench.studies import request_parts as parts
from shared.processes import REPO, child_environment, emit_result, parse_result

BATCHER_THREAD = "versus-batcher"
"""The OS name of the batcher thread and of the runtime threads it started (see
``services.threadnames``); kept equal to ``services.batching.THREAD_NAME`` by a test."""
READY_DEADLINE_S = 600.0
REQUEST_TIMEOUT_S = 60.0
WARMUP_REQUESTS = 50
PARTS = ("HTTP + gunicorn", parts.DISPATCH, parts.MULTIPART, parts.DECODE, parts.PREPROCESS,
         parts.HANDOFF, parts.BATCHER, parts.JSON, parts.METRICS)
"""The table's rows, in request order."""


# ---------------------------------------------------------------------- served accounting

def thread_cpu(pid: int) -> dict[int, tuple[str, float, float]]:
    """{tid: (OS thread name, user CPU seconds, system CPU seconds)} of every live thread of
    ``pid``."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        found[int(task.name)] = (name, int(fields[11]) / CLOCK_TICKS,
                                 int(fields[12]) / CLOCK_TICKS)
    return found


def split_cpu(before: Mapping[int, tuple[str, float, float]],
              after: Mapping[int, tuple[str, float, float]]) -> dict[str, float]:
    """CPU seconds between two :func:`thread_cpu` snapshots: ``runtime`` (threads named
    :data:`BATCHER_THREAD`) and ``request`` (every other thread of the worker), and the
    request side's system (kernel) share, ``request_sys``; a thread born in between counts
    from zero."""
    totals = {"runtime": 0.0, "request": 0.0, "request_sys": 0.0}
    for tid, (name, user, system) in after.items():
        _, user_before, system_before = before.get(tid, (name, 0.0, 0.0))
        side = "runtime" if name == BATCHER_THREAD else "request"
        totals[side] += user - user_before + system - system_before
        if side == "request":
            totals["request_sys"] += system - system_before
    return totals


def drive(url: str, bodies: Sequence[tuple[bytes, str]], clients: int, seconds: float
          ) -> dict[str, Any]:
    """``clients`` keep-alive clients posting ``bodies`` round robin for ``seconds``:
    requests answered 200, other answers, latencies (ms) of the 200s."""
    client = KeepAliveClient(url, REQUEST_TIMEOUT_S)
    stop_at = time.perf_counter() + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = Counter()

    def run(i: int) -> None:
        k = i
        while time.perf_counter() < stop_at:
            body, content_type = bodies[k % len(bodies)]
            k += 1
            started = time.perf_counter()
            status, _ = client.post("/predict", body, {"Content-Type": content_type})
            if status == 200:
                latencies[i].append((time.perf_counter() - started) * 1e3)
            else:
                failures[status] += 1

    wall_s, _ = run_clients(run, clients)
    done = sorted(x for per in latencies for x in per)
    return {"ok": len(done), "failed": dict(failures), "wall_s": wall_s,
            "p50_ms": done[len(done) // 2] if done else None,
            "p99_ms": done[min(len(done) - 1, int(len(done) * 0.99))] if done else None}


def measure_served(url: str, worker: int, master: int, bodies: Sequence[tuple[bytes, str]],
                   clients: int, seconds: float) -> dict[str, Any]:
    """One loaded phase with per-thread accounting of the worker (and the master's CPU)."""
    drive(url, bodies, 2, WARMUP_REQUESTS * 0.02)  # connections open, caches warm
    master_before = _cpu(master)
    before = thread_cpu(worker)
    load = drive(url, bodies, clients, seconds)
    after = thread_cpu(worker)
    cpu = split_cpu(before, after)
    n = max(load["ok"], 1)
    return {**load, "images_per_s": load["ok"] / load["wall_s"],
            "request_ms": cpu["request"] / n * 1e3, "runtime_ms": cpu["runtime"] / n * 1e3,
            "request_sys_ms": cpu["request_sys"] / n * 1e3,
            "master_ms": (_cpu(master) - master_before) / n * 1e3}


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# ---------------------------------------------------------------------- sampling profile

PROFILE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("preprocess", ("square_pixels", "to_square_uint8", "normalize (shared/imaging")),
    ("image decode", ("open_image", "finish_decode")),
    ("multipart form parsing", ("formparser.py", "multipart.py")),
    ("Prometheus metrics", ("prometheus_client",)),
    ("JSON encoding", ("prediction_json", "jsonify", "json/")),
    ("batcher hand-off (request thread)", ("services/batching.py", "futures/_base.py")),
    ("Flask/Werkzeug dispatch", ("flask/", "werkzeug/", "services/")),
    ("HTTP + gunicorn", ("gunicorn/", "selectors.py", "socket.py")),
)
"""A sampled stack's part: the first rule any of whose markers occurs in one of its frames."""


IDLE_LEAVES = ("Condition.wait (", "_worker (concurrent/futures/thread.py", "select (selectors.py",
               "poll (selectors.py", "Event.wait (")
"""Leaf frames of a thread blocked in a wait (py-spy cannot always tell idle threads)."""


def classify_stack(frames: Sequence[str]) -> str | None:
    """The part of one request-thread stack (root first); None for the batcher thread's and
    for a thread blocked in a wait."""
    if not frames or frames[-1].startswith(IDLE_LEAVES) or any(
            "_loop" in f and "batching.py" in f for f in frames):
        return None
    for part, markers in PROFILE_RULES:
        if any(m in f for f in frames for m in markers):
            return part
    return "other"


def profile_request_threads(pid: int, seconds: float, url: str,
                            bodies: Sequence[tuple[bytes, str]], clients: int, out: Path
                            ) -> dict[str, Any]:
    """py-spy's on-CPU samples of the worker under load, shared out by :func:`classify_stack`;
    ``{"error": ...}`` when py-spy is missing or may not attach."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return {"error": "py-spy is not installed (uv sync --group dev)"}
    raw = out / "request_cost_profile.txt"
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)),
               "--rate", "250", "--format", "raw", "--nonblocking", "--gil", "--output", str(raw)]
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1.0)
    if spy.poll() is not None:
        return {"error": f"py-spy could not attach: {spy.stdout.read().decode()[-300:]}"}
    drive(url, bodies, clients, seconds + 1)
    output = spy.communicate()[0].decode()
    if spy.returncode or not raw.is_file():
        return {"error": f"py-spy exited with {spy.returncode}: {output[-300:]}"}
    samples: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        part = classify_stack(stack.split(";"))
        if part is not None and count.isdigit():
            samples[part] += int(count)
    total = sum(samples.values())
    return {"samples": total, "raw": str(raw),
            "share": {part: n / total for part, n in samples.most_common()} if total else {}}


# ---------------------------------------------------------------------- parts, in a child

def run_parts_child(args: argparse.Namespace, model_dir: Path, workdir: Path) -> dict[str, Any]:
    """:func:`measure_parts` in a fresh interpreter whose Prometheus client is in
    multi-process mode, like a gunicorn worker's."""
    metrics_dir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=workdir))
    command = [sys.executable, "-m", "bench.studies.request_cost", "--parts-child",
               "--runtime", args.runtime, "--model-dir", str(model_dir),
               "--iterations", str(args.iterations), "--clients", str(args.clients),
               "--max-batch-size", str(args.max_batch_size),
               "--intra-op-threads", str(args.intra_op_threads),
               "--payload-profile", args.payload_profile,
               "--image-size", str(args.image_size), "--payload-count", str(args.payload_count)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False,
                          env=child_environment({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}))
    shutil.rmtree(metrics_dir, ignore_errors=True)
    for line in done.stdout.splitlines():
        if (result := parse_result(line)) is not None:
            return result
    raise RuntimeError(f"parts child exited with {done.returncode}:\n{done.stderr[-2000:]}")


# ---------------------------------------------------------------------- the table

def breakdown(served: Mapping[str, float], parts: Mapping[str, float]) -> dict[str, float]:
    """CPU ms per request by part (:data:`PARTS`): the app's parts measured in the flow
    (``bench.studies.request_parts``), HTTP + gunicorn as what the served request threads
    (and the master) spent beyond the app call."""
    rows = {p: parts.get(p, 0.0) for p in PARTS}
    rows["HTTP + gunicorn"] = served["request_ms"] + served["master_ms"] - parts["app"]
    return rows


def markdown(result: Mapping[str, Any]) -> str:
    served, rows = result["served"], result["breakdown"]
    total = sum(rows.values())
    profile = result.get("profile", {})
    shares = profile.get("share", {})
    lines = [
        f"{result['runtime']} (ResNet stages {result['stage_sizes']}) at "
        f"{result['image_size']} px, payload profile {result['payload_profile']} (multipart), "
        f"{result['clients']} clients, {served['ok']} requests; load {result['load']}",
        "",
        f"| part | CPU ms/request | share | py-spy share of {profile.get('samples', 0)} GIL "
        "samples (request threads) |",
        "|---|---|---|---|",
    ]
    for part, ms in rows.items():
        sampled = f"{shares[part]:.0%}" if part in shares else "-"
        lines.append(f"| {part} | {ms:.3f} | {ms / total:.0%} | {sampled} |")
    lines.append(f"| **total outside the runtime** | **{total:.3f}** | 100% | "
                 f"{'other ' + format(shares.get('other', 0), '.0%') if shares else '-'} |")
    lines += [
        "",
        f"Served (per-thread accounting of the worker): request threads "
        f"{served['request_ms']:.3f} ms (of which kernel {served['request_sys_ms']:.3f}) + "
        f"master {served['master_ms']:.3f} ms per request; "
        f"runtime threads (predict + batcher) {served['runtime_ms']:.3f} ms; "
        f"{served['images_per_s']:.0f} img/s wall-clock (p50 {served['p50_ms']:.1f} ms, "
        f"p99 {served['p99_ms']:.1f} ms; not robust on a shared machine). In-process WSGI app "
        f"call: {result['parts']['app']:.3f} ms.",
    ]
    if "error" in profile:
        lines.append(f"Profile: {profile['error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- main

def payload_bodies(profile: str, size: int, count: int) -> list[tuple[bytes, str]]:
    """(body, Content-Type) multipart uploads of the load test's own payload pool."""
    pool = load_payloads(PayloadOptions(profile=profile, size=size, count=count,
                                        upload="multipart"))
    return list(pool.requests)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.studies.request_cost",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runtime", default="onnx", help="runtime to serve (default: onnx)")
    p.add_argument("--stage-sizes", default="1,1,1,1",
                   help="ResNet blocks per stage of the served model (default: 1,1,1,1)")
    p.add_argument("--image-size", type=int, default=224, help="model input px (default: 224)")
    p.add_argument("--payload-profile", default="small", help="load test payload profile "
                   "(default: small)")
    p.add_argument("--payload-count", type=int, default=8, help="images in the pool (default: 8)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    p.add_argument("--intra-op-threads", type=int, default=1,
                   help="the runtime's threads, in the service and the parts child (default: 1)")
    p.add_argument("--max-batch-size", type=int, default=8,
                   help="the service's max batch size (default: 8)")
    p.add_argument("--seconds", type=float, default=20.0, help="loaded phase (default: 20)")
    p.add_argument("--iterations", type=int, default=400,
                   help="in-process calls per part (default: 400)")
    p.add_argument("--profile-seconds", type=float, default=10.0,
                   help="py-spy window under load, 0 to skip (default: 10)")
    add_output_args(p, "request_cost")
    p.add_argument("--parts-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    bodies = payload_bodies(args.payload_profile, args.image_size, args.payload_count)
    if args.parts_child:
        emit_result(parts.measure_parts(args.runtime, args.model_dir, bodies, args.iterations,
                                        args.clients, args.max_batch_size,
                                        args.intra_op_threads))
        return
    (model_dir,) = study_artifacts(args.workdir, args.stage_sizes, args.image_size,
                                   [args.runtime]).values()
    args.out.mkdir(parents=True, exist_ok=True)
    in_app = run_parts_child(args, model_dir, args.workdir)
    settings = LocalServiceSettings(workers=1, http_threads=max(16, 2 * args.clients),
                                    intra_op_threads=args.intra_op_threads,
                                    max_batch_size=args.max_batch_size)
    service = start_service(args.runtime, model_dir, args.workdir, settings)
    try:
        service.wait_ready(READY_DEADLINE_S)
        assert service.process is not None
        master = service.process.pid
        (worker,) = children(master)
        served = measure_served(service.url, worker, master, bodies, args.clients, args.seconds)
        profile = (profile_request_threads(worker, args.profile_seconds, service.url, bodies,
                                           args.clients, args.out)
                   if args.profile_seconds > 0 else {"error": "skipped (--profile-seconds 0)"})
    finally:
        service.stop()
    result = {"runtime": args.runtime, "stage_sizes": args.stage_sizes,
              "image_size": args.image_size, "payload_profile": args.payload_profile,
              "clients": args.clients, "load": os.getloadavg(), "port": urlsplit(
                  service.url).port, "parts": in_app, "served": served, "profile": profile,
              "breakdown": breakdown(served, in_app)}
    result["load"] = " ".join(f"{x:.2f}" for x in result["load"])
    (args.out / "request_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result)
    (args.out / "request_cost.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
