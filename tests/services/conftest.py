"""Fixtures for the service tests: tiny real models for every runtime, apps, servers.

The route and error tests run on each base runtime (``runtime`` fixture); a variant
(``torch-bf16``, ``openvino-int8``, ...) is its base's predictor with another setting, so
``test_services_predictors`` checks every row's predictor and ``test_services_variants`` serves
each variant once through the app and once through a real gunicorn service.

One seeded torch initialisation (ResNet stage sizes (1, 1, 1, 1), 32 px input, the five DR
classes) is ported to Keras and Flax and exported to ONNX by
``training.fixtures.write_artifacts`` into the real layout ``models/dr/<runtime>/1/``
with valid manifests, once per session and runtime. Each predictor is loaded once per session
(lazily, so a run of one runtime's tests imports only the frameworks it needs) and injected
into the apps the tests build. ``serve`` starts real gunicorn services on loopback.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from services.app import create_app
from services.predictors import Predictor, load_predictor
from shared.imaging import PreprocessSpec, preprocess
from shared.processes import child_environment
from shared.runtimes import base_runtimes, get_runtime, runtime_names
from training.fixtures import runtime_model_dir, write_artifacts

ALL_RUNTIMES = runtime_names()
RUNTIMES = tuple(base_runtimes())
VARIANTS = tuple(r for r in ALL_RUNTIMES if r not in RUNTIMES)
DATASET = "dr"
IMAGE_SIZE = 32
STAGE_SIZES = (1, 1, 1, 1)
MAX_BATCH_SIZE = 8


@pytest.fixture(scope="session")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/models``: the artifacts are written into it on demand by :func:`model_dirs`."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def model_dirs(model_root: Path) -> Callable[[str], Path]:
    """``model_dirs(runtime)``: ``<root>/dr/<artifact>/1`` of the artifact the runtime serves,
    written on first use (each from the same seeded weights, so writing them one at a time
    gives the same models)."""

    def get(runtime: str) -> Path:
        path = model_dir(model_root, runtime)
        if not (path / "manifest.json").is_file():
            write_artifacts(model_root, dataset=DATASET, stage_sizes=STAGE_SIZES,
                            image_size=IMAGE_SIZE, runtimes=[runtime])
        return path

    return get


def model_dir(root: Path, runtime: str) -> Path:
    return runtime_model_dir(root, DATASET, runtime, "1")


@pytest.fixture(scope="session")
def predictors() -> dict[str, Predictor]:
    """Loaded predictors by runtime, filled on first use (see :func:`predictor`)."""
    return {}


def get_predictor(runtime: str, predictors: dict[str, Predictor],
                  model_dirs: Callable[[str], Path]) -> Predictor:
    if runtime not in predictors:
        predictors[runtime] = load_predictor(runtime, model_dirs(runtime), threads=1)
    return predictors[runtime]


SLOW_RUNTIMES = {"torch-compile": "inductor compiles each batch bucket: ~50 s a shape on a "
                                   "busy 2-core host, ~4 s from its on-disk cache"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests of a slow-to-warm runtime are ``slow`` (deselect with -m "not slow")."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(params.get(key) in SLOW_RUNTIMES for key in ("runtime", "variant")):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def predictor(runtime: str, predictors: dict[str, Predictor],
              model_dirs: Callable[[str], Path]) -> Predictor:
    """The session's predictor for ``runtime`` (loaded once, with one intra-op thread)."""
    return get_predictor(runtime, predictors, model_dirs)


@pytest.fixture
def all_predictors(predictors: dict[str, Predictor],
                   model_dirs: Callable[[str], Path]) -> dict[str, Predictor]:
    """Every runtime's session predictor."""
    return {rt: get_predictor(rt, predictors, model_dirs) for rt in ALL_RUNTIMES}


def app_config(runtime: str, path: Path, **overrides: object) -> dict[str, object]:
    return {"FRAMEWORK": runtime, "MODEL_DIR": path,
            "MAX_BATCH_SIZE": MAX_BATCH_SIZE, "QUEUE_SIZE": 32, **overrides}


@pytest.fixture
def make_app(runtime: str, model_dirs: Callable[[str], Path], predictor: Predictor
             ) -> Iterator[Callable[..., Flask]]:
    """``make_app(start=True, **config)``: an app serving the session's predictor for
    ``runtime``; every app's batcher is stopped after the test."""
    apps: list[Flask] = []

    def build(*, start: bool = True, **overrides: object) -> Flask:
        config = {**app_config(runtime, model_dirs(runtime)), "PREDICTOR": predictor,
                  **overrides}
        apps.append(create_app(config, start=start))
        return apps[-1]

    yield build
    for app in apps:
        app.extensions["versus"].shutdown(timeout=10)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """A started app with the default test settings."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def image_bytes(seed: int, size: tuple[int, int] = (48, 40), fmt: str = "PNG") -> bytes:
    """A distinct random RGB image per seed, encoded as ``fmt``."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def make_image() -> Callable[..., bytes]:
    """``make_image(seed, size=(w, h), fmt="PNG")``: a distinct random image per seed."""
    return image_bytes


PRECISION_ATOL = {"fp32": 1e-5, "bf16": 3e-2, "fp16": 3e-2, "int8": 3e-2}
"""Probability tolerance between two computations of one runtime's answers (served vs in
process, another batch composition). fp32: round-off only. bf16/fp16 (8/11-bit mantissas)
and int8 kernels can pick other blockings, so accumulation order, for other batch sizes;
what stays is that the right image's answer comes back (the images differ by far more)."""


def precision_atol(runtime: str) -> float:
    return PRECISION_ATOL[get_runtime(runtime).precision]


@pytest.fixture
def atol(runtime: str) -> float:
    """``precision_atol(runtime)``: the tolerance fit for the row's precision."""
    return precision_atol(runtime)


@pytest.fixture
def expected(predictor: Predictor) -> Callable[[bytes], np.ndarray]:
    """``expected(data)``: the runtime's probabilities for ``data`` computed in-process
    (shared preprocessing + one ``predict`` call, no service involved)."""
    spec = PreprocessSpec.from_manifest_input(predictor.manifest.input.to_dict())
    return lambda data: predictor.predict(preprocess(data, spec)[None])[0]


# ---------------------------------------------------------------------- real gunicorn servers

REPO = Path(__file__).resolve().parents[2]
READY_DEADLINE_S = 180.0


class Server:
    """A ``python -m services`` process (gunicorn master + workers) on 127.0.0.1."""

    def __init__(self, runtime: str, model_dir: Path, workdir: Path, **env: object) -> None:
        self.runtime = runtime
        self.port = free_port()
        self.log_path = workdir / f"gunicorn-{runtime}-{self.port}.log"
        environ = service_environ(workdir / f"metrics-{self.port}", **env)
        command = [sys.executable, "-m", "services", "--framework", runtime,
                   "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=environ, stdout=log,
                                            stderr=subprocess.STDOUT)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> Server:
        """Poll /readyz until 200; fail with the log if the process dies or time runs out."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url("/readyz"), timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.25)
        pytest.fail(f"server not ready after {deadline_s} s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the master and wait; SIGKILL it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def service_environ(metrics_dir: Path, **env: object) -> dict[str, str]:
    """Environment of a service subprocess: ours, the repository importable, a fresh
    Prometheus multi-process directory, and ``VERSUS_<key>`` for every keyword."""
    metrics_dir.mkdir(parents=True)
    return child_environment({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                              **{f"VERSUS_{k}": str(v) for k, v in env.items()}})


@pytest.fixture(scope="session")
def subprocess_env() -> Callable[..., dict[str, str]]:
    """``subprocess_env(metrics_dir, **VERSUS_env)``: see :func:`service_environ`."""
    return service_environ


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def serve(tmp_path_factory: pytest.TempPathFactory, model_dirs: Callable[[str], Path]
          ) -> Iterator[Callable[..., Server]]:
    """``serve(runtime, model_dir=None, **VERSUS_env)``: a started, ready server (of the
    session's DR model unless ``model_dir`` names another); every server is stopped
    (SIGTERM, then SIGKILL) and waited for at the end of the session at the latest."""
    workdir = tmp_path_factory.mktemp("servers")
    servers: list[Server] = []

    def start(runtime: str, *, wait: bool = True, model_dir: Path | None = None,
              **env: object) -> Server:
        env = {"WORKERS": 1, "THREADS": 32, "INTRA_OP_THREADS": 1, **env}
        servers.append(Server(runtime, model_dir or model_dirs(runtime), workdir, **env))
        return servers[-1].wait_ready() if wait else servers[-1]

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------- field of view

CAPTURE_DATASET = "bloodmnist"
"""The dataset whose images are a centre crop of the raw capture (``raw_capture``)."""


@pytest.fixture(scope="session")
def capture_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny seeded ONNX BloodMNIST model (its manifest carries the dataset's centre-crop
    field of view): the model for the raw-capture vs dataset-image tests."""
    root = tmp_path_factory.mktemp("capture-models")
    return write_artifacts(root, dataset=CAPTURE_DATASET, stage_sizes=STAGE_SIZES,
                           image_size=IMAGE_SIZE, runtimes=["onnx"])["onnx"]


@pytest.fixture(scope="session")
def capture_server(tmp_path_factory: pytest.TempPathFactory, capture_model_dir: Path
                   ) -> Iterator[Server]:
    """A real gunicorn service of :func:`capture_model_dir`."""
    server = Server("onnx", capture_model_dir, tmp_path_factory.mktemp("capture-server"),
                    WORKERS=1, THREADS=8, INTRA_OP_THREADS=1, MAX_BATCH_SIZE=MAX_BATCH_SIZE)
    yield server.wait_ready()
    server.stop()
