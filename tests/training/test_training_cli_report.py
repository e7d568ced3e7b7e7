"""The comparison table (JSON + Markdown) and the RandomForest baseline; no deep framework."""

import json

import numpy as np
import pytest

from shared.datasets import ImageSet, get_dataset_spec, write_medmnist_npz
from training import baseline
from training.report import (
    BASELINE_FRAMEWORK,
    COLUMNS,
    accuracy_spread,
    markdown_table,
    score_metric,
    write_comparison,
)

DR = get_dataset_spec("dr")
BLOOD = get_dataset_spec("bloodmnist")


def row(framework, accuracy, **extra):
    return {"framework": framework, "accuracy": accuracy, "macro_f1": 0.5, "score": 0.7,
            "seconds_per_epoch": 12.0, "images_per_second": 80.0, "compile_seconds": None,
            "parameter_count": 23_518_277, "size_mb": 94.4, **extra}


def test_training_cli_report_score_column_per_dataset():
    assert score_metric(DR) == "qwk"
    assert score_metric(BLOOD) == "macro_auc"


def test_training_cli_report_markdown_table():
    table = markdown_table([row("torch", 0.81), row("jax", None)], DR).splitlines()
    assert table[0] == ("| framework | accuracy | macro-F1 | qwk | s/epoch | train img/s | "
                        "compile s | params | MB |")
    assert table[2] == "| torch | 0.8100 | 0.5000 | 0.7000 | 12.0 | 80.0 | — | 23,518,277 | 94.4 |"
    assert table[3].startswith("| jax | — |")
    assert len(table) == 4


def test_training_cli_report_accuracy_spread_ignores_the_baseline():
    rows = [row("torch", 0.80), row("tensorflow", 0.83), row(BASELINE_FRAMEWORK, 0.40)]
    assert accuracy_spread(rows) == pytest.approx(0.03)
    assert accuracy_spread(rows[:1]) is None


def test_training_cli_report_writes_json_and_markdown(tmp_path):
    rows = [row("torch", 0.80), row("jax", 0.82)]
    json_path, md_path = write_comparison(rows, tmp_path, DR, "3", {"epochs": 2})
    assert json_path == tmp_path / "dr" / "comparison-3.json"
    payload = json.loads(json_path.read_text())
    assert payload["rows"] == rows and payload["score_metric"] == "qwk"
    assert payload["accuracy_spread"] == pytest.approx(0.02)
    text = md_path.read_text()
    assert "| jax | 0.8200 |" in text and "2.0 points" in text


def easy_set(n, seed, size=32):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % BLOOD.n_classes
    colours = np.random.default_rng(7).integers(0, 256, (BLOOD.n_classes, 3))
    images = colours[labels][:, None, None, :] + rng.normal(0, 10, (n, size, size, 3))
    return ImageSet(np.clip(images, 0, 255).astype(np.uint8), labels)


def test_training_cli_report_baseline_row():
    sets = {"train": easy_set(64, 0), "val": easy_set(16, 1), "test": easy_set(32, 2)}
    result = baseline.train_baseline(sets, BLOOD, size=8, trees=20, seed=0, threads=1)
    assert result["framework"] == BASELINE_FRAMEWORK
    assert result["accuracy"] == 1.0 and result["score"] == 1.0
    assert {key for key, _, _ in COLUMNS} <= set(result)
    assert result["parameter_count"] > 0 and result["test_metrics"]["n"] == 32


def test_training_cli_report_baseline_command(tmp_path, capsys):
    data = write_medmnist_npz(
        tmp_path / "bloodmnist_32.npz",
        {name: easy_set(n, i) for i, (name, n) in enumerate([("train", 32), ("val", 8),
                                                              ("test", 16)])},
        n_classes=BLOOD.n_classes)
    out = tmp_path / "row.json"
    assert baseline.main(["--dataset", "bloodmnist", "--data", str(data), "--image-size", "32",
                          "--size", "8", "--trees", "10", "--threads", "1",
                          "--json", str(out)]) == 0
    assert "| sklearn-rf |" in capsys.readouterr().out
    assert json.loads(out.read_text())["trees"] == 10
    assert baseline.main(["--dataset", "bloodmnist", "--data", str(tmp_path / "none")]) == 2
