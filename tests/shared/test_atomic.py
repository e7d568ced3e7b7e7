"""shared.atomic: files written atomically get the mode ``open()`` would give them (0o666
less the umask), so a service running as another user can read manifests and datasets."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.atomic import atomic_path, atomic_write_bytes
from shared.datasets import write_medmnist_npz
from shared.datasets.splits import write_splits_csv
from shared.manifest import Manifest, write_manifest


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under this umask (restored afterwards)."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_use_the_umask_mode_and_leave_no_temp(tmp_path: Path, umask: int) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"data")
    with atomic_path(tmp_path / "b.csv") as tmp, open(tmp, "w") as f:
        f.write("x\n")
    for name in ("a.bin", "b.csv"):
        assert mode(tmp_path / name) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.csv"]


def test_manifest_is_world_readable_under_umask_022(tmp_path: Path) -> None:
    """What a container running as uid 10001 needs from a model directory written by root."""
    from tests.shared.test_manifest import _fields

    old = os.umask(0o022)
    try:
        (tmp_path / "model.pt").write_bytes(b"weights")
        write_manifest(tmp_path, Manifest.for_model_file(tmp_path, "model.pt", **_fields()))
    finally:
        os.umask(old)
    assert mode(tmp_path / "manifest.json") == 0o644


def test_dataset_files_get_the_umask_mode(tmp_path: Path, umask: int) -> None:
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 256, (2, 28, 28, 3), np.uint8), np.array([0, 1]))
              for s in ("train", "val", "test")}
    npz = write_medmnist_npz(tmp_path / "bloodmnist.npz", splits, n_classes=2)
    csv = write_splits_csv(tmp_path / "splits.csv", {"a.png": "train", "b.png": "test"})
    for path in (npz, csv):
        assert mode(path) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert (tmp_path / "a.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
