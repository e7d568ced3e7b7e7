"""Look at a dataset before training on it: counts per class and split, and a sample grid.

Read-only: for a DR or ChestX-ray14 directory without ``splits.csv`` the split is computed
in memory (the same one training would write) and nothing is written. Multilabel counts are
images with each finding. The grid PNG shows the first few
training examples of every class, one row per class, labelled, drawn with Pillow only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shared import imaging

from . import chestxray14, dr, imagefolder, medmnist
from .decoding import decode_file
from .registry import SPLITS, DatasetError, dataset_spec_for


@dataclass
class DatasetSummary:
    """Counts and a few sample images of one dataset on disk."""

    name: str
    path: Path
    class_names: tuple[str, ...]
    counts: dict[str, np.ndarray]  # split -> examples per class
    notes: list[str] = field(default_factory=list)
    samples: dict[int, list[np.ndarray]] = field(default_factory=dict)  # class -> images
    images: dict[str, int] = field(default_factory=dict)  # split -> images, when not sum(counts)


def detect_dataset(path: Path) -> str:
    """Registry name of the dataset at `path`, judged by the files present."""
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        return "bloodmnist"
    if path.is_dir():
        if any((path / lay.labels_file).is_file() for lay in (dr.KAGGLE, dr.APTOS)):
            return "dr"
        if any((path / name).is_file() for name in chestxray14.LABEL_FILES):
            return "chestxray14"
        if any((path / name).is_dir() for name in imagefolder.SPLIT_FOLDERS["train"]):
            return "imagefolder"
        if any(path.glob("bloodmnist*.npz")):
            return "bloodmnist"
    raise DatasetError(
        f"{path}: not a recognised dataset (expected a MedMNIST .npz or a directory with "
        f"bloodmnist*.npz, {dr.KAGGLE.labels_file} (Kaggle 2015), {dr.APTOS.labels_file} "
        f"(APTOS 2019), {chestxray14.LABEL_FILES[1]} (ChestX-ray14) or a train/ (or "
        "seg_train/) folder of class folders (imagefolder))"
    )


def summarize(
    path: Path,
    *,
    name: str | None = None,
    image_size: int = 64,
    per_class: int = 4,
    split_seed: int = 0,
) -> DatasetSummary:
    """Count examples per class and split and pick `per_class` training samples per class."""
    path = Path(path)
    name = name or detect_dataset(path)
    spec = dataset_spec_for(name, path)
    n = spec.n_classes
    if name == "imagefolder":
        return _summarize_imagefolder(path, spec.class_names, image_size, per_class, split_seed)
    if name == "chestxray14":
        return _summarize_chestxray14(path, spec.class_names, image_size, per_class, split_seed)
    if name == "dr":
        splits_written = (path / dr.SPLITS_FILE).is_file()
        records = dr.index_dr(path, split_seed=split_seed, write_splits=False)
        summary = DatasetSummary(
            name,
            path,
            spec.class_names,
            {
                s: np.bincount([r.level for r in records if r.split == s], minlength=n)
                for s in SPLITS
            },
        )
        patients = {s: len({r.patient for r in records if r.split == s}) for s in SPLITS}
        summary.notes.append(
            f"layout: {dr.detect_layout(path).name}; patients: "
            + ", ".join(f"{s} {c}" for s, c in patients.items())
        )
        if not splits_written:
            summary.notes.append(
                f"{dr.SPLITS_FILE} not written yet: counts show the split "
                f"training will create (seed {split_seed})"
            )
        for c in range(n):
            picks = [r.file for r in records if r.split == "train" and r.level == c][:per_class]
            summary.samples[c] = [decode_file(f, image_size) for f in picks]
        return summary
    file = medmnist.find_medmnist_file(path, name, image_size)
    data = medmnist.load_medmnist(file, None, flag=name, n_classes=n, task=spec.task)
    summary = DatasetSummary(
        name, path, spec.class_names, {s: data[s].class_counts(n) for s in SPLITS}
    )
    summary.notes.append(f"file: {file.name}, {data['train'].image_size} px")
    train = data["train"]
    for c in range(n):
        picks = np.flatnonzero(train.labels == c)[:per_class]
        summary.samples[c] = [
            imaging.to_square_uint8(Image.fromarray(train.images[i]), image_size) for i in picks
        ]
    return summary


def _summarize_chestxray14(
    path: Path, findings: tuple[str, ...], image_size: int, per_class: int, split_seed: int
) -> DatasetSummary:
    """Positives per finding and split (an image counts once per finding it has)."""
    splits_written = (path / chestxray14.SPLITS_FILE).is_file()
    records = chestxray14.index_chestxray14(path, split_seed=split_seed, write_splits=False)
    labels = chestxray14.label_matrix(records)
    in_split = {s: np.array([r.split == s for r in records], bool) for s in SPLITS}
    summary = DatasetSummary(
        "chestxray14", path, findings, {s: labels[in_split[s]].sum(axis=0) for s in SPLITS}
    )
    summary.notes.append(
        f"labels: {chestxray14.find_labels_file(path).name}; multilabel, counts are images "
        "with each finding"
    )
    for s in SPLITS:
        chosen = [r for r in records if r.split == s]
        summary.images[s] = len(chosen)
        summary.notes.append(
            f"{s}: {len(chosen)} images, {len({r.patient for r in chosen})} patients, "
            f"{sum(not r.findings for r in chosen)} '{chestxray14.NO_FINDING}'"
        )
    if not splits_written:
        summary.notes.append(
            f"{chestxray14.SPLITS_FILE} not written yet: counts show the validation split "
            f"training will create (seed {split_seed})"
        )
    for c in range(len(findings)):
        picks = [r.file for r in records if r.split == "train" and c in r.findings][:per_class]
        summary.samples[c] = [decode_file(f, image_size) for f in picks]
    return summary


def _summarize_imagefolder(
    path: Path, class_names: tuple[str, ...], image_size: int, per_class: int, split_seed: int
) -> DatasetSummary:
    """Images per class and split; says which folders hold the splits and what is carved."""
    folders = imagefolder.split_folders(path)
    carved = [s for s in SPLITS if s not in folders]
    _, records = imagefolder.index_imagefolder(path, split_seed=split_seed, write_splits=False)
    n = len(class_names)
    summary = DatasetSummary(
        "imagefolder", path, class_names,
        {s: np.bincount([r.label for r in records if r.split == s], minlength=n)
         for s in SPLITS},
    )
    summary.notes.append(
        "folders: " + ", ".join(f"{s} {f.relative_to(path)}/" for s, f in folders.items())
    )
    if carved:
        stored = (path / imagefolder.SPLITS_FILE).is_file()
        summary.notes.append(
            f"{'+'.join(carved)} carved out of train, stratified by class "
            + (f"(stored in {imagefolder.SPLITS_FILE})" if stored else
               f"(not written yet: counts show the split training will create, seed "
               f"{split_seed})")
        )
    for c in range(n):
        picks = [r.file for r in records if r.split == "train" and r.label == c][:per_class]
        summary.samples[c] = [decode_file(f, image_size) for f in picks]
    return summary


def format_counts(summary: DatasetSummary) -> str:
    """The counts as a fixed-width text table with per-split totals."""
    width = max(len(f"{i} {c}") for i, c in enumerate(summary.class_names)) + 2
    lines = [
        f"{summary.name}: {summary.path}",
        *summary.notes,
        f"{'class':<{width}}" + "".join(f"{s:>8}" for s in (*SPLITS, "total")),
    ]
    for i, class_name in enumerate(summary.class_names):
        row = [int(summary.counts[s][i]) for s in SPLITS]
        lines.append(
            f"{f'{i} {class_name}':<{width}}" + "".join(f"{v:>8}" for v in (*row, sum(row)))
        )
    totals = [summary.images.get(s, int(summary.counts[s].sum())) for s in SPLITS]
    label = "images" if summary.images else "total"
    lines.append(f"{label:<{width}}" + "".join(f"{v:>8}" for v in (*totals, sum(totals))))
    return "\n".join(lines)


def write_grid(summary: DatasetSummary, out: Path, image_size: int = 64) -> Path:
    """Save a PNG: one labelled row per class, that class's sample images across."""
    font = ImageFont.load_default(size=max(10, image_size // 5))
    labels = [f"{i} {c}" for i, c in enumerate(summary.class_names)]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = int(max(measure.textlength(t, font=font) for t in labels)) + 12
    cols = max((len(v) for v in summary.samples.values()), default=0) or 1
    pad = 4
    grid = Image.new(
        "RGB",
        (label_w + cols * (image_size + pad) + pad, len(labels) * (image_size + pad) + pad),
        "white",
    )
    draw = ImageDraw.Draw(grid)
    for row, text in enumerate(labels):
        y = pad + row * (image_size + pad)
        draw.text((6, y + image_size // 2), text, fill="black", font=font, anchor="lm")
        samples = summary.samples.get(row, [])
        for col, image in enumerate(samples):
            grid.paste(Image.fromarray(image), (label_w + pad + col * (image_size + pad), y))
        if not samples:
            draw.text(
                (label_w + pad, y + image_size // 2),
                "(no examples)",
                fill="gray",
                font=font,
                anchor="lm",
            )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG")
    return out


def inspect_dataset(
    path: Path,
    *,
    name: str | None = None,
    grid: Path | None = None,
    image_size: int = 64,
    per_class: int = 4,
    split_seed: int = 0,
) -> str:
    """Counts table (and the grid PNG when `grid` is given) for the dataset at `path`."""
    summary = summarize(
        path,
        name=name,
        image_size=image_size,
        per_class=per_class if grid else 0,
        split_seed=split_seed,
    )
    text = format_counts(summary)
    if grid:
        text += f"\nsample grid: {write_grid(summary, grid, image_size)}"
    return text
