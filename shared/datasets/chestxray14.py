"""NIH ChestX-ray14 reader: the real layout, the official patient-wise lists, a saved val split.

The directory holds (as the NIH box folder and its Kaggle mirror ship it):

- ``Data_Entry_2017_v2020.csv`` or ``Data_Entry_2017.csv``: one row per image with columns
  ``Image Index`` (``00000001_000.png``), ``Finding Labels`` (``|``-separated finding names, or
  ``No Finding``) and ``Patient ID``; the other columns (age, view, pixel spacing, ...) are
  ignored. When both files exist the v2020 one (NIH's corrected labels) is read.
- the PNGs in ``images/`` (the NIH tarballs) or ``images_001/images/`` ... ``images_012/images/``
  (the Kaggle mirror); 1024 x 1024, grayscale, a few RGBA, decoded by the shared imaging path.
- ``train_val_list.txt`` and ``test_list.txt``: the official split, one image name a line,
  no patient in both.

Validation is carved out of train_val by patient (stratified by each patient's rarest finding,
seeded) and saved in ``splits.csv`` like the DR split, so every run and framework sees the
same one. Labels are (N, 14) int64 0/1 in the registry's finding order. The decoded, resized
arrays are cached in ``.cache/chestxray14_<size>_<hash>.npz`` (`decoding.py`): decoding
112,120 radiographs of 1024 px takes minutes, reading the cache seconds.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decoding import cached_images, decode_files
from .registry import SPLITS, DatasetError, ImageSet, get_dataset_spec
from .splits import (
    check_splits,
    group_by_split,
    read_splits_csv,
    save_splits_csv,
    split_patients,
)

log = logging.getLogger(__name__)

FINDINGS = get_dataset_spec("chestxray14").class_names
NO_FINDING = "No Finding"
LABEL_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")  # first found wins
IMAGE_COLUMN, FINDINGS_COLUMN, PATIENT_COLUMN = "Image Index", "Finding Labels", "Patient ID"
TRAIN_VAL_LIST, TEST_LIST = "train_val_list.txt", "test_list.txt"
SPLITS_FILE = "splits.csv"
IMAGE_DIR = "images"
IMAGE_DIR_PATTERN = "images_*"  # images_001 ... images_012, each holding images/
VAL_FRACTION = 0.1  # share of train_val patients that become validation
LAYOUT = (
    f"expected ChestX-ray14 layout: {LABEL_FILES[1]} (or {LABEL_FILES[0]}) with columns "
    f"'{IMAGE_COLUMN}', '{FINDINGS_COLUMN}' ('|'-separated findings or '{NO_FINDING}'), "
    f"'{PATIENT_COLUMN}'; PNGs in {IMAGE_DIR}/ or images_001/{IMAGE_DIR}/ ...; "
    f"{TRAIN_VAL_LIST} and {TEST_LIST}"
)


@dataclass(frozen=True)
class ChestRecord:
    """One labelled image: its name, finding indices, patient, file on disk and split."""

    image: str
    findings: tuple[int, ...]
    patient: str
    file: Path
    split: str


def find_labels_file(directory: Path) -> Path:
    """The Data_Entry CSV of `directory` (v2020 preferred); none is an error naming the layout."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory}: not a directory; {LAYOUT}")
    for name in LABEL_FILES:
        if (directory / name).is_file():
            return directory / name
    raise DatasetError(f"{directory}: no {LABEL_FILES[1]} or {LABEL_FILES[0]}; {LAYOUT}")


def parse_findings(text: str, where: str) -> tuple[int, ...]:
    """``'Effusion|Mass'`` -> sorted finding indices; ``'No Finding'`` -> (); else an error."""
    names = [name.strip() for name in text.split("|")]
    if names == [NO_FINDING]:
        return ()
    unknown = [name for name in names if name not in FINDINGS]
    if unknown:
        what = f"'{NO_FINDING}' together with findings" if NO_FINDING in names else (
            f"unknown finding {unknown[0]!r}"
        )
        raise DatasetError(f"{where}: {what} in {text!r}; known findings: {', '.join(FINDINGS)}")
    return tuple(sorted({FINDINGS.index(name) for name in names}))


def read_labels(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """Read and validate a Data_Entry CSV: [(image, finding indices, patient)] in file order."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return _parse_labels(path, csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: not a readable CSV ({exc}); {LAYOUT}") from exc


def _parse_labels(path: Path, reader: csv.DictReader) -> list[tuple[str, tuple[int, ...], str]]:
    header = [(c or "").strip() for c in reader.fieldnames or []]
    reader.fieldnames = header
    for col in (IMAGE_COLUMN, FINDINGS_COLUMN, PATIENT_COLUMN):
        if col not in header:
            raise DatasetError(f"{path}: missing column {col!r} (found {header}); {LAYOUT}")
    rows, seen = [], set()
    for row in reader:
        where = f"{path}:{reader.line_num}"
        image, text, patient = (
            (row.get(c) or "").strip() for c in (IMAGE_COLUMN, FINDINGS_COLUMN, PATIENT_COLUMN)
        )
        if not image or not text or not patient:
            raise DatasetError(f"{where}: empty {IMAGE_COLUMN!r}, {FINDINGS_COLUMN!r} or "
                               f"{PATIENT_COLUMN!r}; {LAYOUT}")
        if image in seen:
            raise DatasetError(f"{where}: duplicate image {image!r}")
        seen.add(image)
        rows.append((image, parse_findings(text, where), patient))
    if not rows:
        raise DatasetError(f"{path}: no rows; {LAYOUT}")
    return rows


def read_list(path: Path) -> list[str]:
    """Image names of an official list file, one a line (blank lines skipped)."""
    if not path.is_file():
        raise DatasetError(f"{path}: official split list not found; {LAYOUT}")
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a text list of image names ({exc}); {LAYOUT}") from exc
    return [name for name in names if name]


def official_split(directory: Path, patient_of: dict[str, str], labels_file: Path) -> set[str]:
    """The test images of the official lists, after checking they partition the labelled
    images with no patient on both sides."""
    train_val_path, test_path = directory / TRAIN_VAL_LIST, directory / TEST_LIST
    train_val, test = read_list(train_val_path), read_list(test_path)
    for path, names in ((train_val_path, train_val), (test_path, test)):
        unknown = [name for name in names if name not in patient_of]
        if unknown:
            raise DatasetError(f"{path}: image {unknown[0]!r} is not in {labels_file} "
                               f"({len(unknown)} such)")
        dup = [name for name, k in Counter(names).items() if k > 1]
        if dup:
            raise DatasetError(f"{path}: image {dup[0]!r} listed {Counter(names)[dup[0]]} times")
    both = set(train_val) & set(test)
    if both:
        raise DatasetError(f"image {sorted(both)[0]!r} is in both {train_val_path} and {test_path}")
    listed = set(train_val) | set(test)
    unlisted = [name for name in patient_of if name not in listed]
    if unlisted:
        raise DatasetError(f"{labels_file}: image {unlisted[0]!r} is in neither {train_val_path} "
                           f"nor {test_path} ({len(unlisted)} such)")
    leaked = {patient_of[n] for n in train_val} & {patient_of[n] for n in test}
    if leaked:
        raise DatasetError(f"patient {sorted(leaked)[0]!r} has images in both {train_val_path} "
                           f"and {test_path} ({len(leaked)} such patients); the official lists "
                           "are patient-wise")
    return set(test)


def carve_validation(
    rows: Sequence[tuple[str, tuple[int, ...], str]], test: set[str], seed: int,
    val_fraction: float = VAL_FRACTION,
) -> dict[str, str]:
    """{image: split}: test from the list, train_val patients split into train and val,
    stratified by each patient's rarest finding (so rare findings reach validation)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    frequency = Counter(k for _, findings, _ in rows for k in findings)
    rarest: dict[str, int] = {}
    for image, findings, patient in rows:
        if image not in test:
            rank = min((frequency[k] for k in findings), default=len(rows) + 1)
            rarest[patient] = min(rank, rarest.get(patient, len(rows) + 1))
    patient_split = split_patients(rarest, seed, (1 - val_fraction, val_fraction, 0.0))
    return {image: "test" if image in test else patient_split[patient]
            for image, _, patient in rows}


def find_image_files(directory: Path, images: Sequence[str], labels_file: Path) -> list[Path]:
    """Each image's file in images/ or images_*/images/, with one listing per folder."""
    folders = [directory / IMAGE_DIR, *sorted(p / IMAGE_DIR for p in directory.glob(
        IMAGE_DIR_PATTERN))]
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for entry in os.scandir(folder):
                found.setdefault(entry.name, Path(entry.path))
    missing = [name for name in images if name not in found]
    if missing:
        raise DatasetError(
            f"{directory}: image {missing[0]!r} listed in {labels_file} not found "
            f"({len(missing)} missing in all); {LAYOUT}"
        )
    return [found[name] for name in images]


def index_chestxray14(
    directory: Path, *, split_seed: int = 0, write_splits: bool = True,
    val_fraction: float = VAL_FRACTION,
) -> list[ChestRecord]:
    """Every labelled image with its findings, patient, file and split (val made if absent)."""
    directory = Path(directory)
    labels_file = find_labels_file(directory)
    rows = read_labels(labels_file)
    patient_of = {image: patient for image, _, patient in rows}
    test = official_split(directory, patient_of, labels_file)
    splits_path = directory / SPLITS_FILE
    if splits_path.is_file():
        image_split = read_splits_csv(splits_path)
        check_splits(splits_path, image_split, patient_of, labels_file)
        moved = [i for i, s in image_split.items() if (s == "test") != (i in test)]
        if moved:
            raise DatasetError(f"{splits_path} is stale: image {moved[0]!r} disagrees with "
                               f"{directory / TEST_LIST}; delete {splits_path} to regenerate it")
    else:
        image_split = carve_validation(rows, test, split_seed, val_fraction)
        if write_splits:
            save_splits_csv(splits_path, image_split)
            log.info("wrote validation split (seed %d) to %s", split_seed, splits_path)
    files = find_image_files(directory, [image for image, _, _ in rows], labels_file)
    return [
        ChestRecord(image, findings, patient, file, image_split[image])
        for (image, findings, patient), file in zip(rows, files, strict=True)
    ]


def label_matrix(records: Sequence[ChestRecord]) -> np.ndarray:
    """(N, 14) int64 0/1 in finding order."""
    labels = np.zeros((len(records), len(FINDINGS)), np.int64)
    for i, record in enumerate(records):
        labels[i, list(record.findings)] = 1
    return labels


def load_chestxray14(
    path: Path, image_size: int, *, split_seed: int = 0, val_fraction: float = VAL_FRACTION,
    cache: bool = True, workers: int | None = None,
) -> dict[str, ImageSet]:
    """Load a ChestX-ray14 directory as train/val/test ImageSets (official test list)."""
    directory = Path(path)
    records = index_chestxray14(directory, split_seed=split_seed, val_fraction=val_fraction)
    by_split = group_by_split(
        records, str(directory),
        f"{len({r.patient for r in records})} patients; {TEST_LIST} and enough train_val "
        "patients for validation are needed",
    )
    images = cached_images(
        directory, "chestxray14", image_size,
        {s: [(r.image, "|".join(map(str, r.findings)), r.file) for r in by_split[s]]
         for s in SPLITS},
        lambda files: decode_files(files, image_size, workers), enabled=cache,
    )
    return {
        s: ImageSet(
            images[s],
            label_matrix(by_split[s]),
            [r.image for r in by_split[s]],
        )
        for s in SPLITS
    }
