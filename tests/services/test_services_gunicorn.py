"""Real gunicorn services (``python -m services``) on loopback, one per base runtime with two
workers: readiness, /predict, merged multi-process /metrics, 32 parallel distinct requests
answered correctly while batches of more than one form, bad input over real HTTP, SIGTERM
with requests in flight, and refusal of a model whose sha256 does not match. (Variants are
served by ``test_services_variants``.)"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from shared.runtimes import base_runtimes

pytestmark = pytest.mark.slow

PARALLEL = 32
WORKERS = 2
REPO = Path(__file__).resolve().parents[2]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or line.split("{")[0].split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module", params=base_runtimes())
def server(request: pytest.FixtureRequest, serve):
    """One two-worker service per runtime for this module; stopped when the module ends."""
    server = serve(request.param, WORKERS=WORKERS, MAX_BATCH_SIZE=8, PREFERRED_BATCH_SIZE=8,
                   MAX_QUEUE_DELAY_MS=20)
    yield server
    server.stop()


@pytest.fixture
def runtime(server) -> str:
    return server.runtime


def test_ready_predict_and_metrics(server, make_image, expected) -> None:
    ready = requests.get(server.url("/readyz"), timeout=10)
    assert ready.status_code == 200 and ready.json()["model"]["framework"] == server.runtime
    data = make_image(1)
    raw = requests.post(server.url("/predict"), data=data,
                        headers={"Content-Type": "image/png"}, timeout=30)
    form = requests.post(server.url("/predict"), files={"image": ("eye.png", data)}, timeout=30)
    for response in (raw, form):
        assert response.status_code == 200, response.text
        probs = list(response.json()["probabilities"].values())
        np.testing.assert_allclose(probs, expected(data), atol=1e-4)
    text = requests.get(server.url("/metrics"), timeout=10).text
    labels = {"framework": server.runtime, "model": "dr"}
    assert metric(text, "versus_requests_total", route="/predict", code="200", **labels) == 2
    assert metric(text, "versus_model_info", version="1", **labels) == 1  # livemax, not 2
    assert "_created" not in text


def test_parallel_requests_each_get_their_own_answer(server, make_image, expected) -> None:
    images = [make_image(100 + i, size=(40 + i, 36)) for i in range(PARALLEL)]
    wanted = np.stack([expected(data) for data in images])
    gaps = np.abs(wanted[:, None] - wanted[None]).max(axis=2) + np.eye(PARALLEL)
    assert gaps.min() > 1e-3  # the images are told apart by the model: cross-talk would show
    before = requests.get(server.url("/metrics"), timeout=10).text

    def post(data: bytes) -> list[float]:
        response = requests.post(server.url("/predict"), data=data,
                                 headers={"Content-Type": "image/png"}, timeout=60)
        assert response.status_code == 200, response.text
        return list(response.json()["probabilities"].values())

    with ThreadPoolExecutor(PARALLEL) as pool:
        got = np.array(list(pool.map(post, images)))
    np.testing.assert_allclose(got, wanted, atol=1e-4)

    after = requests.get(server.url("/metrics"), timeout=10).text
    labels = {"framework": server.runtime, "model": "dr"}
    images_done = (metric(after, "versus_batch_size_sum", **labels)
                   - metric(before, "versus_batch_size_sum", **labels))
    batches = (metric(after, "versus_batch_size_count", **labels)
               - metric(before, "versus_batch_size_count", **labels))
    assert images_done == PARALLEL  # summed over both workers' files
    assert batches < PARALLEL  # some batches held more than one image
    ones = (metric(after, "versus_batch_size_bucket", le="1.0", **labels)
            - metric(before, "versus_batch_size_bucket", le="1.0", **labels))
    assert ones < batches
    assert metric(after, "versus_queue_depth", **labels) == 0
    assert metric(after, "versus_inflight_requests", **labels) == 1  # this scrape


def test_bad_input_over_http_and_still_serving(server, make_image, expected) -> None:
    png = {"Content-Type": "image/png"}
    cases = [
        (requests.post(server.url("/predict"), data=b"\xff\xd8\xff\xe0garbage", headers=png,
                       timeout=30), 400),
        (requests.post(server.url("/predict"), data=bytes(70 * 2**20), headers=png,
                       timeout=60), 413),
        (requests.post(server.url("/predict"), data=b"{}",
                       headers={"Content-Type": "application/json"}, timeout=30), 415),
        (requests.post(server.url("/v2/models/dr/infer"), data=b"{oops",
                       headers={"Content-Type": "application/json"}, timeout=30), 400),
        (requests.get(server.url("/v2/models/other"), timeout=30), 404),
        (requests.put(server.url("/predict"), timeout=30), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text[:200]
        assert set(response.json()) == {"error"}
    data = make_image(5)
    response = requests.post(server.url("/predict"), data=data, headers=png, timeout=30)
    np.testing.assert_allclose(list(response.json()["probabilities"].values()),
                               expected(data), atol=1e-4)


def test_sigterm_lets_in_flight_requests_finish(server, make_image, expected) -> None:
    """Requests whose bodies are still arriving when SIGTERM lands are answered (this test
    ends the module's server for its runtime)."""
    images = [make_image(200 + i) for i in range(4)]
    sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in images]
    for sock, data in zip(sockets, images, strict=True):
        head = (f"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
        sock.sendall(head + data[: len(data) // 2])
    labels = {"framework": server.runtime, "model": "dr"}
    for _ in range(400):  # until every worker thread is inside the app, reading a body
        text = requests.get(server.url("/metrics"), timeout=10).text
        if metric(text, "versus_inflight_requests", **labels) == len(images) + 1:
            break
    else:
        pytest.fail("the partial requests never reached the app")
    server.process.send_signal(signal.SIGTERM)
    for sock, data in zip(sockets, images, strict=True):
        sock.sendall(data[len(data) // 2:])
    for sock, data in zip(sockets, images, strict=True):
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        sock.close()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), reply[:300]
        probs = list(json.loads(body)["probabilities"].values())
        np.testing.assert_allclose(probs, expected(data), atol=1e-4)
    assert server.process.wait(60) == 0
    assert "Traceback" not in server.log()


def test_gunicorn_refuses_a_model_with_a_wrong_sha256(model_dirs, subprocess_env, tmp_path
                                                       ) -> None:
    """Bypassing the CLI's own check, the worker refuses the model and gunicorn stops with
    exit code 3 (worker boot error) instead of restarting workers forever."""
    model_dir = shutil.copytree(model_dirs("onnx"), tmp_path / "dr" / "onnx" / "1")
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["sha256"] = "0" * 64
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    env = subprocess_env(tmp_path / "metrics", FRAMEWORK="onnx", MODEL_DIR=model_dir,
                         HOST="127.0.0.1", PORT=0, INTRA_OP_THREADS=1)
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "services.wsgi:app"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "sha256 mismatch" in result.stderr
