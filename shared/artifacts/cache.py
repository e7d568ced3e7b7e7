"""``resolve_model_uri``: what a service calls with VERSUS_MODEL_URI.

A local path is returned unchanged; an ``s3://`` model dir is pulled (verified against its
manifest) into a local cache and the cached directory is returned. Several gunicorn workers
starting at once serialise on an ``fcntl`` lock beside the cached dir: the first downloads,
the others then find identical files and download nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._s3 import Echo
from .errors import ArtifactError
from .store import pull
from .uri import is_s3_uri, local_path, parse_s3_uri

CACHE_ENV = "VERSUS_MODEL_CACHE"


def default_cache_dir() -> Path:
    """$VERSUS_MODEL_CACHE, else ``~/.cache/versus/models``."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache/versus/models"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (created if needed) for the duration of the block;
    released by the kernel if the process dies, so a crashed worker never wedges the rest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_stale_parts(directory: Path) -> None:
    """Delete ``.part`` files a killed download left behind (only called under the lock)."""
    if directory.is_dir():
        for stale in directory.rglob(".*.part"):
            stale.unlink(missing_ok=True)


def resolve_model_uri(
    uri: str | os.PathLike[str],
    cache_dir: Path | None = None,
    *,
    endpoint_url: str | None = None,
    client: Any = None,
    echo: Echo | None = None,
) -> Path:
    """The local model directory for ``uri``: a local path as is, or
    ``s3://bucket/prefix/<dataset>/<framework>/<version>`` pulled into
    ``<cache_dir>/<bucket>/<prefix>/...`` (default :func:`default_cache_dir`).

    Raises ArtifactError when the URI is not one model dir, the bucket or object is missing,
    or the model fails its sha256 (nothing half-written is left in the cache)."""
    text = os.fspath(uri)
    if not is_s3_uri(text):
        return Path(text)
    s3 = parse_s3_uri(text)
    if not s3.prefix:
        raise ArtifactError(
            f"{text} names a whole bucket; want s3://bucket/prefix/<dataset>/<framework>/<version>"
        )
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = local_path(root, f"{s3.bucket}/{s3.prefix}")
    with file_lock(target.parent / f".{target.name}.lock"):
        _remove_stale_parts(target)
        pull(s3, target, endpoint_url=endpoint_url, client=client, echo=echo, single=True)
    return target
