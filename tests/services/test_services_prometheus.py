"""A real Prometheus server scrapes a real two-worker service: the target is up, request
counts summed over workers match what was sent, and latency quantiles and per-stage series
are queryable with the labels the dashboards use.

Skips when the ``prometheus`` binary is not installed (Debian package ``prometheus``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")
REQUESTS = 12

if not PROMETHEUS:
    pytest.skip("prometheus not found on PATH (apt-get install prometheus)",
                allow_module_level=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prometheus(tmp_path: Path):
    """Start Prometheus on loopback; returns (start(target) -> base URL); always stopped."""
    processes: list[subprocess.Popen] = []

    def start(target: str) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: versus\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        port = free_port()
        log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
        processes.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT))
        log.close()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    return base
            except requests.RequestException:
                time.sleep(0.25)
        pytest.fail((tmp_path / "prometheus.log").read_text())

    yield start
    for process in processes:
        process.terminate()
        process.wait(30)


def query(base: str, promql: str) -> list[dict]:
    response = requests.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def wait_for(base: str, promql: str, check, deadline_s: float = 60) -> list[dict]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        result = query(base, promql)
        if result and check(result):
            return result
        time.sleep(0.5)
    pytest.fail(f"{promql} never satisfied the check; last result {query(base, promql)}")


def test_prometheus_scrapes_a_multi_worker_service(serve, prometheus, make_image) -> None:
    server = serve("onnx", WORKERS=2, MAX_QUEUE_DELAY_MS=5)
    base = prometheus(f"127.0.0.1:{server.port}")
    for seed in range(REQUESTS):
        response = requests.post(server.url("/predict"), data=make_image(seed),
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert response.status_code == 200
    requests.post(server.url("/predict"), data=b"junk", headers={"Content-Type": "image/png"},
                  timeout=30)

    wait_for(base, 'up{job="versus"}', lambda r: r[0]["value"][1] == "1")
    sel = 'framework="onnx",model="dr"'
    wait_for(base, f'sum(versus_requests_total{{{sel},route="/predict",code="200"}})',
             lambda r: float(r[0]["value"][1]) == REQUESTS)
    wait_for(base, f'sum(versus_rejected_requests_total{{{sel},reason="undecodable_image"}})',
             lambda r: float(r[0]["value"][1]) == 1)
    stages = wait_for(base, f"sum by (stage) (versus_stage_duration_seconds_count{{{sel}}})",
                      lambda r: len(r) == 5)
    assert {s["metric"]["stage"] for s in stages} == {
        "decode", "preprocess", "queue", "compute", "postprocess"}
    p50 = query(base, "histogram_quantile(0.5, sum by (le) "
                      f"(versus_request_duration_seconds_bucket{{{sel},route=\"/predict\"}}))")
    assert 0 < float(p50[0]["value"][1]) < 5
    info = query(base, f"versus_model_info{{{sel}}}")
    assert len(info) == 1 and info[0]["metric"]["version"] == "1"
    server.stop()
