"""bench.demo: phase commands per profile, idempotent data, Ctrl-C with process groups.

Nothing here trains or serves: the phases' children are replaced by ``sh``/``sleep`` or by
a stub that writes the file a phase would write.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.demo import pipeline as demo
from bench.demo.children import Interrupted, run_child, stop_child, stop_signals_raise
from bench.demo.pipeline import (
    DEMO_PROFILES,
    Demo,
    Layout,
    PhaseFailed,
    PhaseTime,
    bench_command,
    data_status,
    derived_artifacts,
    phase_table,
    quantize_command,
    synth_params,
    training_command,
    write_stamp,
)

SH = "/bin/sh"


def flag(command: list[str], name: str) -> str | None:
    """The value after ``name`` in ``command`` (None when the flag is absent)."""
    return command[command.index(name) + 1] if name in command else None


def quiet(_text: str) -> None:
    pass


# ---------------------------------------------------------------------- commands


def test_demo_profile_trains_tiny_models_quickly(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "d", tmp_path / "m", tmp_path / "r")
    command = training_command(DEMO_PROFILES["demo"], layout, "3")
    assert command[:3] == [sys.executable, "-m", "training"]
    assert flag(command, "--framework") == "all" and flag(command, "--dataset") == "bloodmnist"
    assert flag(command, "--data") == str(tmp_path / "d" / "bloodmnist_64.npz")
    assert flag(command, "--image-size") == "64" and flag(command, "--stage-sizes") == "tiny"
    assert int(flag(command, "--epochs") or 0) <= 3
    assert flag(command, "--out") == str(tmp_path / "m") and flag(command, "--version") == "3"


def test_full_profile_is_resnet50_at_224_px_with_default_epochs(tmp_path: Path) -> None:
    profile = DEMO_PROFILES["full"]
    command = training_command(profile, Layout(tmp_path, tmp_path, tmp_path), "1")
    assert flag(command, "--image-size") == "224" and flag(command, "--stage-sizes") == "3,4,6,3"
    assert "--epochs" not in command and "--max-images" not in command
    assert profile.n_images == 17_092  # as many images as the real BloodMNIST
    assert flag(bench_command(profile, Layout(), "1", "x"), "--profile") == "full"


def test_bench_serves_exactly_the_trained_version_with_dataset_payloads() -> None:
    layout = Layout(Path("data"), Path("models"), Path("reports"))
    command = bench_command(DEMO_PROFILES["demo"], layout, "7", "demo-1")
    assert command[:3] == [sys.executable, "-m", "bench"]
    assert flag(command, "--profile") == "demo" and flag(command, "--version") == "7"
    assert flag(command, "--models") == "models" and flag(command, "--out") == "reports"
    assert flag(command, "--run-id") == "demo-1" and flag(command, "--dataset") == "bloodmnist"
    assert flag(command, "--payload-dir") == str(Path("data/bloodmnist_64.npz"))
    assert "--version" not in bench_command(DEMO_PROFILES["demo"], layout, None, "demo-1")


def test_demo_serves_an_int8_and_a_bf16_variant_beside_every_base_row() -> None:
    from shared.runtimes import base_runtimes, get_runtime

    profile = DEMO_PROFILES["demo"]
    served = flag(bench_command(profile, Layout(), "7", "demo-1"), "--frameworks") or ""
    names = served.split(",")
    assert names[:len(base_runtimes())] == list(base_runtimes())
    precisions = {get_runtime(n).precision for n in names if get_runtime(n).is_variant}
    assert {"int8", "bf16"} <= precisions
    assert derived_artifacts(profile) == ("openvino-int8",)
    full = DEMO_PROFILES["full"]
    assert set(derived_artifacts(full)) == {"onnx-int8", "openvino-int8"}


def test_quantize_calibrates_on_the_demo_training_images(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "d", tmp_path / "m", tmp_path / "r")
    parent = tmp_path / "m" / "bloodmnist" / "onnx" / "3"
    command = quantize_command(DEMO_PROFILES["demo"], layout, "openvino-int8", parent)
    assert command[:4] == [sys.executable, "-m", "training", "quantize"]
    assert flag(command, "--to") == "openvino-int8" and flag(command, "--model") == str(parent)
    assert flag(command, "--data") == str(tmp_path / "d" / "bloodmnist_64.npz")
    assert flag(command, "--calibration-images") == "200" and flag(command, "--seed") == "0"


def test_bench_cli_dispatches_the_demo_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    assert "--profile {demo,full}" in capsys.readouterr().out


def test_next_version_follows_existing_models(tmp_path: Path) -> None:
    assert demo.next_model_version(tmp_path) == "1"
    (tmp_path / "bloodmnist" / "onnx" / "4").mkdir(parents=True)
    assert demo.next_model_version(tmp_path) == "5"


def test_any_demo_dataset_flows_through_every_phase(tmp_path: Path) -> None:
    """--dataset chestxray14: the generator, the trainer and the bench all get it, and the
    data is a directory in the dataset's real layout."""
    profile = dataclasses.replace(DEMO_PROFILES["demo"], dataset="chestxray14")
    layout = Layout(tmp_path / "d", tmp_path / "m", tmp_path / "r")
    target = layout.dataset_file(profile)
    assert target == tmp_path / "d" / "chestxray14_64"
    synth = demo.synth_command(profile, target)
    assert synth[3:5] == ["synth", "chestxray14"] and flag(synth, "--out") == str(target)
    assert flag(training_command(profile, layout, "2"), "--dataset") == "chestxray14"
    assert flag(training_command(profile, layout, "2"), "--data") == str(target)
    bench = bench_command(profile, layout, "2", "x")
    assert flag(bench, "--dataset") == "chestxray14" and flag(bench, "--payload-dir") == str(target)
    (tmp_path / "m" / "chestxray14" / "torch" / "2").mkdir(parents=True)
    assert demo.next_model_version(tmp_path / "m", "chestxray14") == "3"
    assert demo.next_model_version(tmp_path / "m") == "1"  # bloodmnist has none yet


def test_a_generated_directory_is_stamped_reused_and_regenerated_when_changed(
        tmp_path: Path) -> None:
    target = tmp_path / "chestxray14_64"
    (target / "images_001" / "images").mkdir(parents=True)
    (target / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\n")
    (target / "images_001" / "images" / "a.png").write_bytes(b"png")
    params = {"generator": "shared.datasets synth chestxray14", "n": 1}
    assert data_status(target, params) == "foreign"
    write_stamp(target, params)
    assert data_status(target, params) == "current"
    (target / "images_001" / "images" / "a.png").write_bytes(b"PNG")  # same size, new bytes
    assert data_status(target, params) == "stale"


def test_demo_cli_takes_a_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    assert "--dataset {bloodmnist,chestxray14,dr}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        demo.main(["--dataset", "imagenet"])
    assert exc.value.code == 2 and "invalid choice: 'imagenet'" in capsys.readouterr().err


# ---------------------------------------------------------------------- data phase


class FakeRuns:
    """Stands in for ``Demo.run``: records commands, writes the --out file of synth."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, name: str, command: list[str], stdout: object = None) -> int:
        self.commands.append(command)
        out = flag(command, "--out")
        if name == "data" and out:
            Path(out).write_bytes(f"images n={flag(command, '--n')}".encode())
        return 0


def make_demo(tmp_path: Path, profile: str = "demo") -> tuple[Demo, FakeRuns]:
    runs = FakeRuns()
    run = Demo(DEMO_PROFILES[profile], Layout(tmp_path / "data", tmp_path / "m", tmp_path / "r"),
               run_id="t", log=quiet)
    run.run = runs  # type: ignore[method-assign]
    return run, runs


def test_data_is_generated_once_then_reused(tmp_path: Path) -> None:
    first, runs = make_demo(tmp_path)
    first.data()
    target = tmp_path / "data" / "bloodmnist_64.npz"
    assert len(runs.commands) == 1 and target.is_file()
    assert data_status(target, synth_params(DEMO_PROFILES["demo"])) == "current"
    again, runs_again = make_demo(tmp_path)
    again.data()
    assert runs_again.commands == [] and "reused" in again.times[0].note


def test_data_with_other_parameters_or_changed_bytes_is_regenerated(tmp_path: Path) -> None:
    target = tmp_path / "bloodmnist_64.npz"
    target.write_bytes(b"old images")
    params = synth_params(DEMO_PROFILES["demo"])
    write_stamp(target, {**params, "n": 5})
    assert data_status(target, params) == "stale"
    write_stamp(target, params)
    assert data_status(target, params) == "current"
    target.write_bytes(b"new images")  # same size, other bytes
    assert data_status(target, params) == "stale"
    target.with_name(target.name + ".synth.json").write_text("{not json")
    assert data_status(target, params) == "stale"
    assert data_status(tmp_path / "absent.npz", params) == "missing"


def test_a_file_without_stamp_is_used_and_never_overwritten(tmp_path: Path) -> None:
    run, runs = make_demo(tmp_path)
    target = tmp_path / "data" / "bloodmnist_64.npz"
    target.parent.mkdir()
    target.write_bytes(b"the real MedMNIST download")
    run.data()
    assert runs.commands == [] and target.read_bytes() == b"the real MedMNIST download"
    assert "as found" in run.times[0].note


def test_quantize_phase_uses_the_trained_version_or_reuses_the_latest(tmp_path: Path) -> None:
    run, runs = make_demo(tmp_path)
    for version in ("2", "3"):
        model = tmp_path / "m" / "bloodmnist" / "onnx" / version
        model.mkdir(parents=True)
        (model / "manifest.json").write_text("{}")
    run.version = "2"
    run.quantize()
    assert flag(runs.commands[0], "--model") == str(tmp_path / "m" / "bloodmnist" / "onnx" / "2")
    reuse, reuse_runs = make_demo(tmp_path)
    reuse.skip_training = True
    target = tmp_path / "m" / "bloodmnist" / "openvino-int8" / "3"
    target.mkdir(parents=True)
    (target / "manifest.json").write_text("{}")
    reuse.quantize()
    assert reuse_runs.commands == [] and reuse.times[0].note == "reused"
    empty, _ = make_demo(tmp_path / "nothing")
    with pytest.raises(PhaseFailed) as exc:
        empty.quantize()
    assert exc.value.phase == "quantize" and exc.value.returncode == 2


def test_failed_generation_leaves_no_stamp(tmp_path: Path) -> None:
    run, _ = make_demo(tmp_path)
    run.run = lambda name, command, stdout=None: 1  # type: ignore[method-assign]
    with pytest.raises(PhaseFailed) as exc:
        run.data()
    assert exc.value.returncode == 1
    assert not list((tmp_path / "data").glob("*.synth.json"))


# ---------------------------------------------------------------------- children and Ctrl-C


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (reparented and not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def _wait_for(path: Path, timeout_s: float = 10.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _signal_self_when(path: Path, signum: int = signal.SIGINT) -> threading.Thread:
    """Send ``signum`` to this process once the child has written ``path`` (by then the
    demo's handlers are installed: the child is started inside them)."""
    def fire() -> None:
        _wait_for(path)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def test_stop_child_kills_the_whole_group_including_grandchildren(tmp_path: Path) -> None:
    """SIGINT ends the shell; its background sleep (which ignores SIGINT, as background jobs
    of a non-interactive shell do) is caught by the final SIGKILL of the group."""
    pids = tmp_path / "pids"
    process = subprocess.Popen([SH, "-c", f"sleep 60 & echo $! > {pids}; wait"],
                               start_new_session=True)
    grandchild = int(_wait_for(pids))
    started = time.monotonic()
    stop_child(process, grace_s=5.0, log=quiet)
    assert process.returncode is not None and time.monotonic() - started < 5.0
    deadline = time.monotonic() + 5.0
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)


def test_a_child_that_ignores_sigint_and_sigterm_is_killed(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    process = subprocess.Popen([SH, "-c", f"trap '' INT TERM; echo 1 > {ready}; sleep 60"],
                               start_new_session=True)
    _wait_for(ready)
    stop_child(process, grace_s=0.2, log=quiet, term_grace_s=0.2)
    assert process.returncode == -signal.SIGKILL


def test_ctrl_c_during_a_phase_stops_the_child_and_reraises(tmp_path: Path) -> None:
    ready, pids = tmp_path / "ready", tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; echo 1 > {ready}; wait"
    messages: list[str] = []
    _signal_self_when(ready)
    started = time.monotonic()
    with stop_signals_raise(), pytest.raises(Interrupted) as exc:
        run_child([SH, "-c", script], grace_s=5.0, log=messages.append)
    assert exc.value.signum == signal.SIGINT and time.monotonic() - started < 8.0
    assert any("SIGINT" in m for m in messages)
    grandchild = int(pids.read_text())
    deadline = time.monotonic() + 5.0
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_one_keypress_delivered_twice_still_lets_the_child_clean_up(tmp_path: Path) -> None:
    """``uv run`` forwards the terminal's SIGINT to a child that already got it: the
    duplicate must not cut the child's own cleanup short (a second *later* one would)."""
    ready, cleaned = tmp_path / "ready", tmp_path / "cleaned"
    script = (f"trap 'sleep 0.3; echo 1 > {cleaned}; exit 0' INT; echo 1 > {ready}; "
              f"while :; do sleep 0.05; done")

    def twice() -> None:
        _wait_for(ready)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=twice, daemon=True).start()
    with stop_signals_raise(), pytest.raises(Interrupted):
        run_child([SH, "-c", script], grace_s=5.0, log=quiet)
    assert cleaned.is_file()


def test_main_exits_130_on_ctrl_c_and_still_prints_the_phase_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    ready = tmp_path / "ready"
    monkeypatch.setattr(demo, "synth_command",
                        lambda profile, out: [SH, "-c", f"echo 1 > {ready}; sleep 60"])
    _signal_self_when(ready)
    status = demo.main(["--data", str(tmp_path / "d"), "--models", str(tmp_path / "m"),
                        "--reports", str(tmp_path / "r")])
    assert status == 130
    out = capsys.readouterr().out
    assert "Wall time:" in out and "data" in out and "total" in out
    assert not (tmp_path / "m").exists()  # training never started


def test_main_reports_a_failed_phase_with_its_exit_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "synth_command", lambda profile, out: [SH, "-c", "exit 3"])
    assert demo.main(["--data", str(tmp_path / "d"), "--models", str(tmp_path / "m")]) == 3


def test_sigterm_exits_with_128_plus_the_signal(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ready = tmp_path / "ready"
    monkeypatch.setattr(demo, "synth_command",
                        lambda profile, out: [SH, "-c", f"echo 1 > {ready}; sleep 60"])
    _signal_self_when(ready, signal.SIGTERM)
    assert demo.main(["--data", str(tmp_path / "d"), "--models", str(tmp_path / "m")]) == 143


# ---------------------------------------------------------------------- summary


def test_phase_table_lists_every_phase_and_the_total() -> None:
    text = phase_table([PhaseTime("data", 41.2, "generated data/x.npz"),
                        PhaseTime("training", 300.0), PhaseTime("bench", 299.6)], 1200.0)
    lines = text.splitlines()
    assert lines[0] == "Wall time:"
    assert lines[1].split()[:2] == ["data", "0:41"] and "generated" in lines[1]
    assert lines[-1].split()[:2] == ["total", "10:41"] and "budget 20:00" in lines[-1]
