"""Artifact store: model directories and report folders in S3 or any S3-compatible store.

    python -m shared.artifacts push models/ s3://bucket/prefix      (or versus-artifacts)
    python -m shared.artifacts pull s3://bucket/prefix models/
    python -m shared.artifacts ls s3://bucket/prefix
    python -m shared.artifacts upload reports/run-1 s3://bucket/reports/run-1
    python -m shared.artifacts resolve s3://bucket/prefix/<dataset>/<framework>/<version>

Layout: ``s3://bucket/prefix/<dataset>/<framework>/<version>/{model file, manifest.json,
history.jsonl, curves.png}``, mirroring ``models/``. Every model file is checked against
the sha256 in its manifest before it is pushed and after it is pulled; transfers are
idempotent and never leave a half-written file. Endpoint: ``endpoint_url`` / --endpoint-url,
env VERSUS_S3_ENDPOINT_URL, or boto3's AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL.

boto3 (the ``aws`` extra) is imported only when a transfer runs.
"""

from ._s3 import ENDPOINT_ENV, TransferReport, content_type, make_client
from .cache import CACHE_ENV, default_cache_dir, resolve_model_uri
from .errors import ArtifactError
from .store import RemoteModel, list_models, pull, push, upload_tree
from .uri import S3Uri, is_s3_uri, parse_s3_uri

__all__ = [
    "CACHE_ENV",
    "ENDPOINT_ENV",
    "ArtifactError",
    "RemoteModel",
    "S3Uri",
    "TransferReport",
    "content_type",
    "default_cache_dir",
    "is_s3_uri",
    "list_models",
    "make_client",
    "parse_s3_uri",
    "pull",
    "push",
    "resolve_model_uri",
    "upload_tree",
]
