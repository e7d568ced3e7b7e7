"""Atomic file writes: a reader sees the old file or the new one, never a half-written one
(splits.csv, decode caches, .npz files, manifests)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path` in one rename.

    For writers that want a path (``np.savez``, ``csv``); the sibling (``.<name>.*<suffix>``,
    hidden, so listings skip it) is removed on failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes, suffix: str = ".tmp") -> None:
    """Write `data` to `path` atomically and durably (fsync before the rename)."""
    with atomic_path(path, suffix) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
