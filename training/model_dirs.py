"""Trained-model directories: ``<out>/<dataset>/<framework>/<version>/{native file, manifest.json,
history.jsonl, curves.png}`` and the ONNX twin ``<out>/<dataset>/onnx/<version>/model.onnx``.

Versions are integers as directory names (like Triton's model repository); `next_version`
picks one number for a whole run, so the torch, TensorFlow, JAX and ONNX models trained
together share it. An existing version directory is never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from shared.manifest import MANIFEST_FILE, InputSpec, Manifest, write_manifest

HISTORY_FILE = "history.jsonl"
CURVES_FILE = "curves.png"
ONNX_FRAMEWORK = "onnx"
ONNX_FILE = "model.onnx"
CURVES_DPI = 100
CURVES_FIGSIZE = (10, 4)


class ModelDirError(ValueError):
    """An artifact directory cannot be created as asked (e.g. the version already exists)."""


def model_dir(out: Path, dataset: str, framework: str, version: str) -> Path:
    return Path(out) / dataset / framework / str(version)


def existing_versions(out: Path, dataset: str, frameworks: Iterable[str]) -> list[int]:
    """Integer version directories already present for any of `frameworks`."""
    found = []
    for framework in frameworks:
        root = Path(out) / dataset / framework
        if root.is_dir():
            found += [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found)


def next_version(out: Path, dataset: str, frameworks: Iterable[str]) -> str:
    """One more than the highest version of any of `frameworks` (plus ONNX), from "1"."""
    versions = existing_versions(out, dataset, [*frameworks, ONNX_FRAMEWORK])
    return str(max(versions, default=0) + 1)


def create_model_dir(out: Path, dataset: str, framework: str, version: str) -> Path:
    """Make the (new, empty) directory for one model; refuses to reuse a version."""
    directory = model_dir(out, dataset, framework, version)
    if directory.exists() and any(directory.iterdir()):
        raise ModelDirError(f"{directory} already exists; pick another --version "
                            "(default: the next free integer)")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


class HistoryWriter:
    """Appends one JSON object per epoch to history.jsonl as training goes, so a run that is
    interrupted still leaves its history behind."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / HISTORY_FILE
        self.path.write_text("")
        self.records: list[dict[str, Any]] = []

    def __call__(self, record: Any) -> None:
        row = record.to_dict() if hasattr(record, "to_dict") else dict(record)
        self.records.append(row)
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(row, allow_nan=True) + "\n")


def read_history(directory: Path) -> list[dict[str, Any]]:
    lines = (Path(directory) / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_curves(path: Path, history: Sequence[dict[str, Any]], title: str) -> Path:
    """curves.png: accuracy (left) and loss (right) per epoch, train and validation, with the
    restored best epoch marked. matplotlib's Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    best = [row["epoch"] for row in history if row.get("best")]
    fig, axes = plt.subplots(1, 2, figsize=CURVES_FIGSIZE)
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], "o-", label="train")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], "s-", label="validation")
        if best:
            ax.axvline(best[-1], color="grey", linestyle=":", label=f"best (epoch {best[-1]})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=CURVES_DPI)
    plt.close(fig)
    return Path(path)


def write_model_artifact(
    directory: Path, file_name: str, *, history: Sequence[dict[str, Any]], title: str,
    **manifest_fields: Any,
) -> Manifest:
    """Manifest (sha256/size of the saved native file) + curves.png for a trained model;
    history.jsonl is already there (`HistoryWriter`)."""
    plot_curves(Path(directory) / CURVES_FILE, history, title)
    manifest = Manifest.for_model_file(directory, file_name, **manifest_fields)
    write_manifest(directory, manifest)
    return manifest


def write_onnx_artifact(
    out: Path, version: str, torch_model: Any, torch_manifest: Manifest,
    torch_dir: Path,
) -> Manifest:
    """Export the trained torch model to ``<out>/<dataset>/onnx/<version>/model.onnx`` (checked
    against torch by `training.onnx_export`) with a manifest whose provenance names the
    torch file it came from."""
    import onnx

    from training.onnx_export import ONNX_OPSET, export_onnx

    directory = create_model_dir(out, torch_manifest.dataset, ONNX_FRAMEWORK, version)
    export_onnx(torch_model, directory / ONNX_FILE, image_size=torch_manifest.input.size)
    fields = {
        name: getattr(torch_manifest, name)
        for name in ("dataset", "task", "class_names", "architecture", "parameter_count",
                     "training", "test_metrics", "thresholds")
    }
    manifest = Manifest.for_model_file(
        directory, ONNX_FILE, framework=ONNX_FRAMEWORK, framework_version=onnx.__version__,
        input=InputSpec(**torch_manifest.input.to_dict()),
        provenance={"exported_from": "torch", "source_sha256": torch_manifest.sha256,
                    "source": str(torch_dir / torch_manifest.file_name), "opset": ONNX_OPSET,
                    "test_metrics_from": "torch"},
        **fields,
    )
    write_manifest(directory, manifest)
    return manifest


__all__ = [
    "CURVES_FILE",
    "HISTORY_FILE",
    "MANIFEST_FILE",
    "ModelDirError",
    "HistoryWriter",
    "create_model_dir",
    "next_version",
    "plot_curves",
    "read_history",
    "write_model_artifact",
    "write_onnx_artifact",
]
