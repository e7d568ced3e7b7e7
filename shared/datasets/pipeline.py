"""The one seeded batch iterator every trainer uses, plus class weights.

Given (seed, epoch) the order is ``np.random.default_rng((seed, epoch)).permutation(N)`` and
example i is augmented with ``np.random.default_rng((seed, epoch, i))`` where i is its index
in the ImageSet, so the batches are identical for torch, TensorFlow and JAX, independent of
batch size, prefetching or thread timing. Batches are normalised with `imaging.normalize`,
the same function the services use, so train and serve preprocessing cannot drift.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from shared import imaging

from .registry import ImageSet


def batch_order(n: int, *, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """Indices in the order one epoch visits them."""
    if shuffle:
        return np.random.default_rng((seed, epoch)).permutation(n)
    return np.arange(n)


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches per epoch for n examples."""
    return n // batch_size if drop_last else -(-n // batch_size)


def _make_batch(
    image_set: ImageSet,
    idx: np.ndarray,
    spec: imaging.PreprocessSpec,
    seed: int,
    epoch: int,
    augment: bool,
) -> tuple[np.ndarray, np.ndarray]:
    images = image_set.images[idx]
    if augment:
        images = np.stack(
            [
                imaging.augment(image, np.random.default_rng((seed, epoch, int(i))))
                for image, i in zip(images, idx, strict=True)
            ]
        )
    x = np.asarray(imaging.normalize(images, spec), dtype=np.float32)
    return x, image_set.labels[idx].astype(np.int64)


def iterate_batches(
    image_set: ImageSet,
    batch_size: int,
    *,
    spec: imaging.PreprocessSpec,
    shuffle: bool,
    seed: int,
    epoch: int,
    augment: bool,
    drop_last: bool = False,
    prefetch: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (float32 NHWC images, int64 labels) batches for one epoch.

    prefetch > 0 prepares that many batches ahead in one background thread (overlapping
    augmentation with the framework's step); the batches are the same either way.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if image_set.image_size != spec.size:
        raise ValueError(
            f"images are {image_set.image_size} px but the preprocess spec wants {spec.size} px; "
            f"load the dataset with image_size={spec.size}"
        )
    order = batch_order(len(image_set), shuffle=shuffle, seed=seed, epoch=epoch)
    chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if drop_last and chunks and len(chunks[-1]) < batch_size:
        chunks.pop()
    if prefetch <= 0:
        for idx in chunks:
            yield _make_batch(image_set, idx, spec, seed, epoch, augment)
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
    pending: deque = deque()
    try:
        for idx in chunks:
            pending.append(pool.submit(_make_batch, image_set, idx, spec, seed, epoch, augment))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse-frequency weights per class, float32, mean 1 over the classes present.

    Absent classes get weight 0 (they never occur in the loss). Used for imbalanced DR,
    where grade 0 is ~73% of the Kaggle data.
    """
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = 1.0 / counts[present]
    if present.any():
        weights[present] /= weights[present].mean()
    return weights.astype(np.float32)
