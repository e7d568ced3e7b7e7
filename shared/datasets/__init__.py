"""Datasets for versus: specs, readers for the real formats, splits and the batch pipeline.

Everything here is numpy + Pillow only, so every framework's trainer sees the same pixels in
the same order. Typical use::

    from shared.datasets import get_dataset_spec, load_dataset, iterate_batches
    sets = load_dataset("dr", "data/dr-synth", image_size=224)
    for x, y in iterate_batches(sets["train"], 32, spec=PreprocessSpec(224), shuffle=True,
                                seed=0, epoch=epoch, augment=True): ...

The synthetic generators (`synth_dr`, `synth_blood`, `synth_chestxray14`) are imported on
demand, not here.
"""

from .chestxray14 import index_chestxray14, load_chestxray14
from .dr import index_dr, load_dr, write_kaggle_labels
from .imagefolder import index_imagefolder, load_imagefolder
from .inspect import detect_dataset, inspect_dataset
from .medmnist import load_bloodmnist, load_medmnist, read_medmnist_npz, write_medmnist_npz
from .pipeline import batch_order, class_weights, iterate_batches, num_batches
from .registry import (
    DATASET_NAMES,
    DATASETS,
    FOLDER_DATASETS,
    SPLITS,
    DatasetError,
    DatasetSpec,
    ImageSet,
    dataset_spec_for,
    get_dataset_spec,
    load_dataset,
)
from .splits import SPLIT_FRACTIONS, split_patients

__all__ = [
    "DATASET_NAMES",
    "DATASETS",
    "FOLDER_DATASETS",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "DatasetError",
    "DatasetSpec",
    "ImageSet",
    "batch_order",
    "class_weights",
    "dataset_spec_for",
    "detect_dataset",
    "get_dataset_spec",
    "index_chestxray14",
    "index_dr",
    "index_imagefolder",
    "inspect_dataset",
    "iterate_batches",
    "load_bloodmnist",
    "load_chestxray14",
    "load_dataset",
    "load_dr",
    "load_imagefolder",
    "load_medmnist",
    "num_batches",
    "read_medmnist_npz",
    "split_patients",
    "write_kaggle_labels",
    "write_medmnist_npz",
]
