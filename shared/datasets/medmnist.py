"""MedMNIST .npz reader and writer (BloodMNIST and any other 2D MedMNIST flag).

The official files hold six arrays: ``{train,val,test}_images`` (uint8, N x S x S x 3, or
N x S x S for grayscale flags) and ``{train,val,test}_labels`` (integer, N x 1; N x K 0/1 for
multilabel flags). S is 28 in ``<flag>.npz`` and 64/128/224 in ``<flag>_<S>.npz``
(MedMNIST+). The official splits are used exactly as given. This module is the only place
that knows the key names: the synthetic generator writes through `write_medmnist_npz`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from shared import imaging
from shared.atomic import atomic_path

from .registry import SPLITS, DatasetError, ImageSet, get_dataset_spec

MEDMNIST_SIZES = (28, 64, 128, 224)
LAYOUT = (
    "expected a MedMNIST .npz with arrays train_images, val_images, test_images "
    "(uint8, N x S x S x 3 or N x S x S) and train_labels, val_labels, test_labels "
    "(integer, N x 1; N x K of 0/1 for multilabel)"
)


def medmnist_filename(flag: str, size: int) -> str:
    """Official file name: ``bloodmnist.npz`` for 28 px, ``bloodmnist_<size>.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def find_medmnist_file(path: Path, flag: str, image_size: int) -> Path:
    """Resolve `path` (a file, or a directory of official files) to the file to read.

    In a directory: the file at image_size, else the nearest larger size (downscaling loses
    nothing), else the largest smaller one (upscaled on load).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or directory; {LAYOUT}")
    available = {s: path / medmnist_filename(flag, s) for s in MEDMNIST_SIZES}
    available = {s: p for s, p in available.items() if p.is_file()}
    if not available:
        names = ", ".join(medmnist_filename(flag, s) for s in MEDMNIST_SIZES)
        raise DatasetError(f"{path}: directory holds none of {names}; {LAYOUT}")
    larger = sorted(s for s in available if s >= image_size)
    return available[larger[0] if larger else max(available)]


def _validate(name: str, arrays: Mapping[str, np.ndarray], n_classes: int, task: str) -> None:
    """Raise DatasetError naming `name` unless `arrays` hold a well-formed MedMNIST layout."""
    missing = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if missing:
        raise DatasetError(f"{name}: missing arrays {missing} (found {sorted(arrays)}); {LAYOUT}")
    size = None
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        key = f"{split}_images"
        if images.dtype != np.uint8:
            raise DatasetError(f"{name}: {key} has dtype {images.dtype}, not uint8; {LAYOUT}")
        square = images.ndim in (3, 4) and images.shape[1] == images.shape[2] > 0
        if not square or (images.ndim == 4 and images.shape[3] != 3):
            raise DatasetError(f"{name}: {key} has shape {images.shape}; {LAYOUT}")
        if size is not None and images.shape[1] != size:
            raise DatasetError(f"{name}: {key} is {images.shape[1]} px, other splits {size} px")
        size = images.shape[1]
        key = f"{split}_labels"
        if labels.dtype.kind not in "iub":
            raise DatasetError(f"{name}: {key} has dtype {labels.dtype}, not integer; {LAYOUT}")
        if len(labels) != len(images):
            raise DatasetError(
                f"{name}: {len(images)} {split}_images but {len(labels)} {key}; {LAYOUT}"
            )
        if task == "multilabel":
            if labels.ndim != 2 or labels.shape[1] != n_classes:
                raise DatasetError(f"{name}: {key} shape {labels.shape}, want (N, {n_classes})")
            bad = (labels != 0) & (labels != 1)
        else:
            if not (labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1)):
                raise DatasetError(f"{name}: {key} has shape {labels.shape}; {LAYOUT}")
            bad = (labels < 0) | (labels >= n_classes)
        if bad.any():
            value = labels[bad].flat[0]
            raise DatasetError(
                f"{name}: {key} holds {value}, outside the {n_classes} classes (0..{n_classes - 1})"
                if task != "multilabel"
                else f"{name}: {key} holds {value}; multilabel labels must be 0 or 1"
            )


def read_medmnist_npz(
    file: Path, *, n_classes: int, task: str = "multiclass"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and validate one .npz: {split: (images as stored, labels as stored)}."""
    file = Path(file)
    if not file.is_file():
        raise DatasetError(f"{file}: file not found; {LAYOUT}")
    try:
        npz = np.load(file, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DatasetError(f"{file}: a single .npy array, not an .npz archive; {LAYOUT}")
        with npz:
            arrays = {key: npz[key] for key in npz.files}
    except DatasetError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{file}: not a readable .npz archive ({exc}); {LAYOUT}") from exc
    _validate(str(file), arrays, n_classes, task)
    return {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in SPLITS}


def _to_rgb_size(images: np.ndarray, image_size: int | None) -> np.ndarray:
    """Grayscale -> RGB, then resize every image to image_size (None keeps the stored size)."""
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=3)
    if image_size is None or images.shape[1] == image_size:
        return np.ascontiguousarray(images)
    out = np.empty((len(images), image_size, image_size, 3), np.uint8)
    for i, image in enumerate(images):
        out[i] = imaging.to_square_uint8(Image.fromarray(image), image_size)
    return out


def load_medmnist(
    path: Path, image_size: int | None, *, flag: str, n_classes: int, task: str = "multiclass"
) -> dict[str, ImageSet]:
    """Load the official train/val/test splits of a MedMNIST flag at image_size px."""
    file = find_medmnist_file(Path(path), flag, image_size or 28)
    raw = read_medmnist_npz(file, n_classes=n_classes, task=task)
    result = {}
    for split, (images, labels) in raw.items():
        labels = labels.astype(np.int64)
        if task != "multilabel":
            labels = labels.reshape(-1)
        ids = [f"{split}/{i}" for i in range(len(images))]
        result[split] = ImageSet(_to_rgb_size(images, image_size), labels, ids)
    return result


def load_bloodmnist(path: Path, image_size: int | None) -> dict[str, ImageSet]:
    """BloodMNIST (8 classes) from a .npz file or a directory of the official files."""
    spec = get_dataset_spec("bloodmnist")
    return load_medmnist(path, image_size, flag="bloodmnist", n_classes=spec.n_classes)


def write_medmnist_npz(
    path: str | Path,
    splits: Mapping[str, ImageSet | tuple[np.ndarray, np.ndarray]],
    *,
    n_classes: int | None = None,
    task: str = "multiclass",
    compressed: bool = True,
) -> Path:
    """Write {"train","val","test"}: ImageSet or (images, labels) in the official layout.

    Labels go out as N x 1 uint8 like the official files (N x K for multilabel). The arrays
    are validated with the reader's rules first, and the file appears atomically.
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        if split not in splits:
            raise DatasetError(f"{path}: need splits {SPLITS}, got {list(splits)}")
        item = splits[split]
        images, labels = (item.images, item.labels) if isinstance(item, ImageSet) else item
        labels = np.asarray(labels)
        if task != "multilabel":
            labels = labels.reshape(-1, 1)
        if labels.dtype.kind not in "iub":
            raise DatasetError(f"{path}: {split} labels have dtype {labels.dtype}, not integer")
        fits_uint8 = labels.size == 0 or (labels.min() >= 0 and labels.max() <= 255)
        arrays[f"{split}_images"] = np.asarray(images)
        arrays[f"{split}_labels"] = labels.astype(np.uint8 if fits_uint8 else np.int64)
    if n_classes is None and task == "multilabel":
        n_classes = arrays["train_labels"].shape[-1]
    elif n_classes is None:
        n_classes = max(int(a.max(initial=0)) + 1 for k, a in arrays.items() if "labels" in k)
    _validate(str(path), arrays, n_classes, task)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **arrays)
    return path
