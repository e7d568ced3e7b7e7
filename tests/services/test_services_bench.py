"""``python -m bench.studies.serving_overhead`` end to end on a tiny model: it writes its artifacts,
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
        [sys.executable, "-m", "bench.studies.serving_overhead", "--runtimes", "onnx",
         "--stage-sizes", "1,1,1,1", "--image-size", "32", "--max-batch-size", "4",
         "--clients", "4", "--seconds", "1", "--batch-seconds", "0.2", "--requests", "5",
         "--threads", "1", "--rounds", "2",
         "--workdir", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = json.loads((out / "serving_overhead.json").read_text())
    assert row["runtime"] == "onnx" and row["reference_batch"] in (1, 2, 4)
    # one loaded child measured three times: before, between and after the two HTTP phases
    assert len(row["in_process"]) == 3 and len(row["rounds"]) == 2
    assert all(set(p["images_per_s_by_batch"]) == {"1", "2", "4"} for p in row["in_process"])
    assert row["predict_p50_ms"] > 0 and row["http_p50_ms"] > 0
    assert row["http_images_per_s"] > 0 and row["efficiency"] > 0
    low, high = row["efficiency_range"]
    assert low <= row["efficiency"] <= high
    for r in row["rounds"]:
        assert r["overhead_ms"] == pytest.approx(r["http_p50_ms"] - r["predict_p50_ms"])
        assert r["efficiency"] == pytest.approx(
            r["http_images_per_s"] / r["in_process_images_per_s"])
    assert 0 < row["paired_overhead_ms"] < row["http_p50_ms"]
    # the service's batches, timed by its own metrics, against in-process at the same size
    assert row["preferred_batch_size"] in (1, 2, 4) and row["compute_speed"] > 0
    assert 0 < row["runtime_busy"] <= 1.05 and row["mean_batch"] >= 1
    # the service (gunicorn worker) worked during the concurrent phase, and so did the clients
    assert 0 < row["server_cpu_cores"] <= os.cpu_count() + 0.5
    assert 0 < row["client_cpu_cores"] <= os.cpu_count() + 0.5
    assert "| onnx |" in (out / "serving_overhead.md").read_text()
