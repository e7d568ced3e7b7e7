"""The nginx proxy of deploy/nginx/ for real: the template rendered as the nginx image
renders it, a real nginx on loopback (unprivileged prefix) in front of a real gunicorn
serving a tiny seeded ONNX model.

Without nginx installed the process tests skip (Debian: ``apt-get install nginx``; .ci/run
installs it). Floods are bounded (at most 128 loopback connections, a few seconds each).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.robustness.proxy import (
    Proxy,
    nginx_binary,
    proxied_service,
    proxy_env,
    render,
    start_proxy,
)
from bench.robustness.sample_image import random_png
from bench.robustness.slow_clients import DEFAULT_COUNTS, KINDS, measure, timed_request
from bench.services import LocalServiceSettings, Service, free_port
from training.fixtures import write_artifacts

GOOD_REQUEST_BOUND_S = 1.0
"""'Well under a second': a 32 px model answers in milliseconds on loopback."""
READY_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parents[2]

needs_nginx = pytest.mark.skipif(
    nginx_binary() is None,
    reason="nginx not installed (Debian: apt-get install nginx; .ci/run installs it)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Proxy]]:
    """gunicorn (one worker, 32 request threads) serving a tiny seeded ONNX model, behind
    nginx, wired as in docker-compose.yml."""
    if nginx_binary() is None:
        pytest.skip("nginx not installed (Debian: apt-get install nginx; .ci/run installs it)")
    root = tmp_path_factory.mktemp("proxy")
    model = write_artifacts(root / "models", dataset="dr", stage_sizes=(1, 1, 1, 1),
                            image_size=32, runtimes=["onnx"])["onnx"]
    settings = LocalServiceSettings(workers=1, http_threads=32, intra_op_threads=1,
                               max_batch_size=8, queue_size=32)
    with proxied_service("onnx", model, root / "stack", settings,
                         ready_timeout_s=READY_TIMEOUT_S) as (service, proxy):
        assert proxy is not None
        yield service, proxy


@pytest.fixture(scope="module")
def service(stack: tuple[Service, Proxy]) -> Service:
    return stack[0]


@pytest.fixture(scope="module")
def proxy(stack: tuple[Service, Proxy]) -> Proxy:
    return stack[1]


def test_render_substitutes_only_versus_names() -> None:
    """envsubst's rule with the image's filter: VERSUS_* names are replaced, nginx's own
    $variables stay, and a VERSUS_* name the template needs but is not given is an error."""
    text = render(proxy_env("127.0.0.1:9", "10.0.0.5:8001", Path("/run/x.unavailable"), 1234))
    assert "listen 127.0.0.1:9 " in text and "server 10.0.0.5:8001;" in text
    assert "client_max_body_size 1234;" in text and "if (-f /run/x.unavailable)" in text
    assert "$http_host" in text and "$proxy_add_x_forwarded_for" in text
    with pytest.raises(KeyError, match="VERSUS_PROXY_UPSTREAM"):
        render({"VERSUS_PROXY_LISTEN": "9", "VERSUS_MAX_BODY_BYTES": "1"})


def test_keepalive_outlasts_the_load_balancer_and_gunicorn_outlasts_nginx() -> None:
    """Whoever sends requests on a kept-alive connection must close it first: the ALB
    (idle_timeout) before nginx's client keep-alive, nginx's upstream keep-alive before
    gunicorn's own (VERSUS_KEEPALIVE), else a request meets a closing connection (a 502)."""
    from services.settings import ServerSettings

    text = render(proxy_env("127.0.0.1:9", "127.0.0.1:8", Path("/run/x"), 1))
    http_block, upstream_block = text.split("upstream versus_service {")
    client = int(re.search(r"^\s*keepalive_timeout (\d+)s;", http_block, re.M)[1])
    upstream = int(re.search(r"^\s*keepalive_timeout (\d+)s;", upstream_block, re.M)[1])
    alb = (ROOT / "terraform" / "alb.tf").read_text()
    assert client > int(re.search(r"^\s*idle_timeout\s*=\s*(\d+)", alb, re.M)[1])
    assert upstream < ServerSettings().keepalive


@needs_nginx
def test_good_requests_pass_through(proxy: Proxy) -> None:
    """A prediction, the service's own errors and headers come through the proxy unchanged."""
    ok = requests.post(proxy.url + "/predict", data=random_png(), timeout=10,
                       headers={"Content-Type": "image/png", "Accept": "application/json"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["model"]["framework"] == "onnx"
    bad = requests.post(proxy.url + "/predict", data=b"not an image", timeout=10,
                        headers={"Content-Type": "image/png", "Accept": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json()


@needs_nginx
@pytest.mark.parametrize("kind", KINDS)
def test_a_flood_does_not_delay_other_clients(proxy: Proxy, service: Service, kind: str
                                              ) -> None:
    """While 128 idle, 40 slow-header or 40 slow-body connections (one byte a second) are
    held open, good requests through the proxy finish well under a second. (Straight to
    gunicorn each such connection holds one of its 32 request threads: the same requests get
    no answer within 3 s; see deploy/README.md.)"""
    result = measure(proxy.url, random_png(), kind, DEFAULT_COUNTS[kind], requests=5, timeout_s=5.0)
    assert result["held"] == DEFAULT_COUNTS[kind], "the flood was not held during the test"
    assert result["statuses"] == [200] * 5
    assert max(result["latencies_s"]) < GOOD_REQUEST_BOUND_S, result
    assert service.process is not None and service.process.poll() is None


@needs_nginx
@pytest.mark.parametrize(("chunk", "status"), [
    (b"fffffffffffffff\r\n", 400),  # beyond any file offset: malformed
    (b"5000000\r\nx", 413),         # 80 MiB announced (> the 64 MiB limit), first byte sent
])
def test_a_huge_declared_chunk_size_is_answered_at_once(proxy: Proxy, chunk: bytes,
                                                        status: int) -> None:
    """A chunked body announcing an absurd or over-limit chunk gets a prompt JSON 4xx from
    nginx; gunicorn never sees it."""
    host, port = proxy.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunk)
        answer = b""
        while not answer.rstrip().endswith(b"}"):
            received = sock.recv(4096)
            if not received:
                break
            answer += received
    elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert int(head.split()[1]) == status, head
    assert "error" in json.loads(body)
    assert elapsed < GOOD_REQUEST_BOUND_S


@needs_nginx
def test_a_body_over_the_limit_is_refused_in_json(service: Service, tmp_path: Path) -> None:
    """The proxy enforces VERSUS_MAX_BODY_BYTES itself: 413 with the service's error shape,
    gunicorn never involved; a body within the limit is served."""
    body = random_png(size=64)
    small = start_proxy(service.url.removeprefix("http://"), tmp_path,
                        max_body_bytes=len(body) - 1)
    try:
        refused = requests.post(small.url + "/predict", data=body, timeout=10,
                                headers={"Content-Type": "image/png"})
        assert refused.status_code == 413
        assert refused.json()["error"].startswith(f"request body larger than {len(body) - 1}")
        assert timed_request(small.url, random_png(size=8), timeout_s=10)[1] == 200
    finally:
        small.stop()


@needs_nginx
def test_no_worker_ready_is_a_prompt_503(stack: tuple[Service, Proxy]) -> None:
    """While the service's unavailable file exists (gunicorn's hooks keep it while no worker
    is ready) the proxy answers 503 + Retry-After at once, without asking gunicorn; the
    service's own file is gone once its worker is ready."""
    service, proxy = stack
    marker = proxy.unavailable_file  # also the service's VERSUS_UNAVAILABLE_FILE
    assert marker.parent.is_dir() and not marker.exists()  # the worker is ready
    marker.write_text("as gunicorn's child_exit hook writes it")
    try:
        started = time.monotonic()
        answer = requests.get(proxy.url + "/readyz", timeout=10)
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
        assert "not answering" in answer.json()["error"]
        assert time.monotonic() - started < GOOD_REQUEST_BOUND_S
    finally:
        marker.unlink()
    assert requests.get(proxy.url + "/readyz", timeout=10).status_code == 200


@needs_nginx
def test_upstream_down_is_a_json_503_with_retry_after(tmp_path: Path) -> None:
    """Nothing listening behind the proxy (gunicorn stopped or not yet started): every route
    gets 503, Retry-After and a JSON error at once, never a hang or an HTML page."""
    gone = start_proxy(f"127.0.0.1:{free_port()}", tmp_path)
    try:
        for method, path in (("GET", "/readyz"), ("POST", "/predict"),
                             ("POST", "/v2/models/x/infer")):
            started = time.monotonic()
            answer = requests.request(method, gone.url + path, data=b"{}", timeout=10)
            assert answer.status_code == 503, (path, answer.text)
            assert int(answer.headers["Retry-After"]) >= 1
            assert answer.headers["Content-Type"] == "application/json"
            assert "not answering" in answer.json()["error"]
            assert time.monotonic() - started < GOOD_REQUEST_BOUND_S
    finally:
        gone.stop()
