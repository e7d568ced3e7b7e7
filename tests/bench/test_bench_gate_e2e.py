"""The accuracy gate end to end: a tiny ONNX model and its int8 derivative served by real
gunicorn services, the test split of a small synthetic BloodMNIST sent through them, judged,
and the verdicts written to results.json and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.config import profile_config
from bench.load.payloads import PayloadOptions
from bench.report.render import write_report
from bench.runner import run_bench
from bench.served_accuracy import load_test_split

pytestmark = pytest.mark.slow

FRAMEWORKS = ("onnx", "onnx-int8")
IMAGE_SIZE = 32
TEST_IMAGES = 48


@pytest.fixture(scope="module")
def blood_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.datasets.synth_blood import generate_bloodmnist

    return generate_bloodmnist(tmp_path_factory.mktemp("data") / "bloodmnist_32.npz", 300,
                               size=IMAGE_SIZE, seed=0)


@pytest.fixture(scope="module")
def int8_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.fixtures import write_artifacts

    root = tmp_path_factory.mktemp("models")
    write_artifacts(root, dataset="bloodmnist", stage_sizes=(1, 1, 1, 1),
                    image_size=IMAGE_SIZE, runtimes=list(FRAMEWORKS))
    return root


@pytest.fixture(scope="module")
def gated_run(int8_models: Path, blood_npz: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("reports")
    cfg = profile_config(
        "demo", frameworks=FRAMEWORKS, models=int8_models, dataset="bloodmnist", out=out,
        run_id="gate", levels=(1,), repeats=1, window_s=1.0, stable_windows=2,
        level_warmup_s=0.5, level_max_s=4.0, service_warmup_s=0.5, open_loop_duration_s=2.0,
        open_loop_warmup_s=0.5, inprocess=False, ready_timeout_s=240.0,
        payload=PayloadOptions(source=blood_npz, profile="small", size=IMAGE_SIZE, count=4),
        eval_max_images=TEST_IMAGES, slo_p99_ms=10_000.0, usd_per_hour=1.0)
    report_dir = run_bench(cfg, log=lambda _: None)
    results = json.loads((report_dir / "results.json").read_text())
    write_report(results, report_dir)
    return report_dir, results


def test_gate_scores_every_variant_through_its_service(gated_run: tuple[Path, dict[str, Any]],
                                                       int8_models: Path, blood_npz: Path
                                                       ) -> None:
    _, results = gated_run
    gate = results["accuracy_gate"]
    assert gate["images"] == TEST_IMAGES and gate["split"] == "test"
    assert gate["metric"] == "accuracy" and gate["primary_metric"] == "accuracy"
    base, int8 = gate["services"]["onnx"], gate["services"]["onnx-int8"]
    assert base["verdict"] == "reference" and base["precision"] == "fp32"
    assert int8["parent"] == "onnx" and int8["precision"] == "int8"
    for scored in (base, int8):
        assert scored["failed_images"] == 0 and scored["sent_images"] == TEST_IMAGES
        assert 0.0 <= scored["top1"] <= 1.0 and 0.0 <= scored["macro_auc"] <= 1.0
    assert 0.0 <= int8["agreement"] <= 1.0
    passed = int8["top1"] >= 0.99 * base["top1"]
    assert int8["verdict"] == ("pass" if passed else "fail")

    # The served top-1 is the model's: the same images through the predictor in process.
    from services.predictors import load_predictor
    from shared.imaging import PreprocessSpec, preprocess
    from shared.manifest import read_manifest

    model_dir = int8_models / "bloodmnist" / "onnx" / "1"
    test = load_test_split("bloodmnist", blood_npz, TEST_IMAGES, 0)
    spec = PreprocessSpec.from_manifest_input(read_manifest(model_dir).input.to_dict())
    batch = np.stack([preprocess(data, spec) for data, _ in test.images])
    probs = load_predictor("onnx", model_dir, threads=1).predict(batch)
    in_process = float(np.mean(np.argmax(probs, axis=1) == test.labels))
    assert base["top1"] == pytest.approx(in_process, abs=1.5 / TEST_IMAGES)


def test_verdicts_and_report_of_the_gated_run(gated_run: tuple[Path, dict[str, Any]]) -> None:
    report_dir, results = gated_run
    v = results["verdicts"]
    assert v["slo_p99_ms"] == 10_000.0 and v["price"]["source"] == "--usd-per-hour"
    for name in FRAMEWORKS:
        row = v["rows"][name]
        assert row["served_images_per_s"] > 0
        assert row["goodput"]["images_per_s"] > 0 and row["usd_per_million_images"] > 0
    assert v["rows"]["onnx-int8"]["parent"] == "onnx"
    assert v["fastest"] in FRAMEWORKS and v["headline"].startswith("Fastest")
    markdown = (report_dir / "report.md").read_text()
    assert "Accuracy gate: the test split through the served path" in markdown
    assert "are randomly initialised" in markdown  # the fixtures' models: accuracy is noise
    assert (report_dir / "plots" / "pareto.png").is_file()


def test_an_image_the_service_refuses_is_counted_not_guessed(
        int8_models: Path, blood_npz: Path, tmp_path: Path) -> None:
    from bench.served_accuracy import classify
    from bench.services import LocalServiceSettings, ServicePool, start_service

    test = load_test_split("bloodmnist", blood_npz, 2, 0)
    model_dir = int8_models / "bloodmnist" / "onnx" / "1"
    with ServicePool() as pool:
        service = pool.add(start_service("onnx", model_dir, tmp_path,
                                         LocalServiceSettings(intra_op_threads=1)))
        service.wait_ready(240.0)
        images = [test.images[0], (b"\x89PNG but broken", "image/png"), test.images[1]]
        probs, missing = classify(service.url, images, service.manifest["class_names"])
    assert missing == [1]
    assert np.isnan(probs[1]).all()
    assert np.allclose(probs[[0, 2]].sum(axis=1), 1.0, atol=1e-4)
    # a test image is a dataset image: BloodMNIST's raw-capture crop must not touch it
    np.testing.assert_allclose(probs[0], uncropped_answer(model_dir, test.images[0][0]),
                               atol=1e-4)


def uncropped_answer(model_dir: Path, png: bytes) -> np.ndarray:
    """Softmax of the ONNX model, in process, on the whole image, normalised like training."""
    import io

    import onnxruntime as ort
    from PIL import Image

    from shared.imaging import PreprocessSpec, normalize
    from shared.manifest import read_manifest

    manifest = read_manifest(model_dir)
    spec = PreprocessSpec(manifest.input.size, tuple(manifest.input.mean),
                          tuple(manifest.input.std))
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[None]
    session = ort.InferenceSession(str(model_dir / manifest.file_name))
    logits = session.run(None, {session.get_inputs()[0].name: normalize(pixels, spec)})[0][0]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()
