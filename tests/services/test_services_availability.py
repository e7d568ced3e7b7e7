"""services.availability: the file the proxy checks exists exactly while no gunicorn worker
is ready, driven by the hooks of deploy/gunicorn.conf.py."""

from __future__ import annotations

import runpy
import types
from pathlib import Path

import pytest

from services import availability

GUNICORN_CONF = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py"


def test_the_file_follows_the_workers(tmp_path: Path) -> None:
    """Down at master start, up with the first ready worker, still up while one of two is
    left, down when the last one is gone; stale marks of an earlier run are cleared."""
    path = str(tmp_path / "onnx.unavailable")
    Path(path + ".ready-999").write_text("from a previous run")
    availability.reset(path)
    assert Path(path).exists() and not Path(path + ".ready-999").exists()
    availability.worker_ready(path, 11)
    availability.worker_ready(path, 12)
    assert not Path(path).exists()
    availability.worker_gone(path, 11)
    assert not Path(path).exists()
    availability.worker_gone(path, 12)
    assert Path(path).exists()
    availability.worker_ready(path, 13)  # the respawned worker
    assert not Path(path).exists()


def test_a_worker_ready_during_the_check_is_not_hidden(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The master finds no mark, a worker gets ready before the master creates the file:
    the master's second look removes the file again (else the proxy would refuse all)."""
    path = str(tmp_path / "x.unavailable")
    availability.reset(path)
    real_create = availability._create

    def create_while_a_worker_gets_ready(target: str) -> None:
        real_create(target)
        if target == path:
            availability.worker_ready(path, 42)  # lands between check and creation
            real_create(target)                  # ... and the master creates it after

    monkeypatch.setattr(availability, "_create", create_while_a_worker_gets_ready)
    availability.worker_gone(path, 41)
    assert not Path(path).exists()


def test_off_when_unset_and_harmless_when_unwritable(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    assert availability.marker_path({}) is None
    availability.reset(None)
    availability.worker_gone(None, 1)  # nothing to do, nothing raised
    missing = str(tmp_path / "no-such-dir" / "x.unavailable")
    availability.reset(missing)
    availability.worker_ready(missing, 1)
    assert "cannot" in caplog.text


def test_gunicorn_hooks_drive_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """deploy/gunicorn.conf.py as gunicorn runs it: on_starting, post_worker_init and
    child_exit keep VERSUS_UNAVAILABLE_FILE."""
    path = tmp_path / "torch.unavailable"
    monkeypatch.setenv("VERSUS_UNAVAILABLE_FILE", str(path))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    conf = runpy.run_path(str(GUNICORN_CONF))
    server = types.SimpleNamespace(log=types.SimpleNamespace(info=lambda *a: None))
    worker = types.SimpleNamespace(pid=321)
    conf["on_starting"](server)
    assert path.exists()
    conf["post_worker_init"](worker)
    assert not path.exists()
    conf["child_exit"](server, worker)
    assert path.exists()
