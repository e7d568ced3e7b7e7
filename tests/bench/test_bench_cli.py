"""bench.cli and bench.config: profiles, flag overrides, help that states defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import config_from_args, get_args_parser, main
from bench.config import RUN_PROFILES, BenchConfig, profile_config
from shared.runtimes import base_runtimes


def parse(*argv: str) -> BenchConfig:
    return config_from_args(get_args_parser().parse_args(list(argv)))


def test_full_profile_is_the_default() -> None:
    cfg = parse()
    assert cfg.profile == "full"
    assert cfg.levels == (1, 2, 4, 8, 16, 32) and cfg.repeats == 3
    assert cfg.frameworks == tuple(base_runtimes())  # every deployed row of the table
    assert cfg.image_sizes == (28, 64, 128, 224)
    assert cfg.service.intra_op_threads is None  # resolved to cores // workers at run time


def test_demo_profile_fits_two_cores_and_flags_override_it(tmp_path: Path) -> None:
    cfg = parse("--profile", "demo", "--levels", "1,2", "--intra-op-threads", "2",
                "--payload-dir", str(tmp_path), "--url", "onnx=http://127.0.0.1:9000",
                "--no-open-loop", "--image-sizes", "")
    demo = RUN_PROFILES["demo"]
    assert cfg.levels == (1, 2) and cfg.repeats == demo["repeats"]
    assert cfg.service.intra_op_threads == 2
    assert cfg.service.max_batch_size == demo["service"].max_batch_size
    assert cfg.payload.source == tmp_path and cfg.payload.profile == "small"
    assert cfg.urls == {"onnx": "http://127.0.0.1:9000"}
    assert cfg.open_loop is False and cfg.image_sizes == ()


def test_help_states_every_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        get_args_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("default: 1,2,4,8,16,32; demo profile: 1,4", "default: 3; demo "
                     "profile: 2", "--open-loop-rate", "0.7 x the lowest peak",
                     "default: reports"):
        assert fragment in text
    for action in get_args_parser()._actions:
        if action.option_strings and action.help and action.dest != "help":
            assert "default" in action.help or action.const is True, action.option_strings


@pytest.mark.parametrize("argv", [["--levels", "1,x"], ["--levels", "0"],
                                  ["--frameworks", "torch,mxnet"], ["--url", "torch"],
                                  ["--profile", "huge"]])
def test_bad_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        get_args_parser().parse_args(argv)
    assert exc.value.code == 2


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        profile_config("huge")


def test_config_is_json_able() -> None:
    import json

    text = json.dumps(parse("--profile", "demo").to_json())
    assert '"levels": [1, 4]' in text and '"service": {' in text


def test_missing_models_is_a_usage_error_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    assert main(["--models", str(tmp_path / "none"), "--out", str(reports)]) == 2
    assert "pass --dataset" in capsys.readouterr().err
    (tmp_path / "models" / "dr" / "torch" / "1").mkdir(parents=True)  # no manifest
    assert main(["--models", str(tmp_path / "models"), "--out", str(reports)]) == 2
    assert "no torch model (any version)" in capsys.readouterr().err
    assert not reports.exists()


def test_variants_and_the_gate_flags_parse() -> None:
    cfg = parse("--frameworks", "onnx,onnx-int8", "--eval-data", "data/x.npz",
                "--eval-max-images", "50", "--slo-p99-ms", "250", "--usd-per-hour", "0.17",
                "--no-accuracy-gate")
    assert cfg.frameworks == ("onnx", "onnx-int8") and cfg.eval_max_images == 50
    assert cfg.slo_p99_ms == 250.0 and cfg.usd_per_hour == 0.17 and not cfg.accuracy_gate
    assert str(cfg.eval_data) == "data/x.npz"
    defaults = parse()
    assert defaults.slo_p99_ms == 100.0 and defaults.usd_per_hour is None
    assert defaults.accuracy_gate and defaults.eval_data is None


@pytest.mark.parametrize("args", [("--slo-p99-ms", "0"), ("--slo-p99-ms", "inf"),
                                  ("--usd-per-hour", "-1"), ("--usd-per-hour", "cheap"),
                                  ("--eval-max-images", "0"), ("--frameworks", "onnx-int4")])
def test_bad_gate_and_cost_flags_exit_2(args: tuple[str, str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(*args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unreadable_eval_data_exits_2_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "models" / "bloodmnist" / "onnx" / "1"
    model.mkdir(parents=True)
    (model / "manifest.json").write_text("{}")  # found; never read: the run stops first
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not an npz")
    code = main(["--profile", "demo", "--frameworks", "onnx", "--models",
                 str(tmp_path / "models"), "--out", str(tmp_path / "reports"),
                 "--eval-data", str(broken)])
    assert code == 2
    assert "cannot read the bloodmnist test split" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()
