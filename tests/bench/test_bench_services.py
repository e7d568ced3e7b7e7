"""bench.services: model lookup, start failures with the log's tail, death detection,
and stopping the whole process group."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.services import (
    LocalServiceSettings,
    Service,
    ServiceError,
    ServicePool,
    datasets_under,
    latest_model_dirs,
    start_service,
)


def make_versions(root: Path, *versions: str, manifest: bool = True) -> None:
    for version in versions:
        directory = root / "dr" / "onnx" / version
        directory.mkdir(parents=True)
        if manifest:
            (directory / "manifest.json").write_text("{}")


def test_latest_version_is_the_highest_with_a_manifest(tmp_path: Path) -> None:
    make_versions(tmp_path, "1", "2", "10")
    (tmp_path / "dr" / "onnx" / "11").mkdir()  # being written: no manifest yet
    assert latest_model_dirs(tmp_path, "dr", ["onnx"])["onnx"].name == "10"
    assert latest_model_dirs(tmp_path, "dr", ["onnx"], "2")["onnx"].name == "2"
    with pytest.raises(ServiceError, match="no torch model"):
        latest_model_dirs(tmp_path, "dr", ["torch"])
    assert datasets_under(tmp_path) == ["dr"]
    assert datasets_under(tmp_path / "nowhere") == []


def test_settings_resolve_threads_and_become_flags() -> None:
    settings = LocalServiceSettings(workers=2).resolved(cores=8)
    assert settings.intra_op_threads == 4
    flags = settings.flags()
    assert flags[flags.index("--intra-op-threads") + 1] == "4"
    assert LocalServiceSettings(intra_op_threads=3).resolved(cores=8).intra_op_threads == 3


def test_a_service_that_cannot_start_reports_its_exit_code_and_log(tmp_path: Path) -> None:
    model = tmp_path / "models" / "dr" / "onnx" / "1"
    model.mkdir(parents=True)
    (model / "manifest.json").write_text(json.dumps({"schema_version": 1}))
    service = start_service("onnx", model, tmp_path / "logs", LocalServiceSettings())
    with pytest.raises(ServiceError) as exc:
        service.wait_ready(60)
    assert "exited with 1 while starting" in str(exc.value)
    assert "manifest.json" in str(exc.value)  # the service's own error message
    death = service.death()
    assert death is not None and death["exit_code"] == 1 and "error" in death["log_tail"]


def test_death_is_detected_and_the_group_is_stopped(tmp_path: Path) -> None:
    # a stand-in service: a process that spawns a child (like gunicorn's master + worker)
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "time.sleep(60)")
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    service = Service("torch", "http://127.0.0.1:9", process=process)
    assert service.death() is None
    with ServicePool() as pool:
        pool.add(service)
        time.sleep(0.5)
    assert service.death() == {"exit_code": -signal.SIGTERM, "signal": signal.SIGTERM,
                               "log_tail": ""}


def test_an_external_service_that_stops_answering_is_dead() -> None:
    service = Service("onnx", "http://127.0.0.1:9")  # discard port: nothing listens
    death = service.death()
    assert death is not None and "stopped answering" in death["log_tail"]
    assert service.stop() is None  # not ours to stop
