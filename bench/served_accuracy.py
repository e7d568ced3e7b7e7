"""Test-split accuracy through the running service: the images users would upload, the
service's own decode and preprocessing, its answers' probabilities.

The test split is read from the dataset file the run was given (``--eval-data``, default the
payload source when that is a dataset): a MedMNIST ``.npz`` (each image encoded as PNG, as the
payload pool does) or a DR directory (the original photo files, as a clinic uploads them).
Each image is sent once as a raw ``POST /predict?input=dataset`` body (it is a dataset image,
not a raw capture to crop to the dataset's field of view) by a few keep-alive client threads;
the answer's ``probabilities`` (by class name) become one row of an (N, C) array in the
model's class order. An image without a good answer is counted, never guessed: the gate
(:mod:`bench.gate`) does not judge a runtime that dropped test images.
"""

from __future__ import annotations

import http.client
import io
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.load.keepalive import KeepAliveClient

SPLIT = "test"
REQUEST_TIMEOUT_S = 120.0
DR_LABEL_FILES = ("trainLabels.csv", "train.csv")
PREDICT_PATH = "/predict?input=dataset"
"""Test images are dataset images: the service must not crop them as raw captures."""


class EvalDataError(ValueError):
    """The evaluation data cannot be read as a labelled test split."""


class EncodedPixels(Sequence[tuple[bytes, str]]):
    """uint8 images, each encoded as PNG when it is sent (a full split is never held
    encoded and decoded at once)."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> tuple[bytes, str]:  # type: ignore[override]
        buffer = io.BytesIO()
        Image.fromarray(self.pixels[index]).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"


class ImageFiles(Sequence[tuple[bytes, str]]):
    """Image files, each read when it is sent (a DR test split is gigabytes of photos)."""

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = tuple(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[bytes, str]:  # type: ignore[override]
        data = self.files[index].read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            return data, Image.MIME.get(image.format or "", "application/octet-stream")


@dataclass(frozen=True)
class TestSet:
    """The test images (encoded when sent), their labels, and where they came from."""

    images: Sequence[tuple[bytes, str]]
    """(file bytes, Content-Type) per image."""
    labels: np.ndarray
    source: str
    total: int
    """Images in the split before ``max_images`` sampling."""

    def __len__(self) -> int:
        return len(self.images)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "split": SPLIT, "images": len(self),
                "split_images": self.total}


def is_dataset(path: Path) -> bool:
    """A file or directory :func:`load_test_split` can read."""
    path = Path(path)
    return path.suffix == ".npz" or any((path / f).is_file() for f in DR_LABEL_FILES)


def _sample(n: int, max_images: int | None, seed: int) -> np.ndarray:
    if max_images is None or n <= max_images:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_images])


def load_test_split(dataset: str, path: Path, max_images: int | None = None, seed: int = 0
                    ) -> TestSet:
    """The test split of ``dataset`` at ``path`` (a seeded subset of ``max_images``)."""
    path = Path(path)
    if path.suffix == ".npz":
        from shared.datasets import DatasetError, load_dataset

        try:
            test = load_dataset(dataset, path, None)[SPLIT]  # type: ignore[arg-type]
        except (DatasetError, OSError, KeyError, ValueError) as exc:
            raise EvalDataError(f"{path}: cannot read the {dataset} test split: {exc}"
                                ) from exc
        if not len(test):
            raise EvalDataError(f"{path}: the {dataset} {SPLIT} split is empty")
        keep = _sample(len(test), max_images, seed)
        return TestSet(EncodedPixels(test.images[keep]), np.asarray(test.labels)[keep],
                       str(path), len(test))
    if is_dataset(path):
        from shared.datasets import DatasetError, index_dr

        try:
            records = [r for r in index_dr(path, write_splits=False) if r.split == SPLIT]
        except (DatasetError, OSError, ValueError) as exc:
            raise EvalDataError(f"{path}: cannot read the DR test split: {exc}") from exc
        if not records:
            raise EvalDataError(f"{path}: the DR dataset has no {SPLIT} images")
        keep = _sample(len(records), max_images, seed)
        chosen = [records[i] for i in keep]
        return TestSet(ImageFiles([r.file for r in chosen]),
                       np.asarray([r.level for r in chosen], dtype=np.int64), str(path),
                       len(records))
    raise EvalDataError(f"{path} is neither a MedMNIST .npz nor a DR dataset directory")


def classify(url: str, images: Sequence[tuple[bytes, str]], class_names: Sequence[str],
             concurrency: int = 4, timeout_s: float = REQUEST_TIMEOUT_S
             ) -> tuple[np.ndarray, list[int]]:
    """(probabilities (N, C) in ``class_names`` order, indices of images without a good
    answer, whose rows are NaN)."""
    client = KeepAliveClient(url, timeout_s)
    probabilities = np.full((len(images), len(class_names)), np.nan)

    def one(index: int) -> bool:
        try:
            body, content_type = images[index]
            status, answer = client.post(PREDICT_PATH, body, {
                "Content-Type": content_type, "Accept": "application/json"})
            if status != 200:
                return False
            by_name = json.loads(answer)["probabilities"]
            probabilities[index] = [float(by_name[name]) for name in class_names]
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            return False
        return True

    pool = ThreadPoolExecutor(max(1, concurrency))
    try:
        answered = list(pool.map(one, range(len(images))))
    finally:  # Ctrl-C: drop the images not yet sent instead of sending them all first
        pool.shutdown(wait=True, cancel_futures=True)
    return probabilities, [i for i, ok in enumerate(answered) if not ok]
