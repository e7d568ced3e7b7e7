"""bench.report.training_info: the training table and the parity of the served artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.report.training_info import agreement, parity_section, provenance_checks, training_table
from shared.datasets import get_dataset_spec
from shared.imaging import IMAGENET_MEAN, IMAGENET_STD


def manifest(framework: str, sha: str, **extra: Any) -> dict[str, Any]:
    spec = get_dataset_spec("bloodmnist")
    return {"schema_version": 1, "dataset": "bloodmnist", "task": spec.task,
            "class_names": list(spec.class_names), "framework": framework,
            "framework_version": "1", "architecture": {"name": "tiny",
                                                       "stage_sizes": [1, 1, 1, 1]},
            "input": {"size": 32, "layout": "NHWC", "mean": list(IMAGENET_MEAN),
                      "std": list(IMAGENET_STD)},
            "parameter_count": 1000, "file_name": "model.onnx" if framework == "onnx" else
            "model.pt", "sha256": sha * 64, "size_bytes": 2_000_000,
            "training": {"epochs": 3, "seconds_per_epoch": 12.5, "images_per_second": 80.0,
                         "seed": 0, "init": "random"},
            "test_metrics": {"accuracy": 0.5, "macro_f1": 0.4, "macro_auc": 0.8},
            "created_at": "2026-11-22T00:00:00Z", "provenance": {}, "extras": {}, **extra}


MANIFESTS = {
    "torch": manifest("torch", "a"),
    "onnx": manifest("onnx", "b", provenance={"exported_from": "torch",
                                              "source_sha256": "a" * 64}),
    "jax": manifest("jax", "c"),
}


def test_training_table_from_manifests_or_the_comparison_json(tmp_path: Path) -> None:
    table = training_table(MANIFESTS, models=tmp_path, dataset="bloodmnist", version="1")
    assert table["source"] == "manifests" and table["score_metric"] == "macro_auc"
    row = table["rows"][0]
    assert row["framework"] == "torch" and row["score"] == 0.8 and row["size_mb"] == 2.0
    comparison = tmp_path / "bloodmnist" / "comparison-1.json"
    comparison.parent.mkdir()
    comparison.write_text(json.dumps({"score_metric": "macro_auc", "accuracy_spread": 0.01,
                                      "rows": [{"framework": "sklearn-rf"}]}))
    table = training_table(MANIFESTS, models=tmp_path, dataset="bloodmnist", version="1")
    assert table["source"] == str(comparison) and table["rows"] == [{"framework": "sklearn-rf"}]


def test_onnx_provenance_must_name_the_served_torch_model() -> None:
    assert provenance_checks(MANIFESTS) == [{
        "framework": "onnx", "exported_from": "torch", "source_sha256": "a" * 64,
        "served_source_sha256": "a" * 64, "matches": True}]
    other = {**MANIFESTS, "torch": manifest("torch", "d")}
    assert provenance_checks(other)[0]["matches"] is False


def test_agreement_judges_only_pairs_that_share_weights() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(8), size=4)
    outputs = {"torch": probs.tolist(), "onnx": (probs + 1e-7).tolist(),
               "jax": rng.dirichlet(np.ones(8), size=4).tolist()}
    result = agreement(MANIFESTS, outputs)
    pairs = result["pairs"]
    assert pairs["onnx-torch"]["passed"] is True
    assert pairs["onnx-torch"]["same_weights"] == "onnx exported from this torch model"
    assert pairs["jax-torch"]["passed"] is None and pairs["jax-torch"]["same_weights"] is None
    assert result["passed"] is True
    broken = agreement(MANIFESTS, {"torch": probs.tolist(), "onnx": (probs + 0.01).tolist()})
    assert broken["passed"] is False


def test_parity_section_includes_a_training_parity_report(tmp_path: Path) -> None:
    path = tmp_path / "parity.json"
    path.write_text(json.dumps({"passed": True, "max_abs": 3e-6, "atol": 1e-4}))
    section = parity_section(MANIFESTS, {}, path)
    assert section["training_parity"]["passed"] is True and section["agreement"] is None
