"""Any one-folder-per-class image set: ``<root>/<split>/<class>/*.jpg`` (torchvision ImageFolder,
Keras ``image_dataset_from_directory``).

Split folders are ``train``, ``val`` (or ``valid`` / ``validation``) and ``test``; Kaggle's
Intel Image Classification names them ``seg_train`` / ``seg_test`` and nests each in a folder
of the same name (``seg_train/seg_train/<class>/``), which is followed. Class names are the
training class folders, sorted; every split must have the same ones. Files with the image
extensions below are read (others, and hidden files, are skipped); an unreadable one is an
error naming its path. A missing ``val`` (and ``test``) is carved out of ``train``, stratified
by class and seeded, in the proportions train:val:test = 70:15:15 (train:val = 70:15 when a
test folder exists), and saved in ``<root>/splits.csv`` so every run sees the same one.
Decoded arrays are cached in ``<root>/.cache/`` like the other directory readers'.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .decoding import cached_images, decode_files
from .registry import SPLITS, DatasetError, ImageSet
from .splits import (
    SPLIT_FRACTIONS,
    group_by_split,
    read_splits_csv,
    save_splits_csv,
    split_patients,
)

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = {
    "train": ("train", "seg_train"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "seg_test"),
}
SPLITS_FILE = "splits.csv"
LAYOUT = (
    "expected <root>/<split>/<class>/<image> with split folders train (or seg_train), "
    "optionally val and test (or seg_test), image files "
    + "/".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
)


@dataclass(frozen=True)
class FolderImage:
    """One image: its path relative to the root (the id), class index, file and split."""

    image: str
    label: int
    file: Path
    split: str


def split_folders(root: Path) -> dict[str, Path]:
    """{split: folder holding the class folders} for the splits present at `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory; {LAYOUT}")
    found: dict[str, Path] = {}
    for split, names in SPLIT_FOLDERS.items():
        present = [root / n for n in names if (root / n).is_dir()]
        if len(present) > 1:
            raise DatasetError(f"{root}: both {present[0].name}/ and {present[1].name}/ found "
                               f"for the {split} split; keep one")
        if present:
            folder = present[0]
            if _class_folders(folder) == [folder.name]:  # Kaggle's seg_train/seg_train/<class>/
                folder = folder / folder.name
            found[split] = folder
    if "train" not in found:
        raise DatasetError(f"{root}: no train/ (or seg_train/) folder; {LAYOUT}")
    return found


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def class_names_of(root: Path) -> tuple[str, ...]:
    """The sorted class folder names, the same in every split (else an error naming them)."""
    folders = split_folders(root)
    names = {split: _class_folders(folder) for split, folder in folders.items()}
    train = names["train"]
    if len(train) < 2:
        raise DatasetError(f"{folders['train']}: {len(train)} class folder(s) {train}; at least "
                           f"2 needed; {LAYOUT}")
    for split, classes in names.items():
        if classes != train:
            only_train = sorted(set(train) - set(classes))
            only_here = sorted(set(classes) - set(train))
            raise DatasetError(
                f"{folders[split]}: class folders differ from {folders['train']} "
                f"(only in train: {only_train}; only in {split}: {only_here})"
            )
    return tuple(train)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        Path(e.path) for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".")
        and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
    )


def _carve(train: list[tuple[str, int]], missing: Sequence[str], seed: int) -> dict[str, str]:
    """{image: split} for the training images, moving a stratified share into the missing
    splits (train:val:test = 70:15:15 among the splits carved)."""
    share = dict(zip(SPLITS, SPLIT_FRACTIONS, strict=True))
    fractions = tuple(share[s] if s == "train" or s in missing else 0.0 for s in SPLITS)
    total = sum(fractions)
    return split_patients(dict(train), seed, tuple(f / total for f in fractions))


def index_imagefolder(root: Path, *, split_seed: int = 0, write_splits: bool = True
                      ) -> tuple[tuple[str, ...], list[FolderImage]]:
    """(class names, every image with its class and split); missing splits carved once."""
    root = Path(root)
    folders = split_folders(root)
    classes = class_names_of(root)
    listed: dict[str, list[tuple[str, int, Path]]] = {}
    for split, folder in folders.items():
        listed[split] = []
        for label, name in enumerate(classes):
            files = _images_in(folder / name)
            if split == "train" and not files:
                raise DatasetError(f"{folder / name}: no images; {LAYOUT}")
            listed[split] += [(f.relative_to(root).as_posix(), label, f) for f in files]
    missing = [s for s in SPLITS if s not in folders]
    train = [(image, label) for image, label, _ in listed["train"]]
    image_split = {image: "train" for image, _ in train}
    if missing:
        image_split = _stored_or_new_split(root, train, missing, split_seed, write_splits)
    records = [FolderImage(image, label, file, image_split[image])
               for image, label, file in listed["train"]]
    for split in SPLITS:
        if split != "train" and split in listed:
            records += [FolderImage(image, label, file, split)
                        for image, label, file in listed[split]]
    return classes, records


def _stored_or_new_split(root: Path, train: list[tuple[str, int]], missing: list[str],
                         seed: int, write: bool) -> dict[str, str]:
    path = root / SPLITS_FILE
    if path.is_file():
        stored = read_splits_csv(path)
        names = {image for image, _ in train}
        if set(stored) != names or {s for s in stored.values() if s != "train"} - set(missing):
            raise DatasetError(f"{path} is stale: it does not match the images in "
                               f"{split_folders(root)['train']}; delete it to regenerate the split")
        return stored
    carved = _carve(train, missing, seed)
    if write:
        save_splits_csv(path, carved)
        log.info("carved %s out of train (seed %d), saved in %s", "+".join(missing), seed, path)
    return carved


def load_imagefolder(path: Path, image_size: int, *, split_seed: int = 0, cache: bool = True,
                     workers: int | None = None) -> dict[str, ImageSet]:
    """Load an image-folder dataset as train/val/test ImageSets of image_size px squares
    (decoded arrays cached in ``<root>/.cache/``)."""
    root = Path(path)
    _, records = index_imagefolder(root, split_seed=split_seed)
    by_split = group_by_split(records, str(root), LAYOUT)
    images = cached_images(
        root, "imagefolder", image_size,
        {s: [(r.image, str(r.label), r.file) for r in by_split[s]] for s in SPLITS},
        lambda files: decode_files(files, image_size, workers), enabled=cache,
    )
    return {
        s: ImageSet(
            images[s],
            np.array([r.label for r in by_split[s]], np.int64),
            [r.image for r in by_split[s]],
        )
        for s in SPLITS
    }
