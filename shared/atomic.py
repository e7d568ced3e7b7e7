"""Atomic file writes: a reader sees the old file or the new one, never a half-written one
(splits.csv, decode caches, .npz files, manifests).

Files get the usual mode, ``0o666`` less the umask (0644 under the common umask 022), as
``open()`` would give them. ``tempfile.mkstemp`` would create 0600 files, and a model
directory written by root on the host would then be unreadable to a service container
running as another user (uid 10001).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Mode requested for new files; the kernel applies the process umask to it.
FILE_MODE = 0o666
_NAME_ATTEMPTS = 100


def _create_sibling(path: Path, suffix: str) -> Path:
    """Create a new, empty, hidden sibling ``.<name>.<random><suffix>`` of ``path`` with
    :data:`FILE_MODE` (exclusive create, so no other writer can share it)."""
    for _ in range(_NAME_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name next to {path}")


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path` in one rename.

    For writers that want a path (``np.savez``, ``csv``); the sibling (``.<name>.*<suffix>``,
    hidden, so listings skip it) is removed on failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_sibling(path, suffix)
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
