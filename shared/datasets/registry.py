"""Dataset specifications, the in-memory image set, and the one loader entry point.

A `DatasetSpec` is everything a trainer, a service or a report needs to know about a dataset
without touching its files: task type, class names in label order, which metrics apply and
which one is primary. `load_dataset` dispatches to the format readers (imported lazily, so
reading the registry costs nothing).

Multilabel datasets use the same types: NIH ChestX-ray14 has task "multilabel", its 14
findings as class names and `ImageSet.labels` of shape (N, 14) holding 0/1 (an image with
"No Finding" is all zeros).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TASKS = ("multiclass", "multilabel")
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the layout."""


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a dataset: labels, task and how models on it are judged."""

    name: str
    task: str
    class_names: tuple[str, ...]
    metrics: tuple[str, ...]
    primary_metric: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name!r}: task {self.task!r} not in {TASKS}")
        if len(set(self.class_names)) != len(self.class_names) or len(self.class_names) < 2:
            raise ValueError(f"dataset {self.name!r}: class names must be >= 2 and unique")
        if self.primary_metric not in self.metrics:
            raise ValueError(
                f"dataset {self.name!r}: primary metric {self.primary_metric!r} "
                f"not in metrics {self.metrics}"
            )

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="dr",
            task="multiclass",
            class_names=("No DR", "Mild", "Moderate", "Severe", "Proliferative DR"),
            metrics=("qwk", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc"),
            primary_metric="qwk",
            description="Diabetic retinopathy grade 0-4 from a fundus photo "
            "(Kaggle 2015 / APTOS 2019 layouts); ordinal, so quadratic weighted kappa.",
        ),
        DatasetSpec(
            name="bloodmnist",
            task="multiclass",
            class_names=(
                "basophil",
                "eosinophil",
                "erythroblast",
                "immature granulocytes",
                "lymphocyte",
                "monocyte",
                "neutrophil",
                "platelet",
            ),
            metrics=("accuracy", "balanced_accuracy", "macro_f1", "macro_auc"),
            primary_metric="accuracy",
            description="MedMNIST BloodMNIST: 8 peripheral blood cell types, official splits.",
        ),
        DatasetSpec(
            name="chestxray14",
            task="multilabel",
            class_names=(
                "Atelectasis",
                "Cardiomegaly",
                "Effusion",
                "Infiltration",
                "Mass",
                "Nodule",
                "Pneumonia",
                "Pneumothorax",
                "Consolidation",
                "Edema",
                "Emphysema",
                "Fibrosis",
                "Pleural_Thickening",
                "Hernia",
            ),
            metrics=(
                "macro_auc",
                "macro_f1",
                "macro_precision",
                "macro_recall",
                "subset_accuracy",
                "hamming_accuracy",
            ),
            primary_metric="macro_auc",
            description="NIH ChestX-ray14: 14 findings on frontal chest radiographs, any number "
            "per image (none: 'No Finding'); official patient-wise test list.",
        ),
    )
}

@dataclass(frozen=True)
class FolderDataset:
    """A dataset whose class names are in the data (one folder per class): everything of its
    DatasetSpec but the names, and the "module:function" (path) -> names that reads them."""

    name: str
    class_reader: str
    task: str
    metrics: tuple[str, ...]
    primary_metric: str
    description: str = ""

    def spec(self, class_names: Sequence[str]) -> DatasetSpec:
        return DatasetSpec(self.name, self.task, tuple(class_names), self.metrics,
                           self.primary_metric, self.description)


FOLDER_DATASETS: dict[str, FolderDataset] = {
    "imagefolder": FolderDataset(
        name="imagefolder",
        class_reader="shared.datasets.imagefolder:class_names_of",
        task="multiclass",
        metrics=("accuracy", "balanced_accuracy", "macro_f1", "macro_auc"),
        primary_metric="accuracy",
        description="Any <root>/<split>/<class>/*.jpg image set (torchvision ImageFolder, "
        "Kaggle Intel Image Classification); classes are the sorted folder names.",
    ),
}
DATASET_NAMES: tuple[str, ...] = tuple(sorted([*DATASETS, *FOLDER_DATASETS]))

# name -> "module:function" with signature (path, image_size, **options) -> dict[str, ImageSet]
_LOADERS: dict[str, str] = {
    "dr": "shared.datasets.dr:load_dr",
    "bloodmnist": "shared.datasets.medmnist:load_bloodmnist",
    "chestxray14": "shared.datasets.chestxray14:load_chestxray14",
    "imagefolder": "shared.datasets.imagefolder:load_imagefolder",
}


def _function(target: str):
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}")


def get_dataset_spec(name: str) -> DatasetSpec:
    """Return the spec of a dataset with fixed classes; unknown names raise KeyError listing
    the known ones, folder datasets one pointing to `dataset_spec_for`."""
    _check_name(name)
    if name in FOLDER_DATASETS:
        raise KeyError(f"dataset {name!r} takes its class names from the data: use "
                       "dataset_spec_for(name, path)")
    return DATASETS[name]


def dataset_spec_for(
    name: str, path: str | Path | None = None, class_names: Sequence[str] | None = None
) -> DatasetSpec:
    """The spec of `name` as used on the data at `path`: the registry's for fixed datasets;
    for a folder dataset, its spec with the class names read from `path` (or given, e.g.
    from a model manifest). Unreadable folders raise DatasetError."""
    _check_name(name)
    if name not in FOLDER_DATASETS:
        return DATASETS[name]
    folder = FOLDER_DATASETS[name]
    if class_names is None:
        if path is None:
            raise ValueError(f"dataset {name!r}: pass the data path or the class names")
        class_names = _function(folder.class_reader)(Path(path))
    return folder.spec(class_names)


@dataclass
class ImageSet:
    """One split in memory: uint8 NHWC images, labels and stable per-example ids.

    labels are (N,) int64 class indices for multiclass, (N, K) 0/1 for multilabel.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(
                f"ImageSet.images must be (N,H,W,3) uint8, got {self.images.shape} "
                f"{self.images.dtype}"
            )
        if len(self.labels) != n:
            raise ValueError(f"ImageSet: {n} images but {len(self.labels)} labels")
        if not self.ids:
            self.ids = [str(i) for i in range(n)]
        if len(self.ids) != n:
            raise ValueError(f"ImageSet: {n} images but {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """A new ImageSet of the given examples (e.g. ``range(256)`` for a quick run)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return ImageSet(self.images[idx], self.labels[idx], [self.ids[i] for i in idx])

    def class_counts(self, n_classes: int) -> np.ndarray:
        """Examples per class (multiclass) or positives per class (multilabel)."""
        if self.labels.ndim == 2:
            return self.labels.astype(np.int64).sum(axis=0)
        return np.bincount(self.labels.astype(np.int64), minlength=n_classes)


def load_dataset(name: str, path: str | Path, image_size: int, **options) -> dict[str, ImageSet]:
    """Load `name` from `path` as {"train", "val", "test"} ImageSets of image_size px squares.

    options go to the format reader (e.g. ``split_seed``/``cache`` for dr).
    """
    _check_name(name)
    return _function(_LOADERS[name])(Path(path), image_size, **options)
