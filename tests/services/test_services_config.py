"""Settings from the environment, the ``python -m services`` CLI (flags -> environment, early
refusal of broken artifacts) and the gunicorn configuration file and hooks."""

from __future__ import annotations

import json
import runpy
import shutil
import types
from pathlib import Path

import pytest

from services import __main__ as cli
from services.settings import ServerSettings, ServiceSettings
from shared.processes import usable_cpu_count

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"


# ---------------------------------------------------------------------- settings


def test_service_settings_from_env_with_types_and_defaults() -> None:
    s = ServiceSettings.from_env({
        "VERSUS_FRAMEWORK": "jax", "VERSUS_MODEL_DIR": "models/dr/jax/1",
        "VERSUS_MAX_BATCH_SIZE": "4", "VERSUS_MAX_QUEUE_DELAY_MS": "2.5",
        "VERSUS_INTRA_OP_THREADS": "", "OTHER": "ignored",
    })
    assert (s.framework, s.model_dir, s.max_batch_size, s.max_queue_delay_ms) == (
        "jax", Path("models/dr/jax/1"), 4, 2.5)
    assert s.queue_size == 64 and s.intra_op_threads is None


def test_intra_op_threads_default_to_this_workers_share_of_the_cores() -> None:
    assert ServiceSettings().threads == usable_cpu_count()
    assert ServiceSettings(workers=usable_cpu_count() * 2).threads == 1
    assert ServiceSettings(intra_op_threads=3).threads == 3


@pytest.mark.parametrize(("env", "words"), [
    ({"VERSUS_MAX_BATCH_SIZE": "many"}, "VERSUS_MAX_BATCH_SIZE: expected int"),
    ({"VERSUS_MAX_BATCH_SIZE": "0"}, "MAX_BATCH_SIZE must be >= 1"),
    ({"VERSUS_QUEUE_SIZE": "4", "VERSUS_MAX_BATCH_SIZE": "8"}, "QUEUE_SIZE must be >="),
    ({"VERSUS_MAX_QUEUE_DELAY_MS": "-1"}, "MAX_QUEUE_DELAY_MS must be >= 0"),
    ({"VERSUS_PREFERRED_BATCH_SIZE": "32"}, "PREFERRED_BATCH_SIZE must be in 1..MAX_BATCH"),
])
def test_invalid_settings_name_the_variable(env: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ServiceSettings.from_env(env)


def test_framework_and_model_are_required() -> None:
    with pytest.raises(ValueError, match="VERSUS_FRAMEWORK"):
        ServiceSettings().require_model()
    with pytest.raises(ValueError, match="VERSUS_MODEL_DIR"):
        ServiceSettings(framework="torch").require_model()


def test_server_settings() -> None:
    s = ServerSettings.from_env({"VERSUS_PORT": "8003", "VERSUS_WORKERS": "2",
                                 "VERSUS_ACCESS_LOG": "true"})
    assert (s.bind, s.workers, s.access_log, s.threads) == ("0.0.0.0:8003", 2, True, 32)


# ---------------------------------------------------------------------- CLI


def test_cli_flags_become_the_environment(tmp_path: Path) -> None:
    args = cli.get_args_parser().parse_args(
        ["--framework", "jax", "--model", str(tmp_path), "--max-batch-size", "4",
         "--preferred-batch-size", "2"])
    env = cli.service_environment(args)
    assert env["VERSUS_FRAMEWORK"] == "jax" and env["VERSUS_PORT"] == "8003"
    assert env["VERSUS_MODEL_DIR"] == str(tmp_path.resolve())
    assert env["VERSUS_MAX_BATCH_SIZE"] == "4" and "VERSUS_INTRA_OP_THREADS" not in env
    settings = ServiceSettings.from_env(env)
    assert (settings.max_batch_size, settings.preferred_batch_size) == (4, 2)
    auto = cli.service_environment(cli.get_args_parser().parse_args(
        ["--framework", "jax", "--model", str(tmp_path)]))
    assert "VERSUS_PREFERRED_BATCH_SIZE" not in auto  # measured at warm-up


def test_cli_help_states_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 16)" in out and "(default: the runtime's: torch 8001" in out


def copy_model(model_dirs, tmp_path: Path, runtime: str = "onnx") -> Path:
    return Path(shutil.copytree(model_dirs(runtime), tmp_path / "dr" / runtime / "1"))


def test_cli_refuses_a_sha256_mismatch_before_starting_gunicorn(model_dirs, tmp_path) -> None:
    model = copy_model(model_dirs, tmp_path)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["sha256"] = "f" * 64
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        cli.main(["--framework", "onnx", "--model", str(model)])


def test_cli_refuses_a_model_of_another_framework(model_dirs, tmp_path) -> None:
    model = copy_model(model_dirs, tmp_path)
    with pytest.raises(SystemExit, match="serves torch artifacts;.* holds a 'onnx' one"):
        cli.main(["--framework", "torch", "--model", str(model)])


def test_cli_refuses_a_missing_manifest(tmp_path) -> None:
    with pytest.raises(SystemExit, match="manifest file not found"):
        cli.main(["--framework", "torch", "--model", str(tmp_path)])


# ---------------------------------------------------------------------- gunicorn config


@pytest.fixture
def gunicorn_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """deploy/gunicorn.conf.py evaluated as gunicorn does, with a private metrics dir."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    monkeypatch.setenv("VERSUS_WORKERS", "3")
    monkeypatch.setenv("VERSUS_PORT", "8004")
    return runpy.run_path(str(GUNICORN_CONF))


def test_gunicorn_conf_process_model(gunicorn_conf: dict) -> None:
    conf = gunicorn_conf
    assert conf["preload_app"] is False and conf["worker_class"] == "gthread"
    assert conf["workers"] == 3 and conf["bind"] == ["0.0.0.0:8004"]
    assert conf["timeout"] >= 120 and conf["graceful_timeout"] >= 10
    assert conf["wsgi_app"] == "services.wsgi:app"


def test_gunicorn_hooks_wipe_and_clean_metrics_files(gunicorn_conf: dict, tmp_path) -> None:
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_123.db").write_bytes(b"x")
    (prom / "gauge_livesum_123.db").write_bytes(b"x")
    (prom / "keep.txt").write_text("not ours")
    server = types.SimpleNamespace(log=types.SimpleNamespace(info=lambda *a: None))
    gunicorn_conf["on_starting"](server)
    assert sorted(p.name for p in prom.iterdir()) == ["keep.txt"]
    (prom / "gauge_livesum_77.db").write_bytes(b"x")
    (prom / "counter_77.db").write_bytes(b"x")
    gunicorn_conf["child_exit"](server, types.SimpleNamespace(pid=77))
    assert sorted(p.name for p in prom.iterdir()) == ["counter_77.db", "keep.txt"]
