"""Fixtures for the load-test tests: Locust runs, a live tiny ONNX service, a stub server.

Locust always runs as a subprocess (``python -m locust -f loadtest/ ...``, the command users
type): importing locust here would gevent-monkey-patch the pytest process, which breaks
torch/TF/JAX in it. The locustfile helpers (``loadtest/_*.py``, no locust import) are
imported directly, as siblings, exactly as Locust imports them while loading a locustfile.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from shared.runtimes import base_runtimes

REPO = Path(__file__).resolve().parents[2]
LOADTEST = REPO / "loadtest"
sys.path.insert(0, str(LOADTEST))

FRAMEWORKS = tuple(base_runtimes())
DR_CLASSES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- locust runs


@dataclass
class LocustRun:
    """A finished ``locust`` process: exit code, stdout, stdout + stderr (the log), and
    its ``--csv`` files."""

    returncode: int
    stdout: str
    output: str
    csv_prefix: Path

    def csv_rows(self, kind: str = "stats") -> list[dict[str, str]]:
        with open(f"{self.csv_prefix}_{kind}.csv", newline="") as f:
            return list(csv.DictReader(f))

    def stats(self) -> dict[str, dict[str, str]]:
        """``<prefix>_stats.csv`` rows by request name (the aggregate is "Aggregated")."""
        return {row["Name"]: row for row in self.csv_rows("stats")}


@pytest.fixture(scope="session")
def payload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny synthetic fundus JPEGs (64 px) in the Kaggle layout."""
    from shared.datasets.synth_dr import generate_dr

    return generate_dr(tmp_path_factory.mktemp("payloads"), 4, size=64, seed=0)


@pytest.fixture
def locust(tmp_path: Path, payload_dir: Path) -> Callable[..., LocustRun]:
    """``locust(*args, env={...})``: run ``locust -f loadtest/ *args --csv <tmp>/run`` from
    the repository root. Every service URL points at a closed loopback port unless ``env``
    sets it (other engineers' services may listen on 8001-8004), the payloads are
    :func:`payload_dir`, and ``LOCUST_*`` variables of the calling shell are dropped."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> LocustRun:
        closed = f"http://127.0.0.1:{free_port()}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
        environ.update({f"VERSUS_{fw.upper()}_URL": closed for fw in FRAMEWORKS})
        environ.update(VERSUS_PAYLOAD_DIR=str(payload_dir), VERSUS_PAYLOAD_SPLIT="all")
        environ.update(env or {})
        prefix = tmp_path / "run"
        command = [sys.executable, "-m", "locust", "-f", "loadtest/", *args,
                   "--csv", str(prefix)]
        done = subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True,
                              timeout=timeout)
        return LocustRun(done.returncode, done.stdout, done.stdout + done.stderr, prefix)

    return run


# ---------------------------------------------------------------------- a live ONNX service


@pytest.fixture(scope="session")
def onnx_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real ``python -m services --framework onnx`` (gunicorn, one worker) serving a
    tiny seeded ResNet (stage sizes (1, 1, 1, 1), 32 px, the five DR grades) written with
    ``training.fixtures.write_artifacts``, the function the service tests use too."""
    yield from _serve_tiny_onnx(tmp_path_factory, "dr")


@pytest.fixture(scope="session")
def bloodmnist_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """As :func:`onnx_service`, for BloodMNIST: a model whose raw captures are cropped to a
    field of view before preprocessing."""
    yield from _serve_tiny_onnx(tmp_path_factory, "bloodmnist")


@pytest.fixture(scope="session")
def chestxray14_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """As :func:`onnx_service`, for a multilabel model (ChestX-ray14's findings)."""
    yield from _serve_tiny_onnx(tmp_path_factory, "chestxray14")


def _serve_tiny_onnx(tmp_path_factory: pytest.TempPathFactory, dataset: str) -> Iterator[str]:
    from training.fixtures import write_artifacts

    workdir = tmp_path_factory.mktemp(f"onnx-service-{dataset}")
    model_dir = write_artifacts(workdir / "models", dataset=dataset, stage_sizes=(1, 1, 1, 1),
                                image_size=32, runtimes=["onnx"])["onnx"]
    port = free_port()
    log_path = workdir / "service.log"
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics")}
    command = [sys.executable, "-m", "services", "--framework", "onnx", "--model",
               str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--threads", "8", "--intra-op-threads", "1", "--max-batch-size", "4"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=environ, stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"onnx service exited with {process.returncode}:\n"
                            f"{log_path.read_text(errors='replace')}")
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"onnx service not ready:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# ---------------------------------------------------------------------- a stub server


class _StubHandler(BaseHTTPRequestHandler):
    """Pretends to be a service: a valid ``/model``; ``/predict`` per the server's mode."""

    protocol_version = "HTTP/1.1"  # keep-alive, like gunicorn

    def do_GET(self) -> None:
        if self.path == "/model":
            framework = self.server.framework  # type: ignore[attr-defined]
            self._json(200, {"framework": framework, "dataset": "dr",
                             "class_names": DR_CLASSES})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "error":
            self._json(500, {"error": "stub failure"})
            return
        if mode == "slow":
            time.sleep(0.2)
        self._json(200, {"label": DR_CLASSES[0], "class_index": 0,
                         "model": {"framework": self.server.framework}})  # type: ignore[attr-defined]

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_service() -> Iterator[Callable[..., str]]:
    """``stub_service(mode, framework="torch")``: URL of a stub service on loopback whose
    ``/predict`` answers a valid prediction ("ok"), one after 200 ms ("slow"), or HTTP 500
    ("error")."""
    servers: list[ThreadingHTTPServer] = []

    def start(mode: str, framework: str = "torch") -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
        server.daemon_threads = True
        server.mode = mode  # type: ignore[attr-defined]
        server.framework = framework  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
