"""`python -m training --framework all` end to end on a tiny easy BloodMNIST-format file:
three frameworks trained from one init, valid artifacts (manifest, native file, history,
curves), the ONNX twin with its provenance, and the comparison table with the baseline."""

import json
from pathlib import Path

import numpy as np
import pytest

from shared.datasets import get_dataset_spec, load_dataset, write_medmnist_npz
from shared.imaging import PreprocessSpec
from shared.manifest import read_manifest, verify_model_file
from shared.models import TINY
from training.backends import ModelConfig, get_backend
from training.cli import main
from training.loop import evaluate_split
from training.model_dirs import read_history

pytestmark = pytest.mark.slow  # trains torch, TensorFlow and JAX (~2-3 min on 2 busy cores)

SIZE = 32
FRAMEWORKS = ("torch", "tensorflow", "jax")
EPOCHS = 3
BLOOD = get_dataset_spec("bloodmnist")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def easy_split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % BLOOD.n_classes
    colours = np.random.default_rng(5).integers(0, 256, (BLOOD.n_classes, 3))
    images = colours[labels][:, None, None, :] + rng.normal(0, 20, (n, SIZE, SIZE, 3))
    return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("all")
    rng = np.random.default_rng(0)
    data = write_medmnist_npz(root / "bloodmnist_32.npz",
                              {"train": easy_split(48, rng), "val": easy_split(16, rng),
                               "test": easy_split(16, rng)}, n_classes=BLOOD.n_classes)
    out = root / "models"
    code = main(["--framework", "all", "--dataset", "bloodmnist", "--data", str(data),
                 "--image-size", str(SIZE), "--epochs", str(EPOCHS), "--batch-size", "16",
                 "--lr", "1e-3", "--stage-sizes", "tiny", "--patience", "0", "--out", str(out),
                 "--quiet"])
    return code, data, out / "bloodmnist"


def test_training_cli_all_exits_0(trained):
    assert trained[0] == 0


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_cli_all_writes_valid_artifacts(trained, framework):
    directory = trained[2] / framework / "1"
    manifest = read_manifest(directory)
    assert verify_model_file(directory, manifest).name == manifest.file_name
    assert manifest.framework == framework and manifest.dataset == "bloodmnist"
    assert manifest.architecture["stage_sizes"] == list(TINY)
    assert manifest.input.raw_capture == BLOOD.raw_capture  # the field of view travels
    assert manifest.parameter_count == 8_032_328
    training = manifest.training
    assert training["epochs"] == EPOCHS and training["init"] == "random(torch, seed=0)"
    assert training["seconds_per_epoch"] > 0 and training["images_per_second"] > 0
    assert (training["compile_seconds"] > 0) == (framework != "torch")
    assert framework in training["versions"] and training["device"] == "cpu"
    assert manifest.test_metrics["n"] == 16
    history = read_history(directory)
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (directory / "curves.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_cli_all_native_file_reloads(trained, framework):
    """The saved file alone reproduces the manifest's test accuracy (save/load per framework).
    The model is built from torch's cheap seeded init (Flax's own init is another XLA
    compile) and then overwritten by `load`."""
    from training.backends.torch import initial_state

    _, data, root = trained
    directory = root / framework / "1"
    manifest = read_manifest(directory)
    backend = get_backend(framework)(ModelConfig(num_classes=BLOOD.n_classes, image_size=SIZE,
                                                 stage_sizes=TINY, threads=1))
    backend.build(initial_state(BLOOD.n_classes, TINY, seed=1), 1e-3)
    backend.load(directory / manifest.file_name)
    test = load_dataset("bloodmnist", data, SIZE)["test"]
    metrics = evaluate_split(backend, test, BLOOD, PreprocessSpec(SIZE), 16)
    assert metrics["accuracy"] == manifest.test_metrics["accuracy"]
    assert metrics["loss"] == pytest.approx(manifest.test_metrics["loss"], rel=1e-4)


def test_training_cli_all_same_start_for_every_framework(trained):
    """Identical init and data: the first epoch's losses agree closely (later epochs drift
    apart through round-off amplified by Adam, as any two runs on different kernels do)."""
    losses = [read_history(trained[2] / framework / "1")[0]["train_loss"]
              for framework in FRAMEWORKS]
    assert max(losses) - min(losses) < 0.05, losses


def test_training_cli_all_exports_onnx_from_torch(trained):
    onnx_dir, torch_dir = trained[2] / "onnx" / "1", trained[2] / "torch" / "1"
    manifest = read_manifest(onnx_dir)
    verify_model_file(onnx_dir, manifest)
    assert manifest.file_name == "model.onnx"
    assert manifest.provenance["exported_from"] == "torch"
    assert manifest.provenance["source_sha256"] == read_manifest(torch_dir).sha256
    assert manifest.input.raw_capture == BLOOD.raw_capture


def test_training_cli_all_writes_the_comparison_table(trained, capsys):
    root: Path = trained[2]
    payload = json.loads((root / "comparison-1.json").read_text())
    assert [row["framework"] for row in payload["rows"]] == [*FRAMEWORKS, "sklearn-rf"]
    assert payload["score_metric"] == "macro_auc" and payload["settings"]["epochs"] == EPOCHS
    assert len({row["parameter_count"] for row in payload["rows"][:3]}) == 1
    markdown = (root / "comparison-1.md").read_text()
    for framework in (*FRAMEWORKS, "sklearn-rf"):
        assert f"| {framework} |" in markdown
