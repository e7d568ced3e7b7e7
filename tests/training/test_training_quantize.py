"""`python -m training quantize`: int8 artifacts derived from a tiny onnx one, calibrated on a
tiny synthetic BloodMNIST training split; their manifests name parent, tool and calibration
set, and the int8 runtimes serve them at int8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.predictors import load_predictor
from shared.datasets import load_dataset
from shared.datasets.__main__ import main as datasets_main
from shared.imaging import PreprocessSpec, normalize
from shared.manifest import read_manifest, verify_model_file
from shared.models import TINY
from training.cli import main
from training.fixtures import write_artifacts
from training.quantize import calibration_images

SIZE = 32
KINDS = ("onnx-int8", "openvino-int8")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "bloodmnist_32.npz"
    assert datasets_main(["synth", "bloodmnist", "--n", "48", "--size", str(SIZE),
                          "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """A tiny ``models/bloodmnist/onnx/1``."""
    root = tmp_path_factory.mktemp("models")
    return write_artifacts(root, dataset="bloodmnist", stage_sizes=TINY, image_size=SIZE,
                           runtimes=["onnx"])["onnx"]


def quantize(data: Path, model: Path, kind: str, *extra: str) -> int:
    return main(["quantize", "--dataset", "bloodmnist", "--data", str(data), "--model",
                 str(model), "--to", kind, *extra])


@pytest.mark.parametrize("kind", KINDS)
def test_quantize_writes_a_derived_artifact_with_its_provenance(data, parent, kind) -> None:
    assert quantize(data, parent, kind, "--calibration-images", "12", "--seed", "3") == 0
    out = parent.parents[1] / kind / "1"
    manifest, source = read_manifest(out), read_manifest(parent)
    verify_model_file(out, manifest)  # the sha256 covers the whole (one-file) model
    assert manifest.framework == kind and manifest.file_name == "model.onnx"
    assert manifest.class_names == source.class_names and manifest.input == source.input
    assert manifest.test_metrics == {}  # measured by the served gate, not copied
    provenance = manifest.provenance
    assert provenance["derived_from"] == {"artifact": "onnx", "version": "1",
                                          "path": str(parent / "model.onnx"),
                                          "sha256": source.sha256}
    tool = provenance["tool"]
    assert tool["name"] == {"onnx-int8": "onnxruntime.quantization",
                            "openvino-int8": "nncf"}[kind]
    assert tool["version"] == manifest.framework_version and tool["version"][0].isdigit()
    calibration = provenance["calibration"]
    assert {k: calibration[k] for k in ("dataset", "split", "images", "seed")} == {
        "dataset": "bloodmnist", "split": "train", "images": 12, "seed": 3}
    assert calibration["preprocessing"] == "shared.imaging.normalize"
    predictor = load_predictor(kind, out, threads=1)  # the runtime row of the same name
    assert predictor.precision == "int8"
    assert predictor.predict(np.zeros((2, SIZE, SIZE, 3), np.float32)).shape == (2, 8)


def test_calibration_images_are_training_images_through_the_service_preprocessing(data
                                                                                   ) -> None:
    spec = PreprocessSpec(SIZE)
    images, described = calibration_images("bloodmnist", data, spec, 5, seed=1)
    train = load_dataset("bloodmnist", data, SIZE)["train"]
    chosen = np.sort(np.random.default_rng(1).permutation(len(train))[:5])
    np.testing.assert_array_equal(images, normalize(train.images[chosen], spec))
    assert described["images"] == 5 and described["split"] == "train"


def test_quantize_errors_are_one_line(data, parent, capsys) -> None:
    derived = parent.parents[1] / "onnx-int8" / "1"
    if not derived.exists():
        assert quantize(data, parent, "onnx-int8", "--calibration-images", "4") == 0
    capsys.readouterr()
    cases = [
        (lambda: quantize(data, parent, "onnx-int8"), "already exists"),
        (lambda: quantize(data, derived, "openvino-int8", "--version", "2"),
         "made from an 'onnx' artifact, this one is 'onnx-int8'"),
        (lambda: main(["quantize", "--dataset", "dr", "--data", str(data), "--model",
                       str(parent), "--to", "onnx-int8"]), "is a bloodmnist model, not dr"),
    ]
    for run, fragment in cases:
        code = run()
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0], err
        assert err[0].startswith("python -m training quantize: error: ")
