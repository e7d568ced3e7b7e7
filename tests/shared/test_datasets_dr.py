"""DR readers (Kaggle 2015, APTOS 2019), the patient split and the decode cache."""

import csv
import os
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from shared.datasets import (
    DatasetError,
    index_dr,
    load_dataset,
    load_dr,
    split_patients,
    write_kaggle_labels,
)
from shared.datasets import dr as dr_module


def grade_of(patient: int, eye: str) -> int:
    """Deterministic, imbalanced grades; the two eyes of a patient usually differ by <= 1."""
    base = [0, 0, 0, 1, 2, 0, 3, 0, 2, 4][patient % 10]
    return max(0, base - (eye == "left" and patient % 3 == 0))


def write_image(path, seed, size=(40, 32), fmt=None):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, fmt)


def make_kaggle(root, n_patients=20, subdir=""):
    """Kaggle 2015 layout with tiny JPEGs; returns the rows written."""
    folder = root / subdir
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(1, n_patients + 1):
        for eye in ("left", "right"):
            name = f"{p}_{eye}"
            rows.append((name, grade_of(p, eye)))
            write_image(folder / f"{name}.jpeg", len(rows), fmt="JPEG")
    write_kaggle_labels(root, rows)
    return rows


def make_aptos(root, n=20):
    (root / "train_images").mkdir(parents=True)
    rows = [(f"{i:04x}c0ffee", i % 5) for i in range(n)]
    for i, (code, _) in enumerate(rows):
        write_image(root / "train_images" / f"{code}.png", i, size=(36, 36))
    with open(root / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([("id_code", "diagnosis"), *rows])
    return rows


def read_splits(root):
    with open(root / "splits.csv") as f:
        return {r["image"]: r["split"] for r in csv.DictReader(f)}


def test_kaggle_load_shapes_labels_and_patient_split(tmp_path):
    rows = make_kaggle(tmp_path)
    sets = load_dataset("dr", tmp_path, 32)
    assert sum(len(s) for s in sets.values()) == len(rows)
    labels = dict(rows)
    for s in sets.values():
        assert s.images.shape[1:] == (32, 32, 3) and s.images.dtype == np.uint8
        assert s.labels.dtype == np.int64
        assert [labels[i] for i in s.ids] == s.labels.tolist()
    patients = {name: {i.split("_")[0] for i in s.ids} for name, s in sets.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert [len(patients[s]) for s in ("train", "val", "test")] == [14, 3, 3]
    written = read_splits(tmp_path)
    assert set(written) == set(labels)
    for name in labels:  # both eyes together
        patient = name.split("_")[0]
        assert written[f"{patient}_left"] == written[f"{patient}_right"]


def test_images_in_train_subfolder_and_any_size(tmp_path):
    make_kaggle(tmp_path, n_patients=10, subdir="train")
    write_image(tmp_path / "train" / "1_left.jpeg", 0, size=(90, 60), fmt="JPEG")
    sets = load_dr(tmp_path, 24)
    assert all(s.images.shape[1:] == (24, 24, 3) for s in sets.values())


def test_split_is_deterministic_seeded_and_reused(tmp_path):
    a, b, c = (tmp_path / x for x in "abc")
    for root in (a, b, c):
        make_kaggle(root, n_patients=40)
    load_dr(a, 16, split_seed=7, cache=False)
    load_dr(b, 16, split_seed=7, cache=False)
    load_dr(c, 16, split_seed=8, cache=False)
    assert read_splits(a) == read_splits(b)
    assert read_splits(a) != read_splits(c)
    before = (a / "splits.csv").read_bytes()
    again = load_dr(a, 16, split_seed=99, cache=False)  # stored split wins over the seed
    assert (a / "splits.csv").read_bytes() == before
    assert again["val"].ids == [i for i, s in read_splits(a).items() if s == "val"]


def test_split_patients_is_stratified():
    rng = np.random.default_rng(0)
    strata = {
        f"p{i}": int(g) for i, g in enumerate(rng.choice(5, 500, p=[0.6, 0.1, 0.2, 0.05, 0.05]))
    }
    split = split_patients(strata, seed=3)
    assert split == split_patients(strata, seed=3)
    total = Counter(split.values())
    assert abs(total["val"] - 75) <= 1 and abs(total["test"] - 75) <= 1
    per = defaultdict(Counter)
    for patient, s in split.items():
        per[strata[patient]][s] += 1
    for grade, counts in per.items():
        n = sum(counts.values())
        for s, frac in zip(("train", "val", "test"), (0.7, 0.15, 0.15), strict=True):
            assert abs(counts[s] - frac * n) <= 1.5, (grade, counts)


def test_aptos_layout(tmp_path):
    rows = make_aptos(tmp_path)
    sets = load_dataset("dr", tmp_path, 32)
    ids = sorted(i for s in sets.values() for i in s.ids)
    assert ids == sorted(code for code, _ in rows)
    assert [len(sets[s]) for s in ("train", "val", "test")] == [14, 3, 3]


def test_cache_is_written_reused_and_invalidated(tmp_path, monkeypatch):
    make_kaggle(tmp_path, n_patients=10)
    first = load_dr(tmp_path, 16)
    caches = list((tmp_path / ".cache").glob("dr_16_*.npz"))
    assert len(caches) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(dr_module, "decode_files", no_decoding)
    second = load_dr(tmp_path, 16)
    for s in first:
        np.testing.assert_array_equal(first[s].images, second[s].images)
        assert first[s].ids == second[s].ids
    monkeypatch.undo()
    image = tmp_path / "1_left.jpeg"
    write_image(image, 123, fmt="JPEG")
    os.utime(image, ns=(1, 1))
    load_dr(tmp_path, 16)
    new = list((tmp_path / ".cache").glob("dr_16_*.npz"))
    assert len(new) == 1 and new != caches  # rebuilt, stale one removed


def test_no_cache_option_writes_nothing(tmp_path):
    make_kaggle(tmp_path, n_patients=10)
    load_dr(tmp_path, 16, cache=False)
    assert not (tmp_path / ".cache").exists()


def rewrite_labels(root, mutate):
    with open(root / "trainLabels.csv") as f:
        lines = f.read().splitlines()
    (root / "trainLabels.csv").write_text("\n".join(mutate(lines)) + "\n")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: ["image,grade", *lines[1:]], "missing column 'level'"),
        (lambda lines: [lines[0], "1_left,5", *lines[2:]], "level '5' for '1_left'"),
        (lambda lines: [lines[0], "1_left,x", *lines[2:]], "not a grade 0-4"),
        (lambda lines: [lines[0], "1_left,-1", *lines[2:]], "not a grade 0-4"),
        (lambda lines: [*lines, lines[1]], "duplicate image '1_left'"),
        (lambda lines: lines[:1], "no rows"),
        (
            lambda lines: [*lines, "99_left,0"],
            "image '99_left' listed in trainLabels.csv not found",
        ),
    ],
)
def test_malformed_labels(tmp_path, mutate, message):
    make_kaggle(tmp_path, n_patients=10)
    rewrite_labels(tmp_path, mutate)
    with pytest.raises(DatasetError, match=message) as info:
        load_dr(tmp_path, 16)
    assert "trainLabels.csv" in str(info.value)


def test_missing_csv_and_ambiguous_layout(tmp_path):
    with pytest.raises(DatasetError, match="no labels file.*image,level.*id_code,diagnosis"):
        load_dr(tmp_path, 16)
    with pytest.raises(DatasetError, match="not a directory"):
        load_dr(tmp_path / "absent", 16)
    make_kaggle(tmp_path, n_patients=4)
    (tmp_path / "train.csv").write_text("id_code,diagnosis\n")
    with pytest.raises(DatasetError, match="both labels file"):
        load_dr(tmp_path, 16)


def test_corrupt_image_is_named(tmp_path):
    make_kaggle(tmp_path, n_patients=10)
    (tmp_path / "3_right.jpeg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(DatasetError, match=r"3_right\.jpeg: corrupt"):
        load_dr(tmp_path, 16)


def test_stale_or_leaky_split_is_an_error(tmp_path):
    make_kaggle(tmp_path, n_patients=10)
    index_dr(tmp_path)
    rewrite_labels(tmp_path, lambda lines: lines[:-2])  # a patient removed from the labels
    with pytest.raises(DatasetError, match="stale.*delete .*splits.csv"):
        load_dr(tmp_path, 16)
    make_kaggle(tmp_path, n_patients=10)
    splits = read_splits(tmp_path)
    splits["1_left"] = "train"
    splits["1_right"] = "test"
    with open(tmp_path / "splits.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "split"), *splits.items()])
    with pytest.raises(DatasetError, match="patient '1' appears in both"):
        load_dr(tmp_path, 16)


def test_too_few_patients(tmp_path):
    make_kaggle(tmp_path, n_patients=2)
    with pytest.raises(DatasetError, match="too few patients"):
        load_dr(tmp_path, 16)
