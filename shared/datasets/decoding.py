"""Image files to arrays for the directory readers (dr, chestxray14, imagefolder), and the
cache of the result.

Decoding thousands of full-size photos or 1024 px radiographs is the slow part of loading, so
files are decoded in a thread pool (Pillow releases the GIL) through the shared imaging path,
and the resized arrays are cached in ``<dir>/.cache/<dataset>_<size>_<hash>.npz``, keyed by
every image's id, label, split and file size/mtime: any change to labels, split or files
makes a new cache (the older one of that size is dropped).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from shared import imaging
from shared.atomic import atomic_path

from .registry import SPLITS, DatasetError

log = logging.getLogger(__name__)

CACHE_DIR = ".cache"
CACHE_VERSION = 1  # bump when decoding/resizing changes, to invalidate old caches
# Local training data is trusted and Kaggle photos reach ~18 MP / ~8 MB: generous limits.
DATASET_LIMITS = imaging.ImageLimits(max_bytes=256 * 2**20, max_pixels=200_000_000)

Entry = tuple[str, str, Path]  # (image id, label as text, file)


def decode_file(file: Path, image_size: int) -> np.ndarray:
    """Decode one image file to an image_size square uint8 array; failures name the file."""
    try:
        data = file.read_bytes()
        image = imaging.decode_image(data, target_size=image_size, limits=DATASET_LIMITS)
        return imaging.to_square_uint8(image, image_size)
    except OSError as exc:
        raise DatasetError(f"{file}: cannot read image ({exc})") from exc
    except imaging.ImageError as exc:
        raise DatasetError(f"{file}: corrupt or unsupported image ({exc})") from exc


def decode_files(files: Sequence[Path], image_size: int, workers: int | None = None) -> np.ndarray:
    """Decode many files in a small thread pool into one (N, S, S, 3) uint8 array."""
    out = np.empty((len(files), image_size, image_size, 3), np.uint8)
    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))
    step = max(1, len(files) // 10)
    try:
        for i, array in enumerate(pool.map(lambda f: decode_file(f, image_size), files)):
            out[i] = array
            if len(files) >= 1000 and (i + 1) % step == 0:
                log.info("decoded %d/%d images", i + 1, len(files))
    finally:  # on a bad file, stop at once instead of decoding the rest
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def cache_path(
    directory: Path, dataset: str, image_size: int, entries: Mapping[str, Sequence[Entry]]
) -> Path:
    """Cache file named by a hash of ids, labels, split and every image file's size and mtime."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}:{image_size}".encode())
    for split, rows in entries.items():
        for image, label, file in rows:
            st = file.stat()
            name = file.relative_to(directory)
            digest.update(
                f"{image},{label},{split},{name},{st.st_size},{st.st_mtime_ns}\n".encode()
            )
    return directory / CACHE_DIR / f"{dataset}_{image_size}_{digest.hexdigest()[:16]}.npz"


def _read_cache(
    path: Path, entries: Mapping[str, Sequence[Entry]], image_size: int
) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning) when unreadable or not matching."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = {s: npz[f"{s}_images"] for s in SPLITS}
            ids = {s: npz[f"{s}_ids"].tolist() for s in SPLITS}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        log.warning("ignoring unreadable cache %s (%s)", path, exc)
        return None
    if any(
        ids[s] != [image for image, _, _ in entries[s]]
        or images[s].shape[1:] != (image_size, image_size, 3)
        for s in SPLITS
    ):
        log.warning("ignoring cache %s: it does not match the labels", path)
        return None
    return images


def _write_cache(
    path: Path, images: Mapping[str, np.ndarray], entries: Mapping[str, Sequence[Entry]]
) -> None:
    """Write the cache atomically and drop older caches of the same size; failure is a warning."""
    arrays = {f"{s}_images": images[s] for s in SPLITS}
    arrays |= {
        f"{s}_ids": np.array([image for image, _, _ in entries[s]], dtype=str) for s in SPLITS
    }
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        for old in path.parent.glob(path.name.rsplit("_", 1)[0] + "_*.npz"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not write cache %s (%s); continuing without it", path, exc)


def cached_images(
    directory: Path,
    dataset: str,
    image_size: int,
    entries: Mapping[str, Sequence[Entry]],
    decode: Callable[[list[Path]], np.ndarray],
    *,
    enabled: bool = True,
) -> dict[str, np.ndarray]:
    """{split: (N, S, S, 3) uint8} for `entries` ({split: [(id, label, file)]}), from the
    cache when it matches, else decoded by `decode(files)` (and cached when `enabled`)."""
    path = cache_path(directory, dataset, image_size, entries) if enabled else None
    images = _read_cache(path, entries, image_size) if path and path.is_file() else None
    if images is None:
        total = sum(len(rows) for rows in entries.values())
        log.info("decoding %d images at %d px from %s", total, image_size, directory)
        images = {s: decode([file for _, _, file in entries[s]]) for s in SPLITS}
        if path:
            _write_cache(path, images, entries)
    return images
