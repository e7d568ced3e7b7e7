"""Multilabel end to end: a tiny synthetic ChestX-ray14 (the NIH layout, 64 px), the three
frameworks and the baseline trained by ``python -m training --framework all`` for one epoch,
then ``python -m bench --dataset chestxray14`` serving two of the models under Locust (whose
response check demands the findings above the manifest's thresholds), and the report: mean
AUC as the headline, exact match as the accuracy, and a per-finding AUC table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main as bench_main
from shared.datasets import get_dataset_spec
from shared.datasets.synth_chestxray14 import generate_chestxray14
from shared.manifest import read_manifest
from training.cli import main as training_main

pytestmark = pytest.mark.slow  # trains three frameworks, serves two (~3-4 min on 2 cores)

FINDINGS = get_dataset_spec("chestxray14").class_names


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("chest")
    data = generate_chestxray14(root / "data", n=120, size=64, seed=0)
    models = root / "models"
    assert training_main(["--framework", "all", "--dataset", "chestxray14", "--data", str(data),
                          "--image-size", "32", "--stage-sizes", "tiny", "--epochs", "1",
                          "--batch-size", "16", "--lr", "1e-3", "--pos-weight", "balanced",
                          "--out", str(models), "--quiet"]) == 0
    code = bench_main([
        "--profile", "demo", "--frameworks", "torch,onnx", "--models", str(models),
        "--dataset", "chestxray14", "--levels", "2", "--repeats", "1", "--window-s", "1",
        "--stable-windows", "2", "--level-warmup-s", "1", "--level-max-s", "5",
        "--service-warmup-s", "1", "--no-open-loop", "--no-inprocess", "--payload-dir", str(data),
        "--payload-profile", "small", "--payload-size", "64", "--payload-count", "4",
        "--out", str(root / "reports"), "--run-id", "chest"])
    report = root / "reports" / "chest"
    assert code == 0, (report / "results.json").read_text()[:2000]
    return models, report, json.loads((report / "results.json").read_text())


def test_models_carry_validation_thresholds_and_multilabel_metrics(run) -> None:
    models, _, _ = run
    for artifact in ("torch", "tensorflow", "jax", "onnx"):
        manifest = read_manifest(models / "chestxray14" / artifact / "1")
        assert manifest.task == "multilabel" and len(manifest.thresholds) == len(FINDINGS)
        metrics = manifest.test_metrics
        assert set(metrics["auc_per_class"]) == set(FINDINGS)
        assert metrics["thresholds"] == dict(zip(FINDINGS, manifest.thresholds, strict=True))
        assert 0 <= metrics["subset_accuracy"] <= metrics["hamming_accuracy"] <= 1
        assert len(manifest.training["pos_weight"]) == len(FINDINGS)
    comparison = (models / "chestxray14" / "comparison-1.md").read_text()
    assert "exact match" in comparison and "| **mean AUC** |" in comparison
    assert "pos_weight balanced" in comparison


def test_bench_serves_the_multilabel_models_and_reports_mean_auc(run) -> None:
    _, report, results = run
    assert results["dataset"] == "chestxray14" and results["errors"] == []
    for framework in ("torch", "onnx"):
        record = results["services"][framework]
        assert record["status"] == "ok", record.get("death")
        assert all(r["measured"]["failed"] == 0 for r in record["runs"])  # findings checked
    training = results["training"]
    assert training["score_metric"] == "macro_auc"
    assert training["accuracy_metric"] == "subset_accuracy"
    rows = {row["framework"]: row for row in training["rows"]}
    assert set(rows) == {"torch", "tensorflow", "jax", "sklearn-rf"}
    assert all(set(row["auc_per_class"]) == set(FINDINGS) for row in rows.values())
    markdown = (report / "report.md").read_text()
    assert "exact match" in markdown and "macro_auc" in markdown
    assert "### Per-finding test ROC AUC" in markdown and "| Cardiomegaly |" in markdown
