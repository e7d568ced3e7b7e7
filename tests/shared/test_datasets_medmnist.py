"""MedMNIST .npz reader/writer on tiny generated files, good and malformed."""

import numpy as np
import pytest

from shared.datasets import DatasetError, load_dataset, read_medmnist_npz, write_medmnist_npz
from shared.datasets.medmnist import find_medmnist_file, load_medmnist, medmnist_filename

SIZES = {"train": 16, "val": 4, "test": 6}


def official_arrays(size=28, n_classes=8, seed=0, gray=False):
    """Arrays exactly as the official files hold them (labels N x 1 uint8)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SIZES.items():
        shape = (n, size, size) if gray else (n, size, size, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).astype(np.uint8).reshape(-1, 1)
    return arrays


def save(path, arrays):
    np.savez_compressed(path, **arrays)
    return path


def test_reads_official_layout(tmp_path):
    arrays = official_arrays()
    file = save(tmp_path / "bloodmnist.npz", arrays)
    sets = load_dataset("bloodmnist", file, 28)
    assert set(sets) == {"train", "val", "test"}
    for split, n in SIZES.items():
        s = sets[split]
        assert s.images.shape == (n, 28, 28, 3) and s.images.dtype == np.uint8
        assert s.labels.shape == (n,) and s.labels.dtype == np.int64
        np.testing.assert_array_equal(s.images, arrays[f"{split}_images"])
        np.testing.assert_array_equal(s.labels, arrays[f"{split}_labels"].ravel())
        assert s.ids[0] == f"{split}/0"


def test_resizes_and_converts_gray(tmp_path):
    file = save(tmp_path / "g.npz", official_arrays(gray=True))
    sets = load_medmnist(file, 32, flag="x", n_classes=8)
    assert sets["train"].images.shape == (16, 32, 32, 3)
    native = load_medmnist(file, None, flag="x", n_classes=8)["val"].images
    assert native.shape == (4, 28, 28, 3)
    assert (native[..., 0] == native[..., 2]).all()


def test_directory_picks_exact_then_larger_then_resizes(tmp_path):
    for size in (28, 64):
        save(tmp_path / medmnist_filename("bloodmnist", size), official_arrays(size))
    assert find_medmnist_file(tmp_path, "bloodmnist", 28).name == "bloodmnist.npz"
    assert find_medmnist_file(tmp_path, "bloodmnist", 32).name == "bloodmnist_64.npz"
    assert find_medmnist_file(tmp_path, "bloodmnist", 64).name == "bloodmnist_64.npz"
    assert find_medmnist_file(tmp_path, "bloodmnist", 128).name == "bloodmnist_64.npz"
    assert load_dataset("bloodmnist", tmp_path, 48)["test"].images.shape == (6, 48, 48, 3)


def test_writer_round_trip_is_official_layout(tmp_path):
    rng = np.random.default_rng(1)
    splits = {
        s: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 8)
        for s, n in SIZES.items()
    }
    out = write_medmnist_npz(tmp_path / "sub" / "bloodmnist_32.npz", splits, n_classes=8)
    with np.load(out) as npz:
        assert sorted(npz.files) == sorted(official_arrays())
        assert npz["train_labels"].shape == (16, 1) and npz["train_labels"].dtype == np.uint8
    raw = read_medmnist_npz(out, n_classes=8)
    np.testing.assert_array_equal(raw["val"][0], splits["val"][0])
    assert [p.name for p in out.parent.iterdir()] == ["bloodmnist_32.npz"]  # no temp file left


def test_writer_refuses_bad_input(tmp_path):
    good = official_arrays()
    splits = {s: (good[f"{s}_images"], good[f"{s}_labels"]) for s in SIZES}
    with pytest.raises(DatasetError, match="need splits"):
        write_medmnist_npz(tmp_path / "a.npz", {"train": splits["train"]})
    with pytest.raises(DatasetError, match="outside"):
        write_medmnist_npz(tmp_path / "a.npz", splits, n_classes=3)
    assert not (tmp_path / "a.npz").exists()


def corrupt(arrays, **changes):
    arrays = dict(arrays)
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    return arrays


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"val_labels": None}, r"missing arrays \['val_labels'\]"),
        ({"train_images": np.zeros((16, 28, 28, 3), np.float32)}, "dtype float32, not uint8"),
        ({"train_images": np.zeros((16, 28, 28, 4), np.uint8)}, r"shape \(16, 28, 28, 4\)"),
        ({"test_images": np.zeros((6, 28, 20, 3), np.uint8)}, "shape"),
        ({"val_images": np.zeros((4, 32, 32, 3), np.uint8)}, "32 px, other splits 28 px"),
        ({"train_labels": np.full((16, 1), 8, np.uint8)}, "holds 8, outside the 8 classes"),
        ({"train_labels": np.zeros((15, 1), np.uint8)}, "16 train_images but 15 train_labels"),
        ({"train_labels": np.zeros((16, 1), np.float32)}, "not integer"),
        ({"train_labels": np.zeros((16, 2), np.uint8)}, "shape"),
    ],
)
def test_malformed_npz_names_file_and_layout(tmp_path, changes, message):
    file = save(tmp_path / "bad.npz", corrupt(official_arrays(), **changes))
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset("bloodmnist", file, 28)
    assert "bad.npz" in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset("bloodmnist", tmp_path / "nope.npz", 28)
    with pytest.raises(DatasetError, match="holds none of bloodmnist.npz"):
        load_dataset("bloodmnist", tmp_path, 28)
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz.*train_images"):
        load_dataset("bloodmnist", text, 28)
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DatasetError, match="single .npy"):
        load_dataset("bloodmnist", single, 28)


def test_multilabel_layout(tmp_path):
    arrays = official_arrays(n_classes=2)
    for split, n in SIZES.items():
        arrays[f"{split}_labels"] = np.eye(3, dtype=np.uint8)[np.arange(n) % 3]
    file = save(tmp_path / "m.npz", arrays)
    sets = load_medmnist(file, 28, flag="m", n_classes=3, task="multilabel")
    assert sets["train"].labels.shape == (16, 3)
    arrays["val_labels"] = arrays["val_labels"] * 2
    save(file, arrays)
    with pytest.raises(DatasetError, match="must be 0 or 1"):
        load_medmnist(file, 28, flag="m", n_classes=3, task="multilabel")
