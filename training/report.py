"""The comparison table for `--framework all`: one row per trained model (and the sklearn
baseline), written as JSON (for bench/ and the report) and Markdown (for people).

Columns: accuracy (exact match for a multilabel dataset), macro-F1, the dataset's ranking
metric (QWK for ordinal DR, macro ROC AUC where the primary metric is accuracy, mean AUC over
findings for multilabel), seconds per epoch, training images/s, compile seconds, trainable
parameters and file size; a multilabel dataset adds a per-finding AUC table. The spreads of
accuracy and of the ranking metric between the deep-learning frameworks are reported too: with
identical init, data order and hyperparameters they should be a couple of points at most, and
a larger gap points at a bug, not at a framework.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.datasets import DatasetSpec
from shared.manifest import Manifest

BYTES_PER_MB = 1e6
BASELINE_FRAMEWORK = "sklearn-rf"
MISSING = "—"


def score_metric(dataset: DatasetSpec) -> str:
    """The third column: the primary metric unless it is plain accuracy (then macro AUC)."""
    return dataset.primary_metric if dataset.primary_metric != "accuracy" else "macro_auc"


def accuracy_metric(dataset: DatasetSpec) -> str:
    """The accuracy column: plain accuracy, or exact match (every finding right) for
    multilabel."""
    return "accuracy" if dataset.task == "multiclass" else "subset_accuracy"


ACCURACY_HEADERS = {"accuracy": "accuracy", "subset_accuracy": "exact match"}


def metric_cells(metrics: dict[str, Any], dataset: DatasetSpec) -> dict[str, Any]:
    """A row's test-metric cells from `shared.metrics.evaluate` output (models and the
    baseline alike); multilabel rows also carry Hamming accuracy and the per-finding AUCs."""
    cells = {"accuracy": metrics.get(accuracy_metric(dataset)),
             "macro_f1": metrics.get("macro_f1"),
             "score": metrics.get(score_metric(dataset))}
    if dataset.task == "multilabel":
        cells["hamming_accuracy"] = metrics.get("hamming_accuracy")
        cells["auc_per_class"] = metrics.get("auc_per_class")
    return cells


COLUMNS: tuple[tuple[str, str, str], ...] = (
    # key, header, format
    ("framework", "framework", "{}"),
    ("accuracy", "{accuracy}", "{:.4f}"),
    ("macro_f1", "macro-F1", "{:.4f}"),
    ("score", "{score}", "{:.4f}"),
    ("seconds_per_epoch", "s/epoch", "{:.1f}"),
    ("images_per_second", "train img/s", "{:.1f}"),
    ("compile_seconds", "compile s", "{:.1f}"),
    ("parameter_count", "params", "{:,}"),
    ("size_mb", "MB", "{:.1f}"),
)


def manifest_row(manifest: Manifest, dataset: DatasetSpec) -> dict[str, Any]:
    """A table row from a trained model's manifest."""
    training, metrics = manifest.training, manifest.test_metrics
    return {
        "framework": manifest.framework,
        **metric_cells(metrics, dataset),
        "seconds_per_epoch": training.get("seconds_per_epoch"),
        "images_per_second": training.get("images_per_second"),
        "compile_seconds": training.get("compile_seconds"),
        "parameter_count": manifest.parameter_count,
        "size_mb": manifest.size_bytes / BYTES_PER_MB,
        "epochs": training.get("epochs"),
        "best_epoch": training.get("best_epoch"),
        "precision": training.get("precision"),
    }


def accuracy_spread(rows: Sequence[dict[str, Any]], key: str = "accuracy") -> float | None:
    """Max minus min test accuracy (or another column) over the deep-learning rows
    (baseline excluded)."""
    values = [row[key] for row in rows
              if row["framework"] != BASELINE_FRAMEWORK and row.get(key) is not None]
    return max(values) - min(values) if len(values) > 1 else None


def _cell(value: Any, fmt: str) -> str:
    return MISSING if value is None else fmt.format(value)


def markdown_table(rows: Sequence[dict[str, Any]], dataset: DatasetSpec) -> str:
    """GitHub-flavoured Markdown table of `rows` (missing values as an em dash)."""
    headers = [header.format(score=score_metric(dataset),
                             accuracy=ACCURACY_HEADERS[accuracy_metric(dataset)])
               for _, header, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key), fmt) for key, _, fmt in COLUMNS)
                     + " |")
    return "\n".join(lines)


def findings_table(rows: Sequence[dict[str, Any]], dataset: DatasetSpec) -> str:
    """multilabel: test ROC AUC of every finding (rows) by framework (columns), then the
    mean; '' for a multiclass dataset."""
    if dataset.task != "multilabel":
        return ""
    frameworks = [row["framework"] for row in rows]
    lines = ["| finding | " + " | ".join(frameworks) + " |",
             "|---|" + "---:|" * len(frameworks)]
    for name in dataset.class_names:
        cells = [_cell((row.get("auc_per_class") or {}).get(name), "{:.4f}") for row in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    means = [_cell(row.get("score"), "{:.4f}") for row in rows]
    lines.append("| **mean AUC** | " + " | ".join(means) + " |")
    return "\n".join(lines)


def write_comparison(
    rows: Sequence[dict[str, Any]], out: Path, dataset: DatasetSpec, version: str,
    settings: dict[str, Any],
) -> tuple[Path, Path]:
    """Write ``<out>/<dataset>/comparison-<version>.{json,md}``; returns both paths."""
    directory = Path(out) / dataset.name
    directory.mkdir(parents=True, exist_ok=True)
    spread = accuracy_spread(rows)
    score_spread = accuracy_spread(rows, "score")
    payload = {
        "dataset": dataset.name,
        "version": version,
        "task": dataset.task,
        "score_metric": score_metric(dataset),
        "accuracy_metric": accuracy_metric(dataset),
        "accuracy_spread": spread,
        "score_spread": score_spread,
        "settings": settings,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version()},
        "rows": list(rows),
    }
    json_path = directory / f"comparison-{version}.json"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    summary = ", ".join(f"{key} {value}" for key, value in settings.items())
    spread_text = MISSING if spread is None else f"{100 * spread:.1f} points"
    score_text = MISSING if score_spread is None else f"{score_spread:.4f}"
    findings = findings_table(rows, dataset)
    markdown = (f"# {dataset.name}: framework comparison (version {version})\n\n"
                f"{summary}\n\n{markdown_table(rows, dataset)}\n\n"
                f"Test {ACCURACY_HEADERS[accuracy_metric(dataset)]} spread across "
                f"frameworks: {spread_text}; {score_metric(dataset)} spread: {score_text}.\n"
                + (f"\nTest ROC AUC per finding:\n\n{findings}\n" if findings else ""))
    md_path = directory / f"comparison-{version}.md"
    md_path.write_text(markdown)
    return json_path, md_path
