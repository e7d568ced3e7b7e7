"""Diabetic retinopathy readers: Kaggle 2015 and APTOS 2019 layouts, patient split, cache.

Kaggle 2015: ``trainLabels.csv`` (columns image,level) and ``<image>.jpeg`` in the directory
or in ``train/``; the patient is the image name without ``_left``/``_right``. APTOS 2019:
``train.csv`` (id_code,diagnosis) and ``train_images/<id_code>.png``; APTOS publishes no
patient ids, so each image is its own patient. Grades are 0-4 in both.

The split is made once per directory (`splits.py`) and stored in ``splits.csv``. The resized
arrays are cached in ``.cache/dr_<size>_<hash>.npz`` (`decoding.py`), keyed by the labels,
the split and every file's size/mtime.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.atomic import atomic_path

from .decoding import cached_images, decode_files
from .registry import SPLITS, DatasetError, ImageSet
from .splits import (
    check_splits,
    group_by_split,
    read_splits_csv,
    save_splits_csv,
    split_patients,
)

log = logging.getLogger(__name__)

N_GRADES = 5
SPLITS_FILE = "splits.csv"


@dataclass(frozen=True)
class DRLayout:
    """Where a DR dataset keeps its labels and images."""

    name: str
    labels_file: str
    image_column: str
    label_column: str
    image_dirs: tuple[str, ...]
    extensions: tuple[str, ...]

    def describe(self, directory: Path) -> str:
        where = " or ".join(
            str(directory / d) if d != "." else str(directory) for d in self.image_dirs
        )
        return (
            f"expected {self.name} layout: {self.labels_file} with columns "
            f"{self.image_column},{self.label_column} (grade 0-4) and images "
            f"<{self.image_column}>{self.extensions[0]} in {where}"
        )


KAGGLE = DRLayout(
    "Kaggle 2015", "trainLabels.csv", "image", "level", (".", "train"), (".jpeg", ".jpg", ".png")
)
APTOS = DRLayout(
    "APTOS 2019", "train.csv", "id_code", "diagnosis", ("train_images",), (".png", ".jpeg", ".jpg")
)


@dataclass(frozen=True)
class DRRecord:
    """One labelled image: name as in the CSV, grade, patient, file on disk, split."""

    image: str
    level: int
    patient: str
    file: Path
    split: str


def detect_layout(directory: Path) -> DRLayout:
    """Pick the layout from the labels file present; neither or both is an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(
            f"{directory}: not a directory; {KAGGLE.describe(directory)}, "
            f"or {APTOS.describe(directory)}"
        )
    found = [lay for lay in (KAGGLE, APTOS) if (directory / lay.labels_file).is_file()]
    if len(found) != 1:
        what = "no" if not found else "both"
        raise DatasetError(
            f"{directory}: {what} labels file ({KAGGLE.labels_file} / {APTOS.labels_file}) "
            f"found; {KAGGLE.describe(directory)}, or {APTOS.describe(directory)}"
        )
    return found[0]


def patient_id(image: str, layout: DRLayout) -> str:
    """Kaggle: the name before ``_left``/``_right`` (else the name itself); APTOS: the name."""
    if layout is KAGGLE:
        for suffix in ("_left", "_right"):
            if image.endswith(suffix):
                return image[: -len(suffix)]
    return image


def read_labels(directory: Path, layout: DRLayout) -> list[tuple[str, int]]:
    """Read and validate the labels CSV: [(image, grade)] in file order."""
    path = directory / layout.labels_file
    expected = layout.describe(directory)
    cols = (layout.image_column, layout.label_column)
    try:
        return _parse_labels(path, layout, expected, cols)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc}); {expected}") from exc


def _parse_labels(
    path: Path, layout: DRLayout, expected: str, cols: tuple[str, str]
) -> list[tuple[str, int]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        for col in cols:
            if col not in header:
                raise DatasetError(f"{path}: missing column {col!r} (found {header}); {expected}")
        rows: list[tuple[str, int]] = []
        seen: set[str] = set()
        for row in reader:
            image, level = ((row[c] or "").strip() for c in cols)
            where = f"{path}:{reader.line_num}"
            if not image:
                raise DatasetError(f"{where}: empty {cols[0]}; {expected}")
            if image in seen:
                raise DatasetError(f"{where}: duplicate image {image!r}")
            if not level.isdigit() or int(level) >= N_GRADES:
                raise DatasetError(f"{where}: {cols[1]} {level!r} for {image!r} is not a grade 0-4")
            seen.add(image)
            rows.append((image, int(level)))
    if not rows:
        raise DatasetError(f"{path}: no rows; {expected}")
    return rows


def _find_files(directory: Path, layout: DRLayout, images: Sequence[str]) -> list[Path]:
    """Locate each image's file with one directory listing per image folder."""
    best: dict[str, tuple[tuple[int, int], Path]] = {}  # stem -> (priority, file)
    for d, sub in enumerate(layout.image_dirs):  # earlier folders, then extensions, win
        folder = directory / sub
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            stem, dot, suffix = entry.name.rpartition(".")
            ext = f".{suffix.lower()}"
            if dot and ext in layout.extensions and entry.is_file():
                rank = (d, layout.extensions.index(ext))
                if stem not in best or rank < best[stem][0]:
                    best[stem] = (rank, Path(entry.path))
    by_stem = {stem: file for stem, (_, file) in best.items()}
    missing = [name for name in images if name not in by_stem]
    if missing:
        raise DatasetError(
            f"{directory}: image {missing[0]!r} listed in {layout.labels_file} not found "
            f"({len(missing)} missing in all); {layout.describe(directory)}"
        )
    return [by_stem[name] for name in images]


def index_dr(directory: Path, *, split_seed: int = 0, write_splits: bool = True) -> list[DRRecord]:
    """Every labelled image with its grade, patient, file and split (split made if absent)."""
    directory = Path(directory)
    layout = detect_layout(directory)
    rows = read_labels(directory, layout)
    patient_of = {image: patient_id(image, layout) for image, _ in rows}
    splits_path = directory / SPLITS_FILE
    if splits_path.is_file():
        image_split = read_splits_csv(splits_path)
        check_splits(splits_path, image_split, patient_of, directory / layout.labels_file)
    else:
        worst: dict[str, int] = {}
        for image, level in rows:
            worst[patient_of[image]] = max(level, worst.get(patient_of[image], 0))
        patient_split = split_patients(worst, split_seed)
        image_split = {image: patient_split[patient_of[image]] for image, _ in rows}
        if write_splits:
            save_splits_csv(splits_path, image_split)
            log.info("wrote patient split (seed %d) to %s", split_seed, splits_path)
    files = _find_files(directory, layout, [image for image, _ in rows])
    return [
        DRRecord(image, level, patient_of[image], file, image_split[image])
        for (image, level), file in zip(rows, files, strict=True)
    ]


def load_dr(
    path: Path,
    image_size: int,
    *,
    split_seed: int = 0,
    cache: bool = True,
    workers: int | None = None,
) -> dict[str, ImageSet]:
    """Load a Kaggle-2015 or APTOS-2019 directory as patient-split train/val/test ImageSets."""
    directory = Path(path)
    records = index_dr(directory, split_seed=split_seed)
    by_split = group_by_split(
        records, str(directory),
        f"too few patients ({len({r.patient for r in records})}) to split 70/15/15",
    )
    images = cached_images(
        directory, "dr", image_size,
        {s: [(r.image, str(r.level), r.file) for r in by_split[s]] for s in SPLITS},
        lambda files: decode_files(files, image_size, workers), enabled=cache,
    )
    return {
        s: ImageSet(
            images[s],
            np.array([r.level for r in by_split[s]], np.int64),
            [r.image for r in by_split[s]],
        )
        for s in SPLITS
    }


def write_kaggle_labels(directory: str | Path, rows: Iterable[tuple[str, int]]) -> Path:
    """Write ``trainLabels.csv`` (image,level) in the Kaggle 2015 format; returns its path."""
    path = Path(directory) / KAGGLE.labels_file
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow((KAGGLE.image_column, KAGGLE.label_column))
        writer.writerows((image, int(level)) for image, level in rows)
    return path
