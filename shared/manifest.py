"""The model manifest: ``models/<dataset>/<framework>/<version>/manifest.json``.

The manifest is the single source of truth a service needs to load and serve a model: task,
class names, framework, input preprocessing, and the sha256 + size of the native model file
(a model whose file does not match its manifest is refused). Like Triton's model repository
config, it is validated field by field on read, so a broken artifact fails at load time with
an error naming the file and the field, not with a shape error deep inside a framework.

Artifact layout: ``<model_dir>/{<native file>, manifest.json, history.jsonl, curves.png}``;
the native file of each artifact kind (``framework``) is in :data:`shared.runtimes.ARTIFACTS`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_bytes
from shared.imaging import WHOLE_IMAGE, FieldOfView
from shared.runtimes import ARTIFACTS

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
FRAMEWORKS = tuple(ARTIFACTS)
"""Who may have written an artifact: the artifact kinds of :mod:`shared.runtimes`."""
TASKS = ("multiclass", "multilabel")
DEFAULT_THRESHOLD = 0.5
"""A multilabel finding's decision threshold when the manifest names none."""
LAYOUTS = ("NHWC",)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK_BYTES = 1 << 20


class ManifestError(ValueError):
    """An invalid, unreadable or mismatching manifest; names the file and the field."""

    def __init__(self, message: str, *, field: str | None = None, path: Path | str | None = None):
        self.message = message
        self.field = field
        self.path = Path(path) if path is not None else None
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path is not None else ""
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}{what}{self.message}"

    def at(self, path: Path | str) -> ManifestError:
        """The same error, naming ``path`` as the offending file (keeps an existing path)."""
        return (
            self
            if self.path is not None
            else ManifestError(self.message, field=self.field, path=path)
        )


# --------------------------------------------------------------------------- field checks


def _type_name(value: Any) -> str:
    """JSON-ish type name of a value, for error messages."""
    return type(value).__name__


def _int(name: str, value: Any, minimum: int = 0) -> int:
    """A real int (bools refused) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(f"expected an integer, got {_type_name(value)} {value!r}", field=name)
    if value < minimum:
        raise ManifestError(f"must be >= {minimum}, got {value}", field=name)
    return value


def _number(name: str, value: Any) -> float:
    """A finite int or float (bools refused), returned as float."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ManifestError(f"expected a finite number, got {value!r}", field=name)
    return float(value)


def _str(name: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise ManifestError(f"expected a string, got {_type_name(value)} {value!r}", field=name)
    if not value.strip():
        raise ManifestError("must not be empty", field=name)
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...], what: str) -> str:
    """A string from ``choices``."""
    if _str(name, value) not in choices:
        raise ManifestError(f"unknown {what} {value!r}; expected one of {choices}", field=name)
    return value


def _json_dict(name: str, value: Any) -> dict:
    """A dict with string keys that serialises to strict JSON (no NaN/inf, no objects)."""
    if not isinstance(value, dict):
        raise ManifestError(f"expected an object, got {_type_name(value)}", field=name)
    try:
        json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"not strict-JSON serialisable: {exc}", field=name) from exc
    return value


def _float_triple(name: str, value: Any) -> list[float]:
    """A list/tuple of exactly 3 finite numbers (one per RGB channel), as list[float]."""
    if not isinstance(value, list | tuple):
        raise ManifestError(f"expected a list of 3 numbers, got {_type_name(value)}", field=name)
    if len(value) != 3:
        raise ManifestError(f"expected 3 values (R, G, B), got {len(value)}", field=name)
    return [_number(f"{name}[{i}]", v) for i, v in enumerate(value)]


def _class_names(value: Any, task: str) -> list[str]:
    """Unique non-empty strings; >= 2 for multiclass, >= 1 for multilabel."""
    if not isinstance(value, list | tuple):
        raise ManifestError(
            f"expected a list of strings, got {_type_name(value)}", field="class_names"
        )
    names = [_str(f"class_names[{i}]", v) for i, v in enumerate(value)]
    minimum = 2 if task == "multiclass" else 1
    if len(names) < minimum:
        raise ManifestError(
            f"a {task} model needs >= {minimum} classes, got {len(names)}", field="class_names"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ManifestError(f"duplicate class names {duplicates}", field="class_names")
    return names


def _file_name(value: Any) -> str:
    """A bare file name inside the model directory (no directories, no '..')."""
    name = _str("file_name", value)
    if Path(name).name != name or name in (".", "..") or "\\" in name:
        raise ManifestError(
            f"must be a bare file name in the model directory, got {name!r}", field="file_name"
        )
    if name == MANIFEST_FILE:
        raise ManifestError(f"cannot be {MANIFEST_FILE!r}", field="file_name")
    return name


def _sha256(value: Any) -> str:
    """64 lowercase hex digits."""
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise ManifestError(f"expected 64 lowercase hex digits, got {value!r}", field="sha256")
    return value


def _created_at(value: Any) -> str:
    """An ISO 8601 timestamp with a UTC offset of zero (e.g. 2025-01-31T12:00:00Z)."""
    text = _str("created_at", value)
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ManifestError(f"not an ISO 8601 timestamp: {text!r}", field="created_at") from exc
    if stamp.utcoffset() is None or stamp.utcoffset().total_seconds() != 0:
        raise ManifestError(f"must be UTC (suffix Z or +00:00), got {text!r}", field="created_at")
    return text


def _field_of_view(value: Any) -> FieldOfView:
    """``input.raw_capture``: a FieldOfView, or its JSON object with exactly its fields."""
    if isinstance(value, FieldOfView):
        return value
    prefix = "input.raw_capture."
    fields = _checked_fields(value, FieldOfView, prefix=prefix)
    if "centre_crop" in fields:
        _number(prefix + "centre_crop", fields["centre_crop"])
    if not isinstance(fields.get("capture", ""), str):
        raise ManifestError(f"expected a string, got {fields['capture']!r}",
                            field=prefix + "capture")
    try:
        return FieldOfView(**fields)
    except ValueError as exc:
        raise ManifestError(str(exc), field=prefix + "centre_crop") from None


def utc_now_iso() -> str:
    """Current time as ISO 8601 UTC with a Z suffix, second resolution."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_TRAINING_CHECKS = {
    "epochs": lambda n, v: _int(n, v, 0),
    "seed": lambda n, v: _int(n, v, 0),
    "seconds_per_epoch": _number,
    "images_per_second": _number,
    "init": _str,
}


def _training(value: Any) -> dict:
    """Free-form training summary; the keys the report relies on are type-checked if present."""
    summary = _json_dict("training", value)
    for key, check in _TRAINING_CHECKS.items():
        if key in summary and summary[key] is not None:
            check(f"training.{key}", summary[key])
    return summary


# --------------------------------------------------------------------------- dataclasses


@dataclass(kw_only=True)
class InputSpec:
    """How a service turns an image into the model input: square ``size`` px, NHWC float32,
    ``(x / 255 - mean) / std`` per RGB channel (mean/std on the 0..1 scale).

    ``raw_capture`` (the dataset's :class:`~shared.imaging.FieldOfView`) is applied to raw
    uploads before that; a manifest written before it existed means the whole image, which
    is what services did then."""

    size: int
    layout: str = "NHWC"
    mean: list[float]
    std: list[float]
    raw_capture: FieldOfView = WHOLE_IMAGE

    def __post_init__(self) -> None:
        """Validate on construction."""
        self.validate()

    def validate(self) -> None:
        """Raise ManifestError naming the first invalid ``input.*`` field; tuples -> lists."""
        _int("input.size", self.size, 1)
        _choice("input.layout", self.layout, LAYOUTS, "layout")
        self.mean = _float_triple("input.mean", self.mean)
        self.std = _float_triple("input.std", self.std)
        for i, s in enumerate(self.std):
            if s <= 0:
                raise ManifestError(f"must be > 0, got {s}", field=f"input.std[{i}]")
        self.raw_capture = _field_of_view(self.raw_capture)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> InputSpec:
        """Build from a parsed JSON object, with errors naming the ``input.*`` field."""
        return cls(**_checked_fields(d, cls, prefix="input."))


@dataclass(kw_only=True)
class Manifest:
    """Everything a service needs about one model artifact (see module docstring)."""

    schema_version: int = SCHEMA_VERSION
    dataset: str
    task: str
    class_names: list[str]
    framework: str
    framework_version: str
    architecture: dict[str, Any]
    input: InputSpec
    parameter_count: int
    file_name: str
    sha256: str
    size_bytes: int
    training: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    thresholds: list[float] = field(default_factory=list)
    """multilabel only: one decision threshold in [0, 1] per class, in class order (chosen on
    validation by training); empty means :data:`DEFAULT_THRESHOLD` for every class."""
    created_at: str = field(default_factory=utc_now_iso)
    provenance: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate every field; a dict ``input`` is converted to InputSpec."""
        if isinstance(self.input, dict):
            self.input = InputSpec.from_dict(self.input)
        self.validate()

    def validate(self) -> None:
        """Raise ManifestError naming the first invalid field."""
        _validate_header(self)
        _validate_payload(self)
        _validate_class_count(self)
        _validate_thresholds(self)

    @property
    def num_classes(self) -> int:
        """Number of output classes (= probability columns)."""
        return len(self.class_names)

    @property
    def decision_thresholds(self) -> list[float]:
        """Each class's decision threshold: ``thresholds``, else 0.5 each (multilabel)."""
        return list(self.thresholds) or [DEFAULT_THRESHOLD] * self.num_classes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (``input`` nested as an object)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Build and validate from a parsed JSON object; unknown fields are refused."""
        if not isinstance(d, dict):
            raise ManifestError(f"top level must be a JSON object, got {_type_name(d)}")
        version = d.get("schema_version")
        if version is not None and version != SCHEMA_VERSION:
            raise ManifestError(
                f"unknown schema version {version!r}; this code reads version {SCHEMA_VERSION}",
                field="schema_version",
            )
        return cls(**_checked_fields(d, cls))

    @classmethod
    def for_model_file(cls, model_dir: Path | str, file_name: str, **fields: Any) -> Manifest:
        """Manifest for an existing model file: fills sha256, size_bytes and created_at.

        ``created_at`` may be passed explicitly (e.g. to copy a source model's); sha256 and
        size_bytes may not, since they must describe the file as it is now.
        """
        for computed in ("sha256", "size_bytes"):
            if computed in fields:
                raise TypeError(f"for_model_file computes {computed!r}; do not pass it")
        path = Path(model_dir) / _file_name(file_name)
        if not path.is_file():
            raise ManifestError(f"model file not found: {path}", field="file_name")
        fields.setdefault("created_at", utc_now_iso())
        return cls(
            file_name=file_name, sha256=sha256_file(path), size_bytes=path.stat().st_size, **fields
        )


def _checked_fields(d: Any, cls: type, prefix: str = "") -> dict[str, Any]:
    """Check an object has every required field of dataclass ``cls`` and no unknown ones."""
    if not isinstance(d, dict):
        raise ManifestError(f"expected an object, got {_type_name(d)}", field=prefix.rstrip("."))
    known = {f.name: f for f in dataclasses.fields(cls)}
    required = [
        name
        for name, f in known.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in d]
    if missing:
        raise ManifestError("missing required field", field=prefix + missing[0])
    unknown = sorted(k for k in d if k not in known)
    if unknown:
        raise ManifestError(
            f"unknown field(s) {unknown}; put additions under 'extras'", field=prefix + unknown[0]
        )
    return dict(d)


def _validate_header(m: Manifest) -> None:
    """Schema version, identity and file fields."""
    if _int("schema_version", m.schema_version, 1) != SCHEMA_VERSION:
        raise ManifestError(
            f"unknown schema version {m.schema_version}; this code reads version {SCHEMA_VERSION}",
            field="schema_version",
        )
    _str("dataset", m.dataset)
    _choice("task", m.task, TASKS, "task")
    m.class_names = _class_names(m.class_names, m.task)
    _choice("framework", m.framework, FRAMEWORKS, "framework")
    _str("framework_version", m.framework_version)
    _file_name(m.file_name)
    _sha256(m.sha256)
    _int("size_bytes", m.size_bytes, 0)
    _created_at(m.created_at)


def _validate_payload(m: Manifest) -> None:
    """Architecture, input, counts and the free-form dict fields."""
    _json_dict("architecture", m.architecture)
    if "name" not in m.architecture:
        raise ManifestError("missing required field", field="architecture.name")
    _str("architecture.name", m.architecture["name"])
    if not isinstance(m.input, InputSpec):
        raise ManifestError(
            f"expected an object (or InputSpec), got {_type_name(m.input)}", field="input"
        )
    m.input.validate()
    _int("parameter_count", m.parameter_count, 1)
    _training(m.training)
    _json_dict("test_metrics", m.test_metrics)
    _json_dict("provenance", m.provenance)
    _json_dict("extras", m.extras)


def _validate_class_count(m: Manifest) -> None:
    """Every field that implies a class count must agree with len(class_names)."""
    n = len(m.class_names)
    counts = {
        "architecture.num_classes": m.architecture.get("num_classes"),
        "extras.num_classes": m.extras.get("num_classes"),
    }
    for name, value in counts.items():
        if value is not None and _int(name, value, 1) != n:
            raise ManifestError(f"{value} != len(class_names) = {n}", field=name)
    _validate_metric_classes(m.test_metrics, m.class_names)


def _validate_metric_classes(metrics: dict, names: list[str]) -> None:
    """Per-class parts of test_metrics (shared.metrics.evaluate output) must match names."""
    n = len(names)
    cm = metrics.get("confusion_matrix")
    if cm is not None and (
        not isinstance(cm, list)
        or len(cm) != n
        or any(not isinstance(row, list) or len(row) != n for row in cm)
    ):
        raise ManifestError(
            f"must be {n} x {n} for {n} class names", field="test_metrics.confusion_matrix"
        )
    rows = metrics.get("per_class")
    if rows is not None and (
        not isinstance(rows, list)
        or [r.get("name") if isinstance(r, dict) else r for r in rows] != names
    ):
        raise ManifestError(
            f"must list one entry per class, named {names}", field="test_metrics.per_class"
        )
    aucs = metrics.get("auc_per_class")
    if aucs is not None and (not isinstance(aucs, dict) or sorted(aucs) != sorted(names)):
        raise ManifestError(
            f"keys must be the class names {names}", field="test_metrics.auc_per_class"
        )


def _validate_thresholds(m: Manifest) -> None:
    """``thresholds``: empty, or (multilabel only) one number in [0, 1] per class name."""
    if not isinstance(m.thresholds, list | tuple):
        raise ManifestError(f"expected a list of numbers, got {_type_name(m.thresholds)}",
                            field="thresholds")
    if not m.thresholds:
        m.thresholds = []
        return
    if m.task != "multilabel":
        raise ManifestError(f"only a multilabel model has decision thresholds, not a {m.task} "
                            "one", field="thresholds")
    if len(m.thresholds) != len(m.class_names):
        raise ManifestError(f"expected one per class ({len(m.class_names)}), got "
                            f"{len(m.thresholds)}", field="thresholds")
    values = [_number(f"thresholds[{i}]", v) for i, v in enumerate(m.thresholds)]
    for i, value in enumerate(values):
        if not 0.0 <= value <= 1.0:
            raise ManifestError(f"must be in [0, 1], got {value}", field=f"thresholds[{i}]")
    m.thresholds = values


# --------------------------------------------------------------------------- files


def manifest_path(model_dir: Path | str) -> Path:
    """``<model_dir>/manifest.json``."""
    return Path(model_dir) / MANIFEST_FILE


def write_manifest(model_dir: Path | str, manifest: Manifest) -> Path:
    """Validate and write ``manifest.json`` atomically (temp file + fsync + os.replace).

    Pretty-printed with sorted keys and a trailing newline, so identical manifests are
    byte-identical and diffs are readable. Creates ``model_dir`` if needed; returns the path.
    """
    path = manifest_path(model_dir)
    try:
        manifest.validate()
        text = json.dumps(manifest.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ManifestError as exc:
        raise exc.at(path) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def read_manifest(model_dir: Path | str) -> Manifest:
    """Read and validate ``<model_dir>/manifest.json``; any problem is a ManifestError
    naming the file and the field (missing file, JSON syntax, missing/invalid/unknown field,
    unknown schema version or framework, inconsistent class count)."""
    path = manifest_path(model_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError("manifest file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest: {exc}", path=path) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", path=path
        ) from None
    try:
        return Manifest.from_dict(data)
    except ManifestError as exc:
        raise exc.at(path) from None


def sha256_file(path: Path | str, chunk_size: int = _CHUNK_BYTES) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB models never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model_file(model_dir: Path | str, manifest: Manifest) -> Path:
    """Path of the manifest's model file after checking it exists and matches size and sha256.

    Size is checked first (free), then the hash; a mismatch is a ManifestError showing the
    expected and actual values, so a truncated upload or a swapped file is refused.
    """
    path = Path(model_dir) / _file_name(manifest.file_name)
    mpath = manifest_path(model_dir)
    if not path.is_file():
        raise ManifestError(f"model file not found: {path}", field="file_name", path=mpath)
    size = path.stat().st_size
    if size != manifest.size_bytes:
        raise ManifestError(
            f"{path.name} size mismatch: expected {manifest.size_bytes} bytes, actual {size}",
            field="size_bytes",
            path=mpath,
        )
    actual = sha256_file(path)
    if actual != manifest.sha256:
        raise ManifestError(
            f"{path.name} sha256 mismatch: expected {manifest.sha256}, actual {actual}",
            field="sha256",
            path=mpath,
        )
    return path
