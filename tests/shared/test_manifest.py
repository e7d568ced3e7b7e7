"""shared.manifest: round trip, validation of every malformed case, file verification."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

import shared.atomic
from shared import manifest as mf
from shared.manifest import InputSpec, Manifest, ManifestError

CLASSES = ["0", "1", "2", "3", "4"]


def _fields() -> dict:
    """Constructor fields for a valid DR torch manifest (file fields excluded)."""
    return {
        "dataset": "dr",
        "task": "multiclass",
        "class_names": list(CLASSES),
        "framework": "torch",
        "framework_version": "2.5.1",
        "architecture": {"name": "resnet50", "stage_sizes": [3, 4, 6, 3], "num_classes": 5},
        "input": InputSpec(size=64, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        "parameter_count": 23_518_277,
        "training": {
            "epochs": 2,
            "seconds_per_epoch": 1.5,
            "images_per_second": 80.0,
            "seed": 0,
            "init": "scratch",
        },
        "test_metrics": {
            "qwk": 0.5,
            "accuracy": 0.6,
            "macro_auc": None,
            "confusion_matrix": [[0] * 5 for _ in range(5)],
        },
        "provenance": {"git_commit": "abc"},
    }


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory holding a small fake model.pt."""
    d = tmp_path / "models" / "dr" / "torch" / "1"
    d.mkdir(parents=True)
    (d / "model.pt").write_bytes(b"weights" * 1000)
    return d


@pytest.fixture
def manifest(model_dir: Path) -> Manifest:
    return Manifest.for_model_file(model_dir, "model.pt", **_fields())


def _write_raw(model_dir: Path, data: dict) -> None:
    (model_dir / "manifest.json").write_text(json.dumps(data))


# --------------------------------------------------------------------------- happy path


def test_round_trip(model_dir: Path, manifest: Manifest) -> None:
    path = mf.write_manifest(model_dir, manifest)
    assert path == model_dir / "manifest.json"
    back = mf.read_manifest(model_dir)
    assert back == manifest
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    assert back.num_classes == 5 and back.input.layout == "NHWC"
    assert mf.verify_model_file(model_dir, back) == model_dir / "model.pt"


def test_for_model_file_fills_file_fields(model_dir: Path, manifest: Manifest) -> None:
    data = (model_dir / "model.pt").read_bytes()
    assert manifest.sha256 == hashlib.sha256(data).hexdigest()
    assert manifest.size_bytes == len(data)
    assert manifest.created_at.endswith("Z") and manifest.schema_version == mf.SCHEMA_VERSION


def test_for_model_file_refuses_missing_file_and_computed_fields(model_dir: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        Manifest.for_model_file(model_dir, "absent.pt", **_fields())
    with pytest.raises(TypeError, match="sha256"):
        Manifest.for_model_file(model_dir, "model.pt", sha256="0" * 64, **_fields())


def test_written_file_is_pretty_sorted_and_stable(model_dir: Path, manifest: Manifest) -> None:
    mf.write_manifest(model_dir, manifest)
    first = (model_dir / "manifest.json").read_text()
    mf.write_manifest(model_dir, mf.read_manifest(model_dir))
    assert (model_dir / "manifest.json").read_text() == first
    assert first.endswith("}\n") and '\n  "architecture": {' in first
    keys = list(json.loads(first))
    assert keys == sorted(keys)


def test_atomic_write_leaves_no_temp_file(model_dir: Path, manifest: Manifest) -> None:
    mf.write_manifest(model_dir, manifest)
    mf.write_manifest(model_dir, manifest)
    assert sorted(p.name for p in model_dir.iterdir()) == ["manifest.json", "model.pt"]


def test_failed_write_keeps_old_manifest_and_no_temp(
    model_dir: Path, manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    mf.write_manifest(model_dir, manifest)
    before = (model_dir / "manifest.json").read_text()

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shared.atomic.os, "replace", boom)
    changed = copy.deepcopy(manifest)
    changed.dataset = "other"
    with pytest.raises(OSError, match="disk full"):
        mf.write_manifest(model_dir, changed)
    assert (model_dir / "manifest.json").read_text() == before
    assert sorted(p.name for p in model_dir.iterdir()) == ["manifest.json", "model.pt"]


def test_write_refuses_invalid_manifest(model_dir: Path, manifest: Manifest) -> None:
    manifest.input.std = [0.2, 0.0, 0.2]
    with pytest.raises(ManifestError, match=r"manifest\.json.*input\.std\[1\]"):
        mf.write_manifest(model_dir, manifest)
    assert not (model_dir / "manifest.json").exists()


def test_sha256_file_streams_in_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert mf.sha256_file(tmp_path / "f", chunk_size=7) == expected
    assert mf.sha256_file(str(tmp_path / "f")) == expected


def test_input_spec_accepts_tuples_and_builds_from_dict() -> None:
    spec = InputSpec(size=32, mean=(0.5, 0.5, 0.5), std=(1, 1, 1))
    assert spec.mean == [0.5, 0.5, 0.5] and spec.std == [1.0, 1.0, 1.0]
    assert InputSpec.from_dict(spec.to_dict()) == spec


def test_multilabel_with_one_label_is_valid(model_dir: Path) -> None:
    fields = _fields() | {
        "task": "multilabel",
        "class_names": ["effusion"],
        "architecture": {"name": "resnet50"},
        "test_metrics": {},
    }
    m = Manifest.for_model_file(model_dir, "model.pt", **fields)
    assert Manifest.from_dict(m.to_dict()) == m


def _multilabel(model_dir: Path, **changes) -> dict:
    fields = _fields() | {"task": "multilabel", "class_names": ["effusion", "mass", "nodule"],
                          "architecture": {"name": "resnet50"}, "test_metrics": {}}
    return Manifest.for_model_file(model_dir, "model.pt", **fields).to_dict() | changes


def test_multilabel_thresholds_round_trip(model_dir: Path) -> None:
    data = _multilabel(model_dir, thresholds=[0.25, 1, 0.0])
    _write_raw(model_dir, data)
    m = mf.read_manifest(model_dir)
    assert m.thresholds == [0.25, 1.0, 0.0] and m.decision_thresholds == [0.25, 1.0, 0.0]
    del data["thresholds"]  # a manifest written before the field existed
    _write_raw(model_dir, data)
    assert mf.read_manifest(model_dir).decision_thresholds == [0.5, 0.5, 0.5]


BAD_THRESHOLDS = [
    ([0.5, 0.5], "thresholds", "one per class (3)"),
    ([0.5, 1.5, 0.5], "thresholds[1]", "in [0, 1]"),
    ([0.5, -0.1, 0.5], "thresholds[1]", "in [0, 1]"),
    ([0.5, "high", 0.5], "thresholds[1]", "finite number"),
    ([0.5, None, 0.5], "thresholds[1]", "finite number"),
    ([0.5, True, 0.5], "thresholds[1]", "finite number"),
    ({"effusion": 0.5}, "thresholds", "expected a list"),
    (0.5, "thresholds", "expected a list"),
]


@pytest.mark.parametrize(("value", "field", "fragment"), BAD_THRESHOLDS)
def test_malformed_thresholds_name_file_and_field(model_dir: Path, value, field: str,
                                                  fragment: str) -> None:
    _write_raw(model_dir, _multilabel(model_dir, thresholds=value))
    with pytest.raises(ManifestError) as info:
        mf.read_manifest(model_dir)
    assert info.value.field == field and fragment in str(info.value)
    assert info.value.path == model_dir / "manifest.json"


def test_multiclass_manifest_refuses_thresholds(model_dir: Path, manifest: Manifest) -> None:
    data = manifest.to_dict() | {"thresholds": [0.5] * manifest.num_classes}
    _write_raw(model_dir, data)
    with pytest.raises(ManifestError, match="only a multilabel model") as info:
        mf.read_manifest(model_dir)
    assert info.value.field == "thresholds"


# --------------------------------------------------------------------------- read errors


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest file not found") as info:
        mf.read_manifest(tmp_path)
    assert info.value.path == tmp_path / "manifest.json"


def test_json_syntax_error_names_file_and_position(model_dir: Path) -> None:
    (model_dir / "manifest.json").write_text('{"dataset": "dr",\n  oops}')
    with pytest.raises(ManifestError, match=r"manifest\.json: invalid JSON at line 2"):
        mf.read_manifest(model_dir)


def test_top_level_not_object(model_dir: Path) -> None:
    (model_dir / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="JSON object"):
        mf.read_manifest(model_dir)


def _set(d: dict, dotted: str, value) -> None:
    """Set d['a']['b'] for dotted 'a.b'; value _DELETE removes the key."""
    *parents, last = dotted.split(".")
    for key in parents:
        d = d[key]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()

MALFORMED = [
    # (dotted key, value, field named in the error, message fragment)
    ("dataset", _DELETE, "dataset", "missing required field"),
    ("sha256", _DELETE, "sha256", "missing required field"),
    ("input", _DELETE, "input", "missing required field"),
    ("input.std", _DELETE, "input.std", "missing required field"),
    ("architecture.name", _DELETE, "architecture.name", "missing required field"),
    ("colour", "blue", "colour", "unknown field"),
    ("input.channels", 3, "input.channels", "unknown field"),
    ("schema_version", 2, "schema_version", "unknown schema version 2"),
    ("schema_version", "1", "schema_version", "unknown schema version"),
    ("framework", "mxnet", "framework", "unknown framework 'mxnet'"),
    ("task", "regression", "task", "unknown task"),
    ("dataset", 5, "dataset", "expected a string"),
    ("dataset", "", "dataset", "must not be empty"),
    ("framework_version", None, "framework_version", "expected a string"),
    ("parameter_count", "23M", "parameter_count", "expected an integer"),
    ("parameter_count", 1.5, "parameter_count", "expected an integer"),
    ("parameter_count", True, "parameter_count", "expected an integer"),
    ("size_bytes", -1, "size_bytes", ">= 0"),
    ("class_names", "0,1,2", "class_names", "expected a list"),
    ("class_names", ["a", 1], "class_names[1]", "expected a string"),
    ("class_names", ["a", "a"], "class_names", "duplicate"),
    ("class_names", ["only"], "class_names", ">= 2 classes"),
    ("class_names", ["a", "b", "c"], "architecture.num_classes", "5 != len(class_names) = 3"),
    ("test_metrics.confusion_matrix", [[1, 0], [0, 1]], "test_metrics.confusion_matrix", "5 x 5"),
    ("test_metrics.per_class", [{"name": "0"}], "test_metrics.per_class", "one entry per class"),
    ("test_metrics.auc_per_class", {"0": 0.5}, "test_metrics.auc_per_class", "class names"),
    ("extras", {"num_classes": 4}, "extras.num_classes", "4 != len"),
    ("architecture", "resnet50", "architecture", "expected an object"),
    ("training", [], "training", "expected an object"),
    ("training.epochs", "two", "training.epochs", "expected an integer"),
    ("training.images_per_second", "fast", "training.images_per_second", "finite number"),
    ("provenance", None, "provenance", "expected an object"),
    ("input", [64], "input", "expected an object"),
    ("input.size", 0, "input.size", ">= 1"),
    ("input.size", 64.0, "input.size", "expected an integer"),
    ("input.layout", "NCHW", "input.layout", "unknown layout 'NCHW'"),
    ("input.mean", [0.5, 0.5], "input.mean", "expected 3 values"),
    ("input.mean", 0.5, "input.mean", "expected a list"),
    ("input.mean", [0.5, "x", 0.5], "input.mean[1]", "finite number"),
    ("input.std", [0.2, 0.2, 0.2, 0.2], "input.std", "expected 3 values"),
    ("input.std", [0.2, 0.0, 0.2], "input.std[1]", "must be > 0"),
    ("input.std", [0.2, -1, 0.2], "input.std[1]", "must be > 0"),
    ("sha256", "ABC", "sha256", "64 lowercase hex"),
    ("file_name", "../model.pt", "file_name", "bare file name"),
    ("file_name", "manifest.json", "file_name", "cannot be"),
    ("created_at", "yesterday", "created_at", "ISO 8601"),
    ("created_at", "2025-01-31T12:00:00+02:00", "created_at", "must be UTC"),
    ("created_at", "2025-01-31T12:00:00", "created_at", "must be UTC"),
]


@pytest.mark.parametrize(
    ("key", "value", "field", "fragment"),
    MALFORMED,
    ids=[f"{k}={v!r}"[:60] for k, v, _, _ in MALFORMED],
)
def test_malformed_manifest_names_file_and_field(
    model_dir: Path, manifest: Manifest, key: str, value, field: str, fragment: str
) -> None:
    data = manifest.to_dict()
    _set(data, key, value)
    _write_raw(model_dir, data)
    with pytest.raises(ManifestError) as info:
        mf.read_manifest(model_dir)
    err = info.value
    assert err.field == field
    assert err.path == model_dir / "manifest.json"
    assert fragment in str(err)
    assert str(model_dir / "manifest.json") in str(err) and repr(field) in str(err)


def test_nan_in_test_metrics_refused_on_write(model_dir: Path, manifest: Manifest) -> None:
    manifest.test_metrics["qwk"] = float("nan")
    with pytest.raises(ManifestError, match="test_metrics"):
        mf.write_manifest(model_dir, manifest)


def test_constructor_validates(manifest: Manifest) -> None:
    fields = manifest.to_dict() | {"framework": "caffe"}
    with pytest.raises(ManifestError, match="unknown framework") as info:
        Manifest(**fields)
    assert info.value.path is None and info.value.field == "framework"


# --------------------------------------------------------------------------- verification


def test_sha_mismatch_is_refused(model_dir: Path, manifest: Manifest) -> None:
    path = model_dir / "model.pt"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ManifestError, match="sha256 mismatch") as info:
        mf.verify_model_file(model_dir, manifest)
    assert f"expected {manifest.sha256}" in str(info.value)
    assert f"actual {actual}" in str(info.value)
    assert info.value.field == "sha256"


def test_size_mismatch_is_refused(model_dir: Path, manifest: Manifest) -> None:
    with (model_dir / "model.pt").open("ab") as f:
        f.write(b"x")
    with pytest.raises(ManifestError, match="size mismatch") as info:
        mf.verify_model_file(model_dir, manifest)
    assert f"expected {manifest.size_bytes} bytes, actual {manifest.size_bytes + 1}" in str(
        info.value
    )
    assert info.value.field == "size_bytes"


def test_missing_model_file_is_refused(model_dir: Path, manifest: Manifest) -> None:
    (model_dir / "model.pt").unlink()
    with pytest.raises(ManifestError, match="model file not found") as info:
        mf.verify_model_file(model_dir, manifest)
    assert info.value.field == "file_name"
