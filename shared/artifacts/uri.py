"""``s3://bucket/prefix`` URIs and the key <-> local path mapping, refusing hostile keys.

Everything that turns a remote key into a local path goes through :func:`local_path`, which
refuses ``..``, absolute paths, empty or dot segments and backslashes, and re-checks that the
resolved path stays inside the destination: a listing can never make us write outside DEST.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import ArtifactError

SCHEME = "s3://"
# S3 bucket naming rules (3-63 chars, lowercase letters, digits, dots, hyphens; alnum ends).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Uri:
    """A bucket and a key prefix without leading/trailing slashes ('' = whole bucket)."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, *parts: str) -> str:
        """The object key of ``parts`` (relative, '/'-separated) under this prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def child(self, relative: str) -> S3Uri:
        """The URI of a sub-prefix."""
        return S3Uri(self.bucket, self.key(relative))

    @property
    def list_prefix(self) -> str:
        """Prefix for ListObjectsV2: ends with '/' so ``models/v1`` never matches ``v10``."""
        return f"{self.prefix}/" if self.prefix else ""

    def relative(self, key: str) -> str:
        """``key`` relative to this prefix (the key must come from a listing of it)."""
        return key[len(self.list_prefix) :]


def is_s3_uri(text: str) -> bool:
    """True for strings starting with ``s3://`` (case-insensitive scheme)."""
    return text[: len(SCHEME)].lower() == SCHEME


def parse_s3_uri(text: str) -> S3Uri:
    """Parse ``s3://bucket[/prefix]``; a bad scheme, bucket name or prefix is an ArtifactError."""
    if not is_s3_uri(text):
        raise ArtifactError(f"not an S3 URI (want s3://bucket/prefix): {text!r}")
    bucket, _, prefix = text[len(SCHEME) :].partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ArtifactError(
            f"invalid bucket name {bucket!r} in {text!r} "
            "(3-63 lowercase letters, digits, '.' or '-')"
        )
    prefix = prefix.strip("/")
    if prefix:
        check_relative_key(prefix, what=f"prefix of {text!r}")
    return S3Uri(bucket, prefix)


def check_relative_key(relative: str, *, what: str = "key") -> str:
    """Refuse a key part that could escape a directory or is not a clean relative path."""
    parts = relative.split("/")
    bad = (
        not relative
        or relative.startswith("/")
        or "\\" in relative
        or "\x00" in relative
        or any(p in ("", ".", "..") for p in parts)
    )
    if bad:
        raise ArtifactError(f"refusing unsafe {what}: {relative!r} (no '..', '.', '//', '\\')")
    return relative


def local_path(dest: Path, relative: str) -> Path:
    """``dest / relative`` after checking ``relative`` is a safe key and stays inside ``dest``."""
    check_relative_key(relative)
    root = Path(dest).resolve()
    target = (root / PurePosixPath(relative)).resolve()
    if not target.is_relative_to(root):
        raise ArtifactError(f"refusing key {relative!r}: it resolves outside {root}")
    return target
