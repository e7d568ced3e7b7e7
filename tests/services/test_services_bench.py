"""``python -m bench.serving_overhead`` end to end on a tiny model: it writes its artifacts,
measures in-process and over HTTP, and reports overhead and efficiency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_serving_overhead_runs_on_a_tiny_model(tmp_path: Path, subprocess_env) -> None:
    out = tmp_path / "report"
    env = subprocess_env(tmp_path / "metrics")
    result = subprocess.run(
        [sys.executable, "-m", "bench.serving_overhead", "--runtimes", "onnx",
         "--stage-sizes", "1,1,1,1", "--image-size", "32", "--max-batch-size", "4",
         "--clients", "4", "--seconds", "1", "--requests", "5", "--threads", "1", "--rounds", "1",
         "--workdir", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads((out / "serving_overhead.json").read_text())
    assert row["runtime"] == "onnx" and row["best_batch"] in (1, 2, 4)
    assert row["predict_p50_ms"] > 0 and row["http_p50_ms"] > 0
    assert row["http_images_per_s"] > 0 and row["efficiency"] > 0
    assert row["overhead_ms"] == pytest.approx(row["http_p50_ms"] - row["predict_p50_ms"])
    assert 0 < row["paired_overhead_ms"] < row["http_p50_ms"] and len(row["rounds"]) == 1
    assert 0 < row["runtime_busy"] <= 1.05 and row["mean_batch"] >= 1
    # the service (gunicorn worker) worked during the concurrent phase, and so did the clients
    assert 0 < row["server_cpu_cores"] <= os.cpu_count() + 0.5
    assert 0 < row["client_cpu_cores"] <= os.cpu_count() + 0.5
    assert "| onnx |" in (out / "serving_overhead.md").read_text()
