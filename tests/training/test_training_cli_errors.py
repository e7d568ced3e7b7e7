"""Bad input to `python -m training`: one clear `error:` line, exit code 2, no traceback, and
nothing trained. Argument-level mistakes are argparse's (usage + error, exit 2)."""

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.datasets import write_medmnist_npz
from shared.manifest import InputSpec, Manifest, write_manifest
from shared.models import TINY, architecture_dict
from training.cli import main

SIZE = 32
CLASSES = 8
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A minimal valid BloodMNIST file (errors below must be about something else)."""
    rng = np.random.default_rng(0)

    def split(n):
        return rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8), np.arange(n) % CLASSES

    path = tmp_path_factory.mktemp("data") / "bloodmnist_32.npz"
    return write_medmnist_npz(path, {"train": split(8), "val": split(8), "test": split(8)},
                              n_classes=CLASSES)


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    return code, err


def base(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--framework", "torch", "--dataset", "bloodmnist", "--data", str(data),
            "--image-size", str(SIZE), "--epochs", "1", "--out", str(out), "--quiet", *extra]


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m training: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("args, fragment", [
    (["--framework", "mxnet", "--dataset", "dr", "--data", "x"], "invalid choice: 'mxnet'"),
    (["--framework", "torch", "--dataset", "chest", "--data", "x"], "invalid choice: 'chest'"),
    (["--framework", "torch", "--dataset", "dr"], "required: --data"),
    (["--framework", "torch", "--dataset", "dr", "--data", "x", "--epochs", "0"], "must be > 0"),
    (["--framework", "torch", "--dataset", "dr", "--data", "x", "--stage-sizes", "1,2"],
     "need 4 stage sizes"),
])
def test_training_cli_argparse_errors_exit_2(capsys, args, fragment):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_training_cli_missing_data_path(capsys, tmp_path):
    code, err = run(capsys, *base(tmp_path / "nope.npz", tmp_path))
    assert_one_line_error(code, err, "nope.npz", "no such file or directory")


def test_training_cli_malformed_data_file(capsys, tmp_path):
    bad = tmp_path / "bloodmnist.npz"
    bad.write_bytes(b"not a zip")
    code, err = run(capsys, *base(bad, tmp_path))
    assert_one_line_error(code, err, "bloodmnist.npz")


@pytest.mark.parametrize("size", ["16", "48", "0"])
def test_training_cli_unsupported_image_size(capsys, data, tmp_path, size):
    args = base(data, tmp_path)
    args[args.index("--image-size") + 1] = size
    code, err = run(capsys, *args)
    assert_one_line_error(code, err, f"--image-size {size}", "multiple of 32")


def test_training_cli_bad_version(capsys, data, tmp_path):
    code, err = run(capsys, *base(data, tmp_path, "--version", "v1"))
    assert_one_line_error(code, err, "--version 'v1'")


def test_training_cli_pos_weight_is_for_multilabel_datasets(capsys, data, tmp_path):
    code, err = run(capsys, *base(data, tmp_path, "--pos-weight", "balanced"))
    assert_one_line_error(code, err, "--pos-weight balanced: only for multilabel")
    assert not (tmp_path / "bloodmnist").exists()


def test_training_cli_unknown_init(capsys, data, tmp_path):
    code, err = run(capsys, *base(data, tmp_path, "--init", "xavier"))
    assert_one_line_error(code, err, "--init 'xavier'")


def test_training_cli_corrupt_init_file(capsys, data, tmp_path):
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(np.random.default_rng(0).bytes(4096))
    code, err = run(capsys, *base(data, tmp_path, "--init", f"imagenet={weights}"))
    assert_one_line_error(code, err, "resnet50.pth", "not a readable torch state-dict")


def test_training_cli_missing_init_file(capsys, data, tmp_path):
    code, err = run(capsys, *base(data, tmp_path, "--init", f"imagenet={tmp_path / 'no.pth'}"))
    assert_one_line_error(code, err, "no.pth", "no such file")


def test_training_cli_mismatched_init_file(capsys, data, tmp_path):
    """A valid state dict of another architecture (TINY) is not ResNet-50 ImageNet weights."""
    import torch

    from training.backends.torch import initial_state

    weights = tmp_path / "tiny.pth"
    torch.save({k: torch.from_numpy(v) for k, v in initial_state(1000, TINY, 0).items()}, weights)
    code, err = run(capsys, *base(data, tmp_path, "--init", f"imagenet={weights}"))
    assert_one_line_error(code, err, "tiny.pth")


def test_training_cli_imagenet_init_needs_resnet50(capsys, data, tmp_path):
    code, err = run(capsys, *base(data, tmp_path, "--init", "imagenet=x.pth",
                                  "--stage-sizes", "tiny"))
    assert_one_line_error(code, err, "ResNet-50")


def _fake_torch_artifact(directory: Path) -> Path:
    """A TINY torch artifact (untrained weights, valid manifest) to resume from."""
    import torch

    from training.backends.torch import initial_state

    directory.mkdir(parents=True)
    state = initial_state(CLASSES, TINY, 0)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, directory / "model.pt")
    write_manifest(directory, Manifest.for_model_file(
        directory, "model.pt", dataset="bloodmnist", task="multiclass",
        class_names=["basophil", "eosinophil", "erythroblast", "immature granulocytes",
                     "lymphocyte", "monocyte", "neutrophil", "platelet"],
        framework="torch", framework_version=torch.__version__,
        architecture=architecture_dict(TINY), input=InputSpec(size=SIZE, mean=[0.5] * 3,
                                                                std=[0.25] * 3),
        parameter_count=1,
    ))
    return directory


def test_training_cli_resume_into_another_architecture(capsys, data, tmp_path):
    source = _fake_torch_artifact(tmp_path / "tiny-model")
    code, err = run(capsys, *base(data, tmp_path / "out", "--resume", str(source)))
    assert_one_line_error(code, err, "stage sizes [1, 1, 1, 1]", "different architecture")
    assert not (tmp_path / "out").exists()


def test_training_cli_resume_from_a_directory_without_manifest(capsys, data, tmp_path):
    code, err = run(capsys, *base(data, tmp_path, "--resume", str(tmp_path)))
    assert_one_line_error(code, err, "manifest")


def test_training_cli_refuses_to_overwrite_a_version(capsys, data, tmp_path):
    taken = tmp_path / "bloodmnist" / "torch" / "7"
    taken.mkdir(parents=True)
    (taken / "model.pt").write_bytes(b"x")
    code, err = run(capsys, *base(data, tmp_path, "--version", "7", "--stage-sizes", "tiny"))
    assert_one_line_error(code, err, "already exists")


def test_training_cli_process_exit_code_and_single_line(tmp_path):
    """The real entry point, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "training", "--framework", "jax", "--dataset", "dr", "--data",
         str(tmp_path / "missing")], cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"python -m training: error: --data {tmp_path / 'missing'}: no such file or directory"
    ]


def test_training_cli_ctrl_c_exits_130_with_one_line_and_keeps_the_history(data, tmp_path):
    """SIGINT mid-epoch (what Ctrl-C sends): exit 130, no traceback, no manifest written for
    the unfinished model, its history.jsonl kept."""
    process = subprocess.Popen(
        [sys.executable, "-m", "training", "--framework", "torch", "--dataset", "bloodmnist",
         "--data", str(data), "--image-size", str(SIZE), "--stage-sizes", "tiny",
         "--epochs", "1000", "--print-freq", "1", "--out", str(tmp_path)],
        cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # the first progress line: training has started
            if "img/s" in line:
                break
        process.send_signal(signal.SIGINT)
        err = process.stderr.read()
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("python -m training: interrupted")
    model_dir = tmp_path / "bloodmnist" / "torch" / "1"
    assert (model_dir / "history.jsonl").exists()
    assert not (model_dir / "manifest.json").exists()
