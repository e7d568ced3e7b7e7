"""Synthetic DR and BloodMNIST generators: exact formats, determinism, class balance and
that the labels really drive what the pictures show."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from shared.datasets import synth_blood, synth_dr
from shared.datasets.medmnist import load_bloodmnist, read_medmnist_npz

TINY = 64  # px; big enough for lesions to show, small enough to be fast


def _read_labels(directory: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Header and (image, level) rows of a generated trainLabels.csv."""
    with open(directory / "trainLabels.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [(name, int(level)) for name, level in rows[1:]]


# ---------------------------------------------------------------- DR


def test_dr_kaggle_layout(tmp_path: Path) -> None:
    out = synth_dr.generate_dr(tmp_path / "dr", 40, size=32, seed=1)
    header, rows = _read_labels(out)
    assert header == ["image", "level"]
    assert len(rows) == 40
    names = [name for name, _ in rows]
    for p in range(20):  # both eyes of every patient, left then right
        patient = names[2 * p].rsplit("_", 1)[0]
        assert names[2 * p : 2 * p + 2] == [f"{patient}_left", f"{patient}_right"]
    assert len(set(names)) == 40
    files = sorted(f.name for f in out.iterdir() if f.suffix == ".jpeg")
    assert files == sorted(f"{name}.jpeg" for name in names)
    for name in names[:6]:
        with Image.open(out / f"{name}.jpeg") as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            assert img.height == 32  # the short side is the labelled size
            aspect = img.width / img.height
            assert any(abs(aspect - a) < 0.05 for a in synth_dr.CAMERA_ASPECTS)


def test_dr_class_balance_exact_and_complete(tmp_path: Path) -> None:
    _, rows = _read_labels(synth_dr.generate_dr(tmp_path, 40, size=32, seed=2))
    counts = np.bincount([level for _, level in rows], minlength=5)
    assert (counts > 0).all(), counts  # rare grades still appear at small n
    grades = synth_dr.assign_grades(1000, synth_dr.KAGGLE_BALANCE, seed=0)
    share = np.bincount(grades.ravel(), minlength=5) / grades.size
    np.testing.assert_allclose(share, synth_dr.KAGGLE_BALANCE, atol=0.002)
    uniform = synth_dr.assign_grades(50, (1, 1, 1, 1, 1), seed=0)
    assert np.bincount(uniform.ravel()).tolist() == [20] * 5


def test_dr_eyes_of_a_patient_are_correlated() -> None:
    grades = synth_dr.assign_grades(2000, (0.2,) * 5, seed=3)
    gap = np.abs(grades[:, 0] - grades[:, 1])
    assert (gap == 0).mean() > 0.5
    assert (gap <= 1).mean() > 0.9
    assert (gap >= 1).any()  # eyes are graded separately, not copied


def test_dr_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="class_balance"):
        synth_dr.generate_dr(tmp_path, 4, size=32, class_balance=(0.5, 0.5))
    with pytest.raises(ValueError, match="n must be"):
        synth_dr.generate_dr(tmp_path, 1, size=32)
    with pytest.raises(ValueError, match="grade"):
        synth_dr.render_fundus(32, 5, "left", 0)


def _file_bytes(directory: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(directory.iterdir())}


def test_dr_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = _file_bytes(synth_dr.generate_dr(tmp_path / "a", 6, size=TINY, seed=5))
    b = _file_bytes(synth_dr.generate_dr(tmp_path / "b", 6, size=TINY, seed=5))
    c = _file_bytes(synth_dr.generate_dr(tmp_path / "c", 6, size=TINY, seed=6))
    assert a == b
    jpegs = [k for k in a if k.endswith(".jpeg")]
    assert all(a[k] != c[k] for k in jpegs)


def test_dr_workers_do_not_change_output(tmp_path: Path) -> None:
    one = synth_dr.generate_dr(tmp_path / "one", 4, size=32, seed=7)
    two = synth_dr.generate_dr(tmp_path / "two", 4, size=32, seed=7, workers=2)
    assert _file_bytes(one) == _file_bytes(two)


def _lesion_pixels(grade: int, seed: int, size: int = 128) -> int:
    """Pixels a grade adds over the grade-0 picture of the same seed (anatomy and camera
    come from their own random streams, so the difference is the lesions)."""
    base = np.asarray(synth_dr.render_fundus(size, 0, "right", seed), np.int16)
    graded = np.asarray(synth_dr.render_fundus(size, grade, "right", seed), np.int16)
    return int((np.abs(graded - base).max(axis=2) > 20).sum())


def test_dr_grade_drives_lesion_pixels() -> None:
    seeds = range(8)
    pixels = {g: np.mean([_lesion_pixels(g, s) for s in seeds]) for g in (1, 2, 4)}
    assert pixels[1] < pixels[2] and pixels[1] < pixels[4]
    assert pixels[4] > 30


def test_dr_lesion_counts_grow_with_grade() -> None:
    rng = np.random.default_rng(0)
    draws = {g: [synth_dr.lesion_counts(g, rng) for _ in range(300)] for g in range(5)}
    red = [np.mean([d["microaneurysms"] + d["haemorrhages"] for d in draws[g]]) for g in range(5)]
    assert red[0] < red[1] < red[2] < red[3]
    assert all(d["microaneurysms"] >= 1 for g in range(1, 5) for d in draws[g])
    assert all(d["new_vessel_tufts"] >= 1 for d in draws[4])
    assert not any(d["new_vessel_tufts"] or d["cotton_wool_spots"] for d in draws[1])
    # neighbouring grades overlap: some grade-3 eyes show fewer haemorrhages than some grade 2
    h2 = [d["haemorrhages"] for d in draws[2]]
    h3 = [d["haemorrhages"] for d in draws[3]]
    assert min(h3) < max(h2)


def test_dr_optic_disc_mirrors_between_eyes() -> None:
    """The disc (brightest blurred spot) lies nasally: right of centre in right eyes."""
    sides = []
    for seed in range(12):
        for eye, sign in (("right", 1), ("left", -1)):
            img = synth_dr.render_fundus(96, 0, eye, seed)
            rgb = np.asarray(img.filter(ImageFilter.GaussianBlur(2)), np.float32)
            centre = np.flatnonzero(rgb.max(axis=(0, 2)) > 20).mean()  # fundus, not frame
            x = np.unravel_index(np.argmax(rgb[..., 1]), rgb.shape[:2])[1] - centre
            sides.append(np.sign(x) == sign)
    assert np.mean(sides) >= 0.8  # a few pictures are stored upside down, as in Kaggle


# ---------------------------------------------------------------- BloodMNIST


@pytest.fixture(scope="module")
def blood_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("blood") / "bloodmnist_32.npz"
    return synth_blood.generate_bloodmnist(path, 240, size=32, seed=0)


def test_blood_medmnist_format(blood_npz: Path) -> None:
    with np.load(blood_npz) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert sorted(arrays) == sorted(
        f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")
    )
    sizes = []
    for split in ("train", "val", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert labels.dtype == np.uint8 and labels.shape == (len(images), 1)
        sizes.append(len(images))
    assert sum(sizes) == 240
    expected = np.array(synth_blood.REAL_SPLIT_COUNTS) / sum(synth_blood.REAL_SPLIT_COUNTS)
    np.testing.assert_allclose(np.array(sizes) / 240, expected, atol=0.005)
    read_medmnist_npz(blood_npz, n_classes=8)  # the real reader accepts it
    assert len(load_bloodmnist(blood_npz, 32)["test"]) == sizes[2]


def test_blood_class_frequencies_and_stratified_splits(blood_npz: Path) -> None:
    with np.load(blood_npz) as npz:
        per_split = {s: npz[f"{s}_labels"].ravel() for s in ("train", "val", "test")}
    counts = np.bincount(np.concatenate(list(per_split.values())), minlength=8)
    real = np.array(synth_blood.REAL_CLASS_COUNTS) / sum(synth_blood.REAL_CLASS_COUNTS)
    np.testing.assert_allclose(counts / counts.sum(), real, atol=0.005)
    for split in ("train", "test"):
        assert (np.bincount(per_split[split], minlength=8) > 0).all(), split


def test_blood_deterministic_for_a_seed(tmp_path: Path) -> None:
    def arrays(seed: int, name: str) -> dict[str, np.ndarray]:
        path = synth_blood.generate_bloodmnist(tmp_path / name, 24, size=32, seed=seed)
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}

    a, b, c = arrays(3, "a.npz"), arrays(3, "b.npz"), arrays(4, "c.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train_images"], c["train_images"])


def test_blood_classes_look_different() -> None:
    """Stain-level facts: eosinophils are the reddest, platelets carry the least dark
    (nuclear) stain, lymphocytes are smaller than monocytes."""

    def stats(label: int) -> tuple[float, float, float]:
        imgs = np.stack([synth_blood.render_cell(label, 48, (9, i)) for i in range(12)])
        imgs = imgs.astype(np.float32)
        redness = float((imgs[..., 0] - imgs[..., 2]).mean())
        dark = float((imgs.mean(axis=3) < 110).mean())
        cell = float((imgs[..., 2] > imgs[..., 0] - 5).mean())  # bluish-purple area
        return redness, dark, cell

    s = {label: stats(label) for label in range(8)}
    assert max(s, key=lambda k: s[k][0]) == synth_blood.CLASS_NAMES.index("eosinophil")
    assert min(s, key=lambda k: s[k][1]) == synth_blood.CLASS_NAMES.index("platelet")
    lymph, mono = (synth_blood.CLASS_NAMES.index(n) for n in ("lymphocyte", "monocyte"))
    assert s[lymph][2] < s[mono][2]


def test_blood_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n must be"):
        synth_blood.generate_bloodmnist(tmp_path / "x.npz", 2, size=32)
    with pytest.raises(ValueError, match="label"):
        synth_blood.render_cell(8, 32, 0)
