"""Push, pull and list model artifacts in S3 (or any S3-compatible store), and upload any
folder (a bench report).

Remote layout mirrors the local one: ``s3://bucket/prefix/<dataset>/<framework>/<version>/
{model file, manifest.json, history.jsonl, curves.png}``.

Ordering makes a half-finished transfer harmless: push uploads the model file first and
``manifest.json`` last, so a reader never sees a manifest whose model is not there; pull
reads the manifest first, downloads the model into a ``.part`` file, verifies size and sha256
against the manifest, renames it into place and writes ``manifest.json`` last. Both are
idempotent: an object whose size and ``x-amz-meta-sha256`` match (HEAD, no download) is not
uploaded again, a local file that matches is not downloaded again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_bytes
from shared.manifest import (
    MANIFEST_FILE,
    Manifest,
    ManifestError,
    read_manifest,
    sha256_file,
    verify_model_file,
)

from ._s3 import (
    Echo,
    Progress,
    TransferReport,
    check_bucket,
    download_verified,
    head,
    list_objects,
    local_matches,
    make_client,
    read_small_object,
    remote_sha256,
    upload_if_changed,
)
from .errors import ArtifactError
from .uri import S3Uri, check_relative_key, local_path, parse_s3_uri

UriLike = str | S3Uri


def _uri(value: UriLike) -> S3Uri:
    return value if isinstance(value, S3Uri) else parse_s3_uri(value)


def _visible_files(root: Path) -> list[Path]:
    """Regular files under ``root``, sorted, skipping hidden names (temp, .part, .lock)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


# --------------------------------------------------------------------------- push


@dataclass(frozen=True)
class LocalModel:
    """A verified local model directory and the key it gets under the destination prefix."""

    directory: Path
    manifest: Manifest
    relative: str  # <dataset>/<framework>/<version>


def find_local_models(src: Path) -> list[LocalModel]:
    """Every model directory under ``src`` (or ``src`` itself), each verified against its
    manifest; a broken one refuses the whole push before anything is uploaded."""
    src = Path(src)
    if not src.is_dir():
        raise ArtifactError(f"not a directory: {src}")
    dirs = (
        [src]
        if (src / MANIFEST_FILE).is_file()
        else [p.parent for p in _visible_files(src) if p.name == MANIFEST_FILE]
    )
    if not dirs:
        raise ArtifactError(f"no model directories (with {MANIFEST_FILE}) under {src}")
    models, seen = [], {}
    for directory in dirs:
        model = _verified_local_model(directory)
        if model.relative in seen:
            raise ArtifactError(
                f"{directory} and {seen[model.relative]} would both go to {model.relative}/"
            )
        seen[model.relative] = directory
        models.append(model)
    return models


def _verified_local_model(directory: Path) -> LocalModel:
    """Read + verify one model dir; its key is <dataset>/<framework>/<dir name> from the
    manifest, so pushing models/, models/<dataset> or one model dir gives the same layout."""
    try:
        manifest = read_manifest(directory)
        verify_model_file(directory, manifest)
    except ManifestError as exc:
        raise ArtifactError(f"refusing to push {directory}: {exc}") from None
    relative = f"{manifest.dataset}/{manifest.framework}/{directory.resolve().name}"
    check_relative_key(relative, what=f"model key from {directory}")
    return LocalModel(directory, manifest, relative)


def _upload_order(model: LocalModel) -> list[Path]:
    """The model file first, then the other files, ``manifest.json`` last."""
    first = model.directory / model.manifest.file_name
    last = model.directory / MANIFEST_FILE
    rest = [p for p in _visible_files(model.directory) if p not in (first, last)]
    return [first, *rest, last]


def push(
    src: Path | str,
    dest: UriLike,
    *,
    endpoint_url: str | None = None,
    client: Any = None,
    echo: Echo | None = None,
) -> TransferReport:
    """Upload every model under ``src`` to ``dest`` (see module docstring); returns what was
    uploaded and skipped. Raises ArtifactError (nothing uploaded) if any model is broken."""
    uri = _uri(dest)
    models = find_local_models(Path(src))
    client = client or make_client(endpoint_url)
    check_bucket(client, uri.bucket)
    progress = Progress(echo)
    for model in models:
        for path in _upload_order(model):
            relative = path.relative_to(model.directory).as_posix()
            sha = model.manifest.sha256 if path.name == model.manifest.file_name else None
            key = uri.key(model.relative, relative)
            upload_if_changed(client, path, uri.bucket, key, sha or sha256_file(path), progress)
    return progress.report


def upload_tree(
    local_dir: Path | str,
    s3_uri: UriLike,
    *,
    endpoint_url: str | None = None,
    client: Any = None,
    echo: Echo | None = None,
) -> TransferReport:
    """Upload every visible file under ``local_dir`` (e.g. bench's report folder) to
    ``s3_uri``, keeping relative paths, with browser-friendly content types (.html, .png,
    .json, .csv, .md); identical objects are skipped. Hidden files are not uploaded."""
    root, uri = Path(local_dir), _uri(s3_uri)
    if not root.is_dir():
        raise ArtifactError(f"not a directory: {root}")
    files = _visible_files(root)
    if not files:
        raise ArtifactError(f"nothing to upload under {root}")
    client = client or make_client(endpoint_url)
    check_bucket(client, uri.bucket)
    progress = Progress(echo)
    for path in files:
        key = uri.key(path.relative_to(root).as_posix())
        upload_if_changed(client, path, uri.bucket, key, sha256_file(path), progress)
    return progress.report


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class RemoteListing:
    """Objects under a prefix as ``{relative key: size}``, and the model dirs among them."""

    uri: S3Uri
    objects: dict[str, int]

    @property
    def model_dirs(self) -> list[str]:
        """Relative dirs holding a manifest.json ('' when the prefix is a model dir itself)."""
        split = (rel.rpartition("/") for rel in self.objects)
        return sorted(directory for directory, _, name in split if name == MANIFEST_FILE)

    def files_of(self, model_dir: str) -> dict[str, int]:
        """``{path inside the model dir: size}`` for keys whose deepest model dir is this one."""
        dirs = self.model_dirs
        owned = {}
        for rel, size in self.objects.items():
            owner = max((d for d in dirs if _is_under(rel, d)), key=len, default=None)
            if owner == model_dir:
                owned[rel[len(model_dir) + 1 :] if model_dir else rel] = size
        return owned


def _is_under(rel: str, directory: str) -> bool:
    return directory == "" or rel.startswith(directory + "/")


def list_remote(client: Any, uri: S3Uri, dest: Path | None = None) -> RemoteListing:
    """List ``uri``; every key must be a safe relative path (and stay inside ``dest`` when
    given) or the whole operation is refused before anything is written."""
    objects = {}
    for key, size in list_objects(client, uri.bucket, uri.list_prefix).items():
        rel = uri.relative(key)
        check_relative_key(rel, what=f"key s3://{uri.bucket}/{key} in the listing")
        if dest is not None:
            local_path(dest, rel)
        objects[rel] = size
    listing = RemoteListing(uri, objects)
    if not listing.model_dirs:
        raise ArtifactError(f"no models ({MANIFEST_FILE}) under {uri}")
    return listing


def read_remote_manifest(client: Any, uri: S3Uri, model_dir: str) -> tuple[Manifest, bytes]:
    """Download and validate ``<model_dir>/manifest.json``: the Manifest and its exact bytes."""
    key = uri.key(model_dir, MANIFEST_FILE)
    raw = read_small_object(client, uri.bucket, key)
    try:
        return Manifest.from_dict(json.loads(raw)), raw
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError and ManifestError
        raise ArtifactError(f"s3://{uri.bucket}/{key}: invalid manifest: {exc}") from None


@dataclass(frozen=True)
class RemoteModel:
    """One model as ``ls`` shows it; ``problem`` says why it would not pull cleanly."""

    relative: str
    manifest: Manifest
    model_size: int | None
    problem: str | None


def list_models(
    uri: UriLike, *, endpoint_url: str | None = None, client: Any = None
) -> list[RemoteModel]:
    """Every model under ``uri`` with its manifest and whether its model object is complete."""
    uri = _uri(uri)
    client = client or make_client(endpoint_url)
    listing = list_remote(client, uri)
    models = []
    for model_dir in listing.model_dirs:
        manifest, _ = read_remote_manifest(client, uri, model_dir)
        size = listing.files_of(model_dir).get(manifest.file_name)
        problem = _size_problem(manifest, size)
        models.append(RemoteModel(model_dir, manifest, size, problem))
    return models


def _size_problem(manifest: Manifest, size: int | None) -> str | None:
    """Why a remote model object cannot match its manifest, judged from the listing."""
    if size is None:
        return f"{manifest.file_name} is missing (interrupted push?)"
    if size != manifest.size_bytes:
        return f"{manifest.file_name} is {size} bytes, its manifest says {manifest.size_bytes}"
    return None


# --------------------------------------------------------------------------- pull


def pull(
    src: UriLike,
    dest: Path | str,
    *,
    endpoint_url: str | None = None,
    client: Any = None,
    echo: Echo | None = None,
    single: bool = False,
) -> TransferReport:
    """Download every model under ``src`` into ``dest`` (mirroring the remote layout; when
    ``src`` is one model dir, ``dest`` becomes that model dir). Every model file is checked
    against its manifest; ``single=True`` requires ``src`` to be exactly one model dir."""
    uri, dest = _uri(src), Path(dest)
    client = client or make_client(endpoint_url)
    listing = list_remote(client, uri, dest)
    if single and listing.model_dirs != [""]:
        raise ArtifactError(
            f"{uri} is not one model directory (found {len(listing.model_dirs)} model(s) "
            "below it); want s3://bucket/prefix/<dataset>/<framework>/<version>"
        )
    progress = Progress(echo)
    for model_dir in listing.model_dirs:
        target = local_path(dest, model_dir) if model_dir else dest
        _pull_model(client, listing, model_dir, target, progress)
    return progress.report


def _pull_model(
    client: Any, listing: RemoteListing, model_dir: str, target: Path, progress: Progress
) -> None:
    """Manifest first (in memory), model file verified against it, other files, then the
    manifest written last; a stale local manifest is removed before its model changes."""
    uri = listing.uri
    manifest, raw = read_remote_manifest(client, uri, model_dir)
    files = listing.files_of(model_dir)
    problem = _size_problem(manifest, files.get(manifest.file_name))
    if problem:
        key = uri.key(model_dir, manifest.file_name)
        raise ArtifactError(f"s3://{uri.bucket}/{key}: partial or corrupt model: {problem}")
    target.mkdir(parents=True, exist_ok=True)
    local_manifest = target / MANIFEST_FILE
    if local_manifest.is_file() and local_manifest.read_bytes() != raw:
        local_manifest.unlink()  # never leave an old manifest beside a new model
    model = (manifest.file_name, manifest.size_bytes, manifest.sha256)
    _fetch(client, uri, model_dir, target, *model, progress)
    for name, size in sorted(files.items()):
        if name not in (MANIFEST_FILE, manifest.file_name):
            _fetch(client, uri, model_dir, target, name, size, None, progress)
    label = f"s3://{uri.bucket}/{uri.key(model_dir, MANIFEST_FILE)}"
    _write_manifest_bytes(local_manifest, raw, label, progress)


def _fetch(
    client: Any,
    uri: S3Uri,
    model_dir: str,
    target: Path,
    name: str,
    size: int,
    sha256: str | None,
    progress: Progress,
) -> None:
    """Download one file unless the local copy matches; without a manifest sha256 (history,
    curves) the sha256 stored as object metadata by push is used, found with a HEAD."""
    key = uri.key(model_dir, name)
    path = local_path(target, name)
    label = f"s3://{uri.bucket}/{key}"
    if sha256 is None:
        sha256 = remote_sha256(head(client, uri.bucket, key))
    if local_matches(path, size, sha256):
        progress.skipped(label, size)
        return
    download_verified(client, uri.bucket, key, path, size=size, sha256=sha256, progress=progress)


def _write_manifest_bytes(path: Path, raw: bytes, label: str, progress: Progress) -> None:
    """Write the remote manifest bytes atomically (unless identical): the last step of a pull."""
    if path.is_file() and path.read_bytes() == raw:
        progress.skipped(label, len(raw))
        return
    atomic_write_bytes(path, raw, suffix=".part")  # .part: what the cache sweeps after a kill
    progress.done("downloaded", label, len(raw), None)
