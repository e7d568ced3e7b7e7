"""The comparison table for `--framework all`: one row per trained model (and the sklearn
baseline), written as JSON (for bench/ and the report) and Markdown (for people).

Columns: accuracy, macro-F1, the dataset's ranking metric (QWK for ordinal DR, macro ROC AUC
where the primary metric is accuracy), seconds per epoch, training images/s, compile seconds,
trainable parameters and file size. The accuracy spread between the deep-learning frameworks
is reported too: with identical init, data order and hyperparameters it should be a couple of
points at most, and a larger gap points at a bug, not at a framework.
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


COLUMNS: tuple[tuple[str, str, str], ...] = (
    # key, header, format
    ("framework", "framework", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
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
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "score": metrics.get(score_metric(dataset)),
        "seconds_per_epoch": training.get("seconds_per_epoch"),
        "images_per_second": training.get("images_per_second"),
        "compile_seconds": training.get("compile_seconds"),
        "parameter_count": manifest.parameter_count,
        "size_mb": manifest.size_bytes / BYTES_PER_MB,
        "epochs": training.get("epochs"),
        "best_epoch": training.get("best_epoch"),
        "precision": training.get("precision"),
    }


def accuracy_spread(rows: Sequence[dict[str, Any]]) -> float | None:
    """Max minus min test accuracy over the deep-learning rows (baseline excluded)."""
    values = [row["accuracy"] for row in rows
              if row["framework"] != BASELINE_FRAMEWORK and row.get("accuracy") is not None]
    return max(values) - min(values) if len(values) > 1 else None


def _cell(value: Any, fmt: str) -> str:
    return MISSING if value is None else fmt.format(value)


def markdown_table(rows: Sequence[dict[str, Any]], dataset: DatasetSpec) -> str:
    """GitHub-flavoured Markdown table of `rows` (missing values as an em dash)."""
    headers = [header.format(score=score_metric(dataset)) for _, header, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(key), fmt) for key, _, fmt in COLUMNS)
                     + " |")
    return "\n".join(lines)


def write_comparison(
    rows: Sequence[dict[str, Any]], out: Path, dataset: DatasetSpec, version: str,
    settings: dict[str, Any],
) -> tuple[Path, Path]:
    """Write ``<out>/<dataset>/comparison-<version>.{json,md}``; returns both paths."""
    directory = Path(out) / dataset.name
    directory.mkdir(parents=True, exist_ok=True)
    spread = accuracy_spread(rows)
    payload = {
        "dataset": dataset.name,
        "version": version,
        "score_metric": score_metric(dataset),
        "accuracy_spread": spread,
        "settings": settings,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version()},
        "rows": list(rows),
    }
    json_path = directory / f"comparison-{version}.json"
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    summary = ", ".join(f"{key} {value}" for key, value in settings.items())
    spread_text = MISSING if spread is None else f"{100 * spread:.1f} points"
    markdown = (f"# {dataset.name}: framework comparison (version {version})\n\n"
                f"{summary}\n\n{markdown_table(rows, dataset)}\n\n"
                f"Test accuracy spread across frameworks: {spread_text}.\n")
    md_path = directory / f"comparison-{version}.md"
    md_path.write_text(markdown)
    return json_path, md_path
