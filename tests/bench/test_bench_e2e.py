"""python -m bench end to end: two tiny real services (torch and ONNX Runtime under
gunicorn), a two-level Locust sweep with short windows, the open loop, the in-process
baseline and the image-size sweep; then a run in which one service is killed mid-level."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.config import profile_config
from bench.report.render import summary_text, write_report
from bench.report.tables import all_tables
from bench.runner import Hooks, run_bench
from bench.services import Service

FRAMEWORKS = ("torch", "onnx")
KILL_AFTER_S = 2.0

pytestmark = pytest.mark.slow


def tiny_config(models: Path, out: Path, **changes: Any):
    """The demo profile, shrunk further: two levels, 1 s windows, 32 px payloads."""
    return profile_config(
        "demo", frameworks=FRAMEWORKS, models=models, out=out, levels=(1, 2), repeats=2,
        window_s=1.0, stable_windows=3, level_warmup_s=1.0, level_max_s=6.0,
        service_warmup_s=1.0, open_loop_duration_s=4.0, open_loop_warmup_s=1.0,
        inprocess_batch_sizes=(1, 4), inprocess_repeats=2, inprocess_min_time_s=0.2,
        image_sizes=(32, 64), size_batch=2, cache=out / "cache", ready_timeout_s=240.0,
    ).replace(**changes)


@pytest.fixture(scope="module")
def clean_run(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("reports")
    cfg = tiny_config(tiny_models, out, run_id="clean")
    cfg = cfg.replace(payload=cfg.payload.__class__(profile="small", size=32, count=4))
    report_dir = run_bench(cfg, log=lambda _: None)
    results = json.loads((report_dir / "results.json").read_text())
    write_report(results, report_dir)
    return report_dir, results


def test_results_json_holds_every_measurement(clean_run: tuple[Path, dict[str, Any]]
                                              ) -> None:
    report_dir, results = clean_run
    assert results["schema"] == "versus-bench/1" and not results["interrupted"]
    assert results["errors"] == [] and results["dataset"] == "bloodmnist"
    for framework in FRAMEWORKS:
        record = results["services"][framework]
        assert record["status"] == "ok", record.get("death")
        assert record["readyz"]["serving"]["intra_op_threads"] == 1
        levels = record["closed_loop"]["levels"]
        assert [lv["users"] for lv in levels] == [1, 2]
        for level in levels:
            assert level["status"] in ("ok", "unstable")
            assert level["measured_repeats"] == 2
            assert level["throughput_rps"]["n"] == 2 and level["throughput_rps"]["min"] > 0
            assert level["latency_ms"]["p99"]["median"] >= level["latency_ms"]["p50"]["median"]
            assert level["stages_ms"]["compute"]["median"] > 0
            assert level["avg_batch_size"]["median"] >= 1.0
            assert level["loadgen_cpu"]["median"] > 0
        for run in record["runs"]:
            assert run["measured"]["failed"] == 0
            assert (report_dir / run["files"]["stats_csv"]).is_file()
            assert (report_dir / run["files"]["history_csv"]).is_file()
        assert record["in_process"]["best_images_per_s"]["median"] > 0
        assert record["efficiency"] > 0
        assert record["open_loop"]["status"] == "ok"
        assert record["open_loop"]["achieved_rps"] > 0
        sizes = results["image_size_sweep"]["frameworks"][framework]["by_size"]
        assert sorted(sizes, key=int) == ["32", "64"]
    assert results["parity"]["agreement"]["pairs"]["onnx-torch"]["passed"] is True
    assert [row["framework"] for row in results["training"]["rows"]] == list(FRAMEWORKS)
    assert results["environment"]["threads"]["intra_op_threads_per_worker"] == 1


def test_report_renders_in_headless_chromium(
        clean_run: tuple[Path, dict[str, Any]], tmp_path: Path,
        screenshot: Callable[..., Path], loaded_image_widths: Callable[[Path], list[int]],
        looks_rendered: Callable[[Path], bool]) -> None:
    report_dir, _ = clean_run
    html = report_dir / "index.html"
    png = screenshot(html, tmp_path / "shot.png", tmp_path / "profile")
    assert looks_rendered(png)
    widths = loaded_image_widths(html)
    assert len(widths) >= 6 and all(w > 0 for w in widths)


def kill_during_level(victim: str, users: int) -> Hooks:
    """Hooks that SIGKILL ``victim``'s process group ``KILL_AFTER_S`` into level ``users``."""

    def before_level(service: Service, repeat: int, level_users: int) -> None:
        if service.framework == victim and level_users == users and service.process:
            pid = service.process.pid
            threading.Timer(KILL_AFTER_S, os.killpg, (pid, signal.SIGKILL)).start()

    return Hooks(before_level=before_level)


def test_a_service_killed_mid_run_is_reported_as_died(tiny_models: Path, tmp_path: Path
                                                       ) -> None:
    cfg = tiny_config(tiny_models, tmp_path, run_id="killed", repeats=1, inprocess=False,
                      level_max_s=20.0)
    report_dir = run_bench(cfg, hooks=kill_during_level("torch", 2), log=lambda _: None)
    results = json.loads((report_dir / "results.json").read_text())
    torch, onnx = results["services"]["torch"], results["services"]["onnx"]
    assert torch["status"] == "died" and onnx["status"] == "ok"
    assert torch["death"]["exit_code"] == -signal.SIGKILL
    assert torch["death"]["during"] == {"phase": "closed-loop", "repeat": 0, "users": 2}
    died = torch["runs"][-1]
    assert died["status"] == "died" and died["measured"] is None
    assert died["stop_reason"] == "service-died" and died["wall_s"] < 20.0
    level_2 = torch["closed_loop"]["levels"][1]
    assert level_2["status"] == "died" and level_2["throughput_rps"] is None
    assert "open_loop" not in torch and onnx["open_loop"]["status"] == "ok"
    summary = all_tables(results)["summary"]
    row = next(r for r in summary.rows if r[0] == "torch")
    assert row[1].startswith("DIED (exit code -9") and row[2] == "died"
    _, html = write_report(results, report_dir)
    assert "The torch service DIED during the run" in html.read_text()
    assert "DIED" in summary_text(results)


def test_oip_binary_upload_runs_end_to_end(tiny_models: Path, tmp_path: Path) -> None:
    """``--upload oip-binary``: the closed-loop levels and the open loop send client-
    preprocessed FP32 tensors through the binary OIP route, none fails, and the report
    says which upload the run used."""
    cfg = tiny_config(tiny_models, tmp_path, run_id="oip", frameworks=("onnx",), levels=(2,),
                      repeats=1, inprocess=False, image_sizes=(), accuracy_gate=False)
    cfg = cfg.replace(payload=cfg.payload.__class__(profile="small", size=32, count=4,
                                                    upload="oip-binary"))
    report_dir = run_bench(cfg, log=lambda _: None)
    results = json.loads((report_dir / "results.json").read_text())
    record = results["services"]["onnx"]
    assert record["status"] == "ok", record.get("death")
    assert record["warmup"]["failed"] == 0 and record["warmup"]["ok"] > 0
    for run in record["runs"]:
        assert run["measured"]["failed"] == 0 and run["measured"]["requests"] > 0
    assert record["open_loop"]["status"] == "ok" and record["open_loop"]["failed"] == 0
    assert record["open_loop"]["codes"].keys() == {"200"}
    assert results["payloads"]["VERSUS_UPLOAD"] == "oip-binary"
    environment = all_tables(results)["environment"].rows
    assert any(row[0] == "upload" and "oip-binary: OIP" in row[1] for row in environment)
