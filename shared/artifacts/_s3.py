"""The boto3 layer: client, error translation, verified single-file upload and download.

boto3 is imported inside functions only, so ``shared`` imports without the ``aws`` extra.
Every botocore/boto3 failure leaves this module as an :class:`ArtifactError` with one line
naming the object (see :func:`s3_errors`).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.manifest import sha256_file

from .errors import ArtifactError

ENDPOINT_ENV = "VERSUS_S3_ENDPOINT_URL"
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256
BIG_FILE_BYTES = 8 * 2**20  # files above this get percentage lines from boto3's Callback
PROGRESS_STEP = 0.1  # one percentage line per 10 %
MAX_MANIFEST_BYTES = 2**20  # a manifest is a few KB; refuse to read megabytes into memory
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".csv": "text/csv; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_CLIENT_ERRORS = {
    "NoSuchBucket": "bucket does not exist",
    "AccessDenied": "access denied (check the credentials and the bucket policy)",
    "403": "access denied (check the credentials and the bucket policy)",
    "InvalidAccessKeyId": "the AWS access key id is not valid for this endpoint",
    "SignatureDoesNotMatch": "the AWS secret key does not match the access key id",
}

Echo = Callable[[str], None]
log = logging.getLogger("shared.artifacts")


# --------------------------------------------------------------------------- client, errors


def make_client(endpoint_url: str | None = None) -> Any:
    """An S3 client. Endpoint: ``endpoint_url``, else env VERSUS_S3_ENDPOINT_URL, else
    boto3's own lookup (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, ~/.aws/config), else AWS.
    Credentials and region come from the usual AWS chain (env, profile, instance role)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ArtifactError("the artifact store needs boto3: pip install 'versus[aws]'") from None
    endpoint = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10)
    with s3_errors(f"S3 client for {endpoint or 'AWS'}"):
        return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def _boto_errors() -> tuple[type[BaseException], ...]:
    """The botocore/boto3 exception bases, or () when boto3 is not installed."""
    try:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (ClientError, BotoCoreError, Boto3Error)


def describe(exc: BaseException) -> str:
    """One line for a botocore/boto3 error: a known S3 error code in words, else its text."""
    response = getattr(exc, "response", None)
    inner = exc.__cause__ or exc.__context__  # boto3 wraps s3transfer/ClientError failures
    if response is None and inner is not None:
        response = getattr(inner, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        if code in _CLIENT_ERRORS:
            return _CLIENT_ERRORS[code]
        if code in _NOT_FOUND:
            return "not found"
        return f"{code}: {error.get('Message') or exc}"
    name = type(exc).__name__
    if name == "NoCredentialsError":
        return "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)"
    return " ".join(str(exc).split())


@contextlib.contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Turn any botocore/boto3 failure inside the block into ``ArtifactError("what: cause")``."""
    try:
        yield
    except _boto_errors() as exc:
        raise ArtifactError(f"{what}: {describe(exc)}") from None


def is_not_found(exc: BaseException) -> bool:
    """True for a 404 / NoSuchKey ClientError."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return str(code) in _NOT_FOUND


def check_bucket(client: Any, bucket: str) -> None:
    """Fail early and clearly when the bucket is missing or not ours (HEAD bucket)."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if is_not_found(exc):
            raise ArtifactError(f"s3://{bucket}: bucket does not exist") from None
        raise ArtifactError(f"s3://{bucket}: {describe(exc)}") from None
    except _boto_errors() as exc:
        raise ArtifactError(f"s3://{bucket}: {describe(exc)}") from None


def head(client: Any, bucket: str, key: str) -> dict | None:
    """HEAD an object: its response, or None when it does not exist."""
    from botocore.exceptions import ClientError

    with s3_errors(f"s3://{bucket}/{key}"):
        try:
            return client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise


def remote_sha256(response: dict | None) -> str | None:
    """The sha256 we stored as object metadata, if any."""
    return (response or {}).get("Metadata", {}).get(SHA256_METADATA)


def content_type(path: Path | str) -> str:
    """Content type for an upload: our table first (report files), then mimetypes."""
    suffix = Path(path).suffix.lower()
    guessed = mimetypes.guess_type(str(path))[0]
    return CONTENT_TYPES.get(suffix) or guessed or "application/octet-stream"


def read_small_object(client: Any, bucket: str, key: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
    """The bytes of a small object (a manifest), refusing anything over ``limit``."""
    with s3_errors(f"s3://{bucket}/{key}"):
        response = client.get_object(Bucket=bucket, Key=key)
        if response["ContentLength"] > limit:
            response["Body"].close()
            raise ArtifactError(
                f"s3://{bucket}/{key}: {response['ContentLength']} bytes, "
                f"more than the {limit} a manifest may have"
            )
        return response["Body"].read()


def list_objects(client: Any, bucket: str, prefix: str) -> dict[str, int]:
    """``{key: size}`` of every object under ``prefix`` (all pages)."""
    found: dict[str, int] = {}
    with s3_errors(f"listing s3://{bucket}/{prefix}"):
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return found


# --------------------------------------------------------------------------- progress


def human_bytes(n: float) -> str:
    """``532 B``, ``12.3 KB``, ``97.8 MB``, ``1.2 GB`` (decimal units, like S3 consoles)."""
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@dataclass
class TransferReport:
    """What a push/pull/upload did: keys or paths transferred and skipped, bytes moved."""

    transferred: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_transferred: int = 0
    bytes_skipped: int = 0

    def summary(self, verb: str) -> str:
        """One closing line, e.g. ``pushed 3 files (110.2 MB), skipped 5 identical``."""
        return (
            f"{verb} {len(self.transferred)} file(s) ({human_bytes(self.bytes_transferred)}), "
            f"skipped {len(self.skipped)} identical ({human_bytes(self.bytes_skipped)})"
        )


class Progress:
    """One line per file (transferred or skipped, size, MB/s), plus percentage lines for big
    files from boto3's transfer Callback (called from its worker threads, hence the lock)."""

    def __init__(self, echo: Echo | None, report: TransferReport | None = None):
        self.echo = echo if echo is not None else log.info
        self.report = report if report is not None else TransferReport()

    def skipped(self, label: str, size: int) -> None:
        """A file left alone because the other side already has it, identical."""
        self.report.skipped.append(label)
        self.report.bytes_skipped += size
        self.echo(f"skipped     {label}  {human_bytes(size)}  (identical)")

    def done(self, verb: str, label: str, size: int, seconds: float | None) -> None:
        """A transferred file; the rate is left out when not measured (in-memory manifest)."""
        self.report.transferred.append(label)
        self.report.bytes_transferred += size
        rate = "" if seconds is None else f"  {human_bytes(size / max(seconds, 1e-6))}/s"
        self.echo(f"{verb:<11} {label}  {human_bytes(size)}{rate}")

    def callback(self, label: str, total: int) -> Callable[[int], None] | None:
        """boto3 ``Callback`` printing every 10 % of a big file; None for small files."""
        if total < BIG_FILE_BYTES:
            return None
        lock, state = threading.Lock(), {"seen": 0, "next": PROGRESS_STEP}

        def on_bytes(n: int) -> None:
            with lock:
                state["seen"] += n
                fraction = state["seen"] / total
                if fraction >= state["next"] and fraction < 1:
                    state["next"] = (int(fraction / PROGRESS_STEP) + 1) * PROGRESS_STEP
                    seen = human_bytes(state["seen"])
                    self.echo(f"  {label}  {fraction:4.0%}  {seen} / {human_bytes(total)}")

        return on_bytes


# --------------------------------------------------------------------------- transfers


def upload_if_changed(
    client: Any, path: Path, bucket: str, key: str, sha256: str, progress: Progress
) -> bool:
    """Upload ``path`` with its sha256 as metadata unless the object already exists with the
    same size and sha256 (HEAD only, nothing downloaded). True when it uploaded."""
    size = path.stat().st_size
    label = f"s3://{bucket}/{key}"
    remote = head(client, bucket, key)
    if remote and remote.get("ContentLength") == size and remote_sha256(remote) == sha256:
        progress.skipped(label, size)
        return False
    extra = {"Metadata": {SHA256_METADATA: sha256}, "ContentType": content_type(path)}
    start = time.monotonic()
    with s3_errors(f"uploading {path} to {label}"):
        client.upload_file(
            str(path), bucket, key, ExtraArgs=extra, Callback=progress.callback(label, size)
        )
    progress.done("uploaded", label, size, time.monotonic() - start)
    return True


def local_matches(path: Path, size: int, sha256: str | None) -> bool:
    """True when ``path`` is a file of ``size`` bytes whose sha256 is ``sha256`` (known)."""
    return (
        sha256 is not None
        and path.is_file()
        and path.stat().st_size == size
        and sha256_file(path) == sha256
    )


def _download_into(client: Any, bucket: str, key: str, fileobj: Any, callback: Any) -> None:
    """Stream one object into an open binary file (boto3 managed, ranged and threaded)."""
    client.download_fileobj(bucket, key, fileobj, Callback=callback)


def check_download(path: Path, label: str, size: int, sha256: str | None) -> None:
    """Refuse a downloaded file whose size or sha256 is not the expected one."""
    actual_size = path.stat().st_size
    if actual_size != size:
        raise ArtifactError(
            f"{label}: partial or corrupt object: expected {size} bytes, got {actual_size}; "
            "nothing was written"
        )
    if sha256 is not None and (actual := sha256_file(path)) != sha256:
        raise ArtifactError(
            f"{label}: corrupt object: expected sha256 {sha256}, actual {actual}; "
            "nothing was written"
        )


def download_verified(
    client: Any,
    bucket: str,
    key: str,
    target: Path,
    *,
    size: int,
    sha256: str | None,
    progress: Progress,
) -> None:
    """Download into ``.<name>.*.part`` beside ``target``, check size and sha256, then
    ``os.replace`` into place; on any failure (corrupt, short, interrupted) the temp file is
    deleted and ``target`` is left as it was."""
    label = f"s3://{bucket}/{key}"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    start = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as f, s3_errors(f"downloading {label}"):
            _download_into(client, bucket, key, f, progress.callback(label, size))
            f.flush()
            os.fsync(f.fileno())
        check_download(tmp, label, size, sha256)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    progress.done("downloaded", label, size, time.monotonic() - start)
