"""Patient-level, stratified, seeded train/val/test splits and their splits.csv file.

Both eyes of a patient (or every image of a patient, for any future dataset) land in the
same split, so no patient leaks between training and evaluation. Patients are stratified by
a per-patient label (the worst DR grade) and assigned by systematic allocation: strata are
laid end to end, patients shuffled within each, and each next patient goes to the split
furthest below its target share. The whole set then matches 70/15/15 to within one
patient, every stratum to within two, and as few as 5 patients give a non-empty val and test.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from shared.atomic import atomic_path

from .registry import SPLITS, DatasetError

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
SPLITS_COLUMNS = ("image", "split")
T = TypeVar("T")  # a record with a .split


def split_patients(
    strata: Mapping[str, int], seed: int, fractions: tuple[float, ...] = SPLIT_FRACTIONS
) -> dict[str, str]:
    """Map each patient id to "train"/"val"/"test", stratified by `strata[patient]`."""
    if len(fractions) != len(SPLITS) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be {len(SPLITS)} numbers summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    ordered: list[str] = []
    for stratum in sorted(set(strata.values())):
        members = sorted(p for p, s in strata.items() if s == stratum)
        ordered.extend(members[i] for i in rng.permutation(len(members)))
    want = np.asarray(fractions, dtype=np.float64)
    counts = np.zeros(len(SPLITS))
    assignment = {}
    for i, patient in enumerate(ordered):
        k = int(np.argmax((i + 1) * want - counts))
        counts[k] += 1
        assignment[patient] = SPLITS[k]
    return assignment


def group_by_split(records: Sequence[T], where: str, why: str) -> dict[str, list[T]]:
    """{split: records} (each record has a ``split``); an empty split is a DatasetError
    naming `where` and explaining `why` it might be empty."""
    by_split = {s: [r for r in records if r.split == s] for s in SPLITS}
    empty = [s for s in SPLITS if not by_split[s]]
    if empty:
        raise DatasetError(f"{where}: split(s) {empty} are empty; {why}")
    return by_split


def write_splits_csv(path: Path, image_split: Mapping[str, str]) -> Path:
    """Write ``image,split`` rows (in the given order) atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SPLITS_COLUMNS)
        writer.writerows(image_split.items())
    return path


def save_splits_csv(path: Path, image_split: Mapping[str, str]) -> None:
    """`write_splits_csv` for a reader that makes its split once: a failure is a
    DatasetError naming the file."""
    try:
        write_splits_csv(path, image_split)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write the split ({exc})") from exc


def read_splits_csv(path: Path) -> dict[str, str]:
    """Read a splits.csv into {image: split}; malformed rows raise DatasetError."""
    layout = "expected columns image,split with split in train/val/test"
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or any(c not in reader.fieldnames for c in SPLITS_COLUMNS):
            raise DatasetError(f"{path}: header {reader.fieldnames}; {layout}")
        result: dict[str, str] = {}
        for row in reader:
            image, split = (row["image"] or "").strip(), (row["split"] or "").strip()
            if split not in SPLITS or not image or image in result:
                raise DatasetError(
                    f"{path}:{reader.line_num}: bad or duplicate row {image!r},{split!r}; {layout}"
                )
            result[image] = split
    return result


def check_splits(
    path: Path, image_split: Mapping[str, str], patient_of: Mapping[str, str], labels_file: Path
) -> None:
    """Raise DatasetError unless a stored split covers exactly the labelled images, leak-free."""
    advice = f"delete {path} to regenerate the split"
    missing = [i for i in patient_of if i not in image_split]
    extra = [i for i in image_split if i not in patient_of]
    if missing or extra:
        raise DatasetError(
            f"{path} is stale: it does not match {labels_file} ({len(missing)} labelled images "
            f"missing from it, e.g. {missing[:3]}; {len(extra)} unknown images, e.g. "
            f"{extra[:3]}); {advice}"
        )
    seen: dict[str, str] = {}
    for image, split in image_split.items():
        patient = patient_of[image]
        if seen.setdefault(patient, split) != split:
            raise DatasetError(
                f"{path}: patient {patient!r} appears in both {seen[patient]} and {split} "
                f"(patient leak); {advice}"
            )
