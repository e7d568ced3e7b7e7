"""What one image costs the service by the way it is sent: ``POST /predict`` JPEG uploads,
Open Inference Protocol FP32 tensors as JSON, and the same tensors (or the JPEG files) in
the binary tensor data extension, against one real gunicorn service of a small model.

    python -m bench.studies.oip_binary [--runtime pooled|onnx|...] [--architecture tiny]
        [--image-size 224] [--clients 8] [--seconds 6] [--rounds 3] [--out reports/]

The images are the load test's ``small`` payload profile (re-encoded at ``--image-size``).
The request bodies are built once, before any timing, with ``tritonclient``'s own encoder
(``InferenceServerClient.generate_request_body``), so each kind is byte for byte what that
client sends; the FP32 tensors are the shared preprocessing of the same JPEGs, so every kind
asks the model the same questions (each kind's first answers are checked against
``/predict``'s before timing). Then, ``--rounds`` times, each kind in turn (so a machine that
drifts hits all alike) is sent by ``--clients`` concurrent keep-alive clients for
``--seconds``, and the report gives, per kind (medians over rounds):

- service CPU ms per request: user + system CPU seconds of the whole service process tree
  over the phase / requests answered; robust to other load on the machine, unlike
- served images/s: wall-clock, so it depends on what else the machine runs (the load
  average before and after is printed);
- runtime ms per image: the service's own batch compute seconds
  (``versus_batch_duration_seconds``) / images, the part of the CPU that is the model's;
- request kB: the body sent per image.

The default runtime, ``pooled`` (:mod:`bench.studies.pooled_runtime`), serves the ONNX
artifact's manifest with a model that costs ~0.2 ms an image, so the service's CPU is its
request path: HTTP body, multipart, JSON, decode, preprocess, batching. With a real runtime
(``--runtime onnx``; the ``tiny`` ResNet costs ~30 ms an image at 224 px on one thread) its
CPU per image is also measured in this process and subtracted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import tritonclient.http as triton

from bench.load.keepalive import KeepAliveClient
from bench.load.payloads import PayloadOptions, load_payloads
from bench.load.threads import run_clients
from bench.proctree import tree_cpu_seconds
from bench.scrape import scrape, total_growth
from bench.services import LocalServiceSettings, start_service
from bench.studies import pooled_runtime
from shared.binary_tensors import HEADER
from shared.imaging import PreprocessSpec, preprocess
from shared.manifest import read_manifest
from shared.models import parse_stage_sizes
from shared.processes import REPO
from shared.runtimes import MODULES_VARIABLE, runtime_names
from training.fixtures import runtime_model_dir, write_artifacts

DATASET = "dr"
INFER = f"/v2/models/{DATASET}/infer"
READY_DEADLINE_S = 600.0
REQUEST_TIMEOUT_S = 60.0
ATOL = 1e-4
KINDS = ("predict_jpeg", "oip_json_fp32", "oip_binary_fp32", "oip_binary_bytes")
"""/predict JPEG upload; OIP FP32 as JSON both ways; OIP FP32 and OIP BYTES (the JPEG file)
in binary both ways."""


@dataclass(frozen=True)
class Request:
    """One ready-to-send request: where, what and with which headers."""

    path: str
    body: bytes
    headers: dict[str, str]


def oip_request(tensor: triton.InferInput, binary_outputs: bool) -> Request:
    """The body ``tritonclient.http`` sends for ``tensor`` (outputs in binary or JSON)."""
    outputs = [triton.InferRequestedOutput(name, binary_data=binary_outputs)
               for name in ("probabilities", "label")]
    body, json_size = triton.InferenceServerClient.generate_request_body([tensor], outputs)
    headers = {} if json_size is None else {HEADER: str(json_size)}
    return Request(INFER, body, headers)


def build_requests(images: Sequence[bytes], uploads: Sequence[tuple[bytes, str]],
                   spec: PreprocessSpec) -> dict[str, list[Request]]:
    """Every kind's request for each image."""
    kinds: dict[str, list[Request]] = {k: [] for k in KINDS}
    for data, (upload, content_type) in zip(images, uploads, strict=True):
        kinds["predict_jpeg"].append(Request("/predict", upload, {"Content-Type": content_type}))
        rows = preprocess(data, spec)[None]
        for kind, binary in (("oip_json_fp32", False), ("oip_binary_fp32", True)):
            tensor = triton.InferInput("input", list(rows.shape), "FP32")
            tensor.set_data_from_numpy(rows, binary_data=binary)
            kinds[kind].append(oip_request(tensor, binary))
        tensor = triton.InferInput("input", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([data], dtype=np.object_), binary_data=True)
        kinds["oip_binary_bytes"].append(oip_request(tensor, True))
    return kinds


def answer(port: int, request: Request) -> np.ndarray:
    """The probabilities the service gives ``request`` (any kind), parsed as a client would."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("POST", request.path, request.body, request.headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{request.path}: HTTP {response.status}: {body[:300]!r}")
        if request.path == "/predict":
            return np.float32(list(json.loads(body)["probabilities"].values()))
        length = response.getheader(HEADER)
        result = triton.InferenceServerClient.parse_response_body(
            body, header_length=int(length) if length is not None else None)
        return result.as_numpy("probabilities")[0]
    finally:
        connection.close()


def check_answers(port: int, kinds: dict[str, list[Request]]) -> None:
    """Every kind's answer for the first images is ``/predict``'s for the same image."""
    for index in range(min(3, len(kinds["predict_jpeg"]))):
        reference = answer(port, kinds["predict_jpeg"][index])
        for kind in KINDS[1:]:
            got = answer(port, kinds[kind][index])
            if not np.allclose(got, reference, atol=ATOL):
                raise RuntimeError(f"{kind} answered {got} for image {index}, /predict "
                                   f"{reference}")


def run_phase(port: int, pid: int, requests: Sequence[Request], clients: int,
              seconds: float) -> dict[str, float]:
    """``clients`` keep-alive clients send ``requests`` round-robin for ``seconds``."""
    base = f"http://127.0.0.1:{port}"
    done = [0] * clients
    failures: list[str] = []
    stop_at = time.perf_counter() + seconds

    def send(i: int) -> None:
        client = KeepAliveClient(base, REQUEST_TIMEOUT_S)
        k = i
        while time.perf_counter() < stop_at and not failures:
            request = requests[k % len(requests)]
            status, body = client.post(request.path, request.body, request.headers)
            if status != 200:
                failures.append(f"HTTP {status}: {body[:200]!r}")
            done[i] += 1
            k += 1

    before, cpu_before = scrape(base), tree_cpu_seconds(pid) or 0.0
    elapsed, client_cpu = run_clients(send, clients)
    cpu = (tree_cpu_seconds(pid) or 0.0) - cpu_before
    after = scrape(base)
    if failures:
        raise RuntimeError(failures[0])
    n = sum(done)
    images = total_growth(before, after, "versus_batch_size_sum")
    batches = total_growth(before, after, "versus_batch_size_count")
    return {"images_per_s": n / elapsed, "service_cpu_ms": cpu / n * 1e3,
            "mean_batch": images / batches if batches else 0.0,
            "client_cpu_ms": client_cpu / n * 1e3, "requests": n}


class RuntimeCost:
    """CPU ms per image of the model itself at a batch size: the same artifact's predictor in
    this process, same intra-op threads, timed by this thread's CPU clock (which other load
    on the machine does not inflate, unlike wall time). With one intra-op thread the runtime
    computes on the calling thread, so this is all of its CPU."""

    def __init__(self, runtime: str, model_dir: Path, threads: int, max_batch: int) -> None:
        from services.predictors import load_predictor

        self.predictor = load_predictor(runtime, model_dir, threads=threads)
        self.predictor.warmup(max_batch)
        size = self.predictor.image_size
        self.inputs = np.random.default_rng(0).standard_normal(
            (max_batch, size, size, 3)).astype(np.float32)
        self._cache: dict[int, float] = {}

    def ms_per_image(self, batch: float, seconds: float = 1.0) -> float:
        n = max(1, min(len(self.inputs), round(batch)))
        if n not in self._cache:
            started, calls = time.thread_time(), 0
            while time.thread_time() - started < seconds or calls < 3:
                self.predictor.predict(self.inputs[:n])
                calls += 1
            self._cache[n] = (time.thread_time() - started) / (calls * n) * 1e3
        return self._cache[n]


def measure(port: int, pid: int, kinds: dict[str, list[Request]], args: argparse.Namespace,
            log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """``args.rounds`` rounds of one phase per kind; medians per kind."""
    phases: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    for round_ in range(args.rounds):
        for kind in KINDS:
            phases[kind].append(run_phase(port, pid, kinds[kind], args.clients, args.seconds))
            log(f"round {round_ + 1} {kind}: {json.dumps(phases[kind][-1])}")
    return phases


def summarize(phases: dict[str, list[dict[str, float]]], kinds: dict[str, list[Request]],
              runtime: RuntimeCost) -> dict[str, dict[str, Any]]:
    """Medians over rounds per kind, with the runtime's CPU at each phase's mean batch
    subtracted from the service's: the request path's own CPU per request."""
    for runs in phases.values():
        for r in runs:
            r["runtime_cpu_ms"] = runtime.ms_per_image(r["mean_batch"])
            r["outside_runtime_ms"] = r["service_cpu_ms"] - r["runtime_cpu_ms"]
    summary = {}
    for kind in KINDS:
        runs = phases[kind]
        summary[kind] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        summary[kind]["request_kb"] = statistics.mean(len(r.body) for r in kinds[kind]) / 1e3
        summary[kind]["images_per_s_range"] = [min(r["images_per_s"] for r in runs),
                                               max(r["images_per_s"] for r in runs)]
    return summary


def markdown(summary: dict[str, dict[str, Any]], context: dict[str, Any]) -> str:
    lines = [
        f"{context['runtime']}, {context['architecture']} at {context['image_size']} px, one "
        f"worker with {context['intra_op_threads']} intra-op thread(s), "
        f"{context['clients']} keep-alive clients, {context['rounds']} rounds of "
        f"{context['seconds']} s per kind; {context['payloads']}; /predict upload: "
        f"{context['upload']}; load average (1 min) {context['load_before']:.2f} before, "
        f"{context['load_after']:.2f} after, on {context['cpus']} CPUs",
        "",
        "| request | kB sent | service CPU ms/request | runtime CPU ms/image (mean batch) "
        "| outside the runtime ms | served img/s (range) | client CPU ms/request |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in summary.items():
        low, high = r["images_per_s_range"]
        lines.append(f"| {kind} | {r['request_kb']:.1f} | {r['service_cpu_ms']:.2f} | "
                     f"{r['runtime_cpu_ms']:.2f} ({r['mean_batch']:.1f}) | "
                     f"{r['outside_runtime_ms']:.2f} | {r['images_per_s']:.0f} "
                     f"({low:.0f}-{high:.0f}) | {r['client_cpu_ms']:.2f} |")
    lines += ["", "Service CPU: user + system seconds of the service's process tree / requests "
                  "(all threads: HTTP, parsing, decode, preprocess, batcher, runtime). Runtime "
                  "CPU: the same predictor in the bench process at the phase's mean batch size, "
                  "by thread CPU clock; outside the runtime = the difference. Medians over "
                  "rounds. Served img/s is wall-clock and shares the machine with the clients "
                  "and whatever else runs."]
    return "\n".join(lines)


def prepare_model(args: argparse.Namespace) -> Path:
    root = args.workdir / f"models-{args.architecture}-{args.image_size}"
    model_dir = runtime_model_dir(root, DATASET, args.runtime, "1")
    if not (model_dir / "manifest.json").exists():
        write_artifacts(root, dataset=DATASET, stage_sizes=parse_stage_sizes(args.architecture),
                        image_size=args.image_size, runtimes=[args.runtime])
    return model_dir


def run(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    model_dir = prepare_model(args)
    spec = PreprocessSpec.from_manifest_input(read_manifest(model_dir).input.to_dict())
    payloads = load_payloads(PayloadOptions(profile="small", size=args.image_size,
                                            count=args.images, upload=args.upload))
    kinds = build_requests(payloads.images, payloads.requests, spec)
    settings = LocalServiceSettings(workers=1, intra_op_threads=args.intra_op_threads,
                                    max_batch_size=args.max_batch_size)
    service = start_service(args.runtime, model_dir, args.workdir, settings)
    try:
        service.wait_ready(READY_DEADLINE_S)
        port = urlsplit(service.url).port
        assert port is not None
        check_answers(port, kinds)
        for kind in KINDS:  # warm every path once before timing
            run_phase(port, service.process.pid, kinds[kind], args.clients, 1.0)
        load_before = os.getloadavg()[0]
        phases = measure(port, service.process.pid, kinds, args,
                         lambda line: print(line, flush=True))
        load_after = os.getloadavg()[0]
    finally:
        service.stop()
    runtime = RuntimeCost(args.runtime, model_dir, args.intra_op_threads, args.max_batch_size)
    summary = summarize(phases, kinds, runtime)
    context = {"runtime": args.runtime, "architecture": args.architecture,
               "image_size": args.image_size, "intra_op_threads": args.intra_op_threads,
               "clients": args.clients, "rounds": args.rounds, "seconds": args.seconds,
               "payloads": payloads.description, "upload": args.upload,
               "load_before": load_before, "load_after": load_after, "cpus": os.cpu_count()}
    return summary, context


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.studies.oip_binary",
                                description=__doc__.split("\n")[0])
    p.add_argument("--runtime", default="pooled",
                   help="runtime row to serve (default: pooled, a near-free model)")
    p.add_argument("--architecture", default="tiny",
                   help="stage sizes or an architecture name (default: tiny)")
    p.add_argument("--image-size", type=int, default=224, help="input size (default: 224)")
    p.add_argument("--images", type=int, default=8, help="distinct images (default: 8)")
    p.add_argument("--upload", choices=("multipart", "raw"), default="multipart",
                   help="how /predict gets the JPEG (default: multipart)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    p.add_argument("--seconds", type=float, default=6.0, help="per phase (default: 6)")
    p.add_argument("--rounds", type=int, default=3, help="phases per kind (default: 3)")
    p.add_argument("--intra-op-threads", type=int, default=1, help="(default: 1)")
    p.add_argument("--max-batch-size", type=int, default=16, help="(default: 16)")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "versus-bench",
                   help="artifacts and logs, reused between runs (default: $TMPDIR/versus-bench)")
    p.add_argument("--out", type=Path, default=REPO / "reports",
                   help="where oip_binary.{json,md} go (default: reports/)")
    return p


def add_pooled_runtime() -> None:
    """Make the ``pooled`` row known here and in the service this process starts (the
    environment of this command's process, inherited by the service)."""
    modules = [m for m in os.environ.get(MODULES_VARIABLE, "").split(",") if m]
    if pooled_runtime.MODULE not in modules:
        os.environ[MODULES_VARIABLE] = ",".join([*modules, pooled_runtime.MODULE])


def main(argv: Sequence[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.clients < 1 or args.images < 1:
        parser.error("--rounds, --clients and --images must be >= 1")
    add_pooled_runtime()
    if args.runtime not in runtime_names():
        parser.error(f"unknown runtime {args.runtime!r}; choose one of "
                     f"{', '.join(runtime_names())}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    summary, context = run(args)
    report = markdown(summary, context)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "oip_binary.json").write_text(
        json.dumps({"context": context, "kinds": summary}, indent=2) + "\n")
    (args.out / "oip_binary.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
