"""imagefolder: <root>/<split>/<class>/ images, Intel's double nesting, carved splits, errors."""

import csv

import numpy as np
import pytest
from PIL import Image

from shared.datasets import (
    DATASET_NAMES,
    DatasetError,
    dataset_spec_for,
    get_dataset_spec,
    index_imagefolder,
    load_dataset,
)
from shared.datasets.__main__ import main
from training import baseline

CLASSES = ("buildings", "forest", "glacier")


def make_folder(root, splits, per_class=10, classes=CLASSES, nested=False, fmt="jpg"):
    """Tiny images in <root>/<split>[/<split>]/<class>/; class c is a flat grey of 60 + 60c."""
    for split, n in zip(splits, (per_class, max(2, per_class // 3)) * 2, strict=False):
        base = root / split / split if nested else root / split
        for c, name in enumerate(classes):
            (base / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.full((20, 24, 3), 60 + 60 * c + i, np.uint8)
                Image.fromarray(pixels).save(base / name / f"{i}.{fmt}")
    return root


def test_intel_double_nesting_carves_a_stratified_val(tmp_path):
    root = make_folder(tmp_path, ("seg_train", "seg_test"), nested=True)
    (root / "seg_pred" / "seg_pred").mkdir(parents=True)  # unlabelled: ignored
    (root / "seg_train" / "seg_train" / "forest" / "notes.txt").write_text("not an image")
    sets = load_dataset("imagefolder", root, 16)
    assert dataset_spec_for("imagefolder", root).class_names == CLASSES
    assert [len(sets[s]) for s in ("train", "val", "test")] == [25, 5, 9]  # train:val 70:15
    assert sorted(np.bincount(sets["val"].labels).tolist()) == [1, 2, 2]  # stratified
    assert all(i.startswith("seg_test/seg_test/") for i in sets["test"].ids)
    assert sets["train"].images.shape[1:] == (16, 16, 3)
    with open(root / "splits.csv") as f:
        stored = {r["image"]: r["split"] for r in csv.DictReader(f)}
    assert sorted(i for i, s in stored.items() if s == "val") == sorted(sets["val"].ids)


def test_a_class_named_like_its_split_is_a_class(tmp_path):
    root = make_folder(tmp_path, ("train", "test"), classes=("other", "train"))
    assert dataset_spec_for("imagefolder", root).class_names == ("other", "train")


def test_train_val_test_folders_are_used_as_they_are(tmp_path):
    root = make_folder(tmp_path, ("train", "val", "test"), per_class=6, fmt="png")
    sets = load_dataset("imagefolder", root, 16)
    assert [len(sets[s]) for s in ("train", "val", "test")] == [18, 6, 18]
    assert not (root / "splits.csv").exists()
    assert sets["val"].ids[0] == "val/buildings/0.png" and sets["val"].labels[0] == 0


def test_only_train_carves_val_and_test_seeded_and_reused(tmp_path):
    a = make_folder(tmp_path / "a", ("train",), per_class=20)
    b = make_folder(tmp_path / "b", ("train",), per_class=20)
    first = {r.image: r.split for r in index_imagefolder(a, split_seed=1)[1]}
    assert sorted(first.values()).count("test") == 9 and sorted(first.values()).count("val") == 9
    assert {r.image: r.split for r in index_imagefolder(b, split_seed=1)[1]} == first
    assert {r.image: r.split for r in index_imagefolder(a, split_seed=2)[1]} == first  # stored
    (b / "splits.csv").unlink()
    other = {r.image: r.split for r in index_imagefolder(b, split_seed=2, write_splits=False)[1]}
    assert not (b / "splits.csv").exists()
    assert {r.image: r.split for r in index_imagefolder(b, split_seed=2)[1]} == other != first


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("unreadable", "forest/3.jpg: corrupt or unsupported image"),
        ("classes differ", "only in train: ['glacier']; only in test: ['lake']"),
        ("empty class", "forest: no images"),
        ("no train", "no train/ (or seg_train/) folder"),
        ("two train folders", "both train/ and seg_train/"),
        ("one class", "1 class folder(s)"),
        ("stale split", "splits.csv is stale"),
        ("not a directory", "not a directory"),
    ],
)
def test_bad_folders_raise_one_error_naming_the_path(tmp_path, how, message):
    root = make_folder(tmp_path / "d", ("train", "test"))
    if how == "unreadable":
        (root / "train" / "forest" / "3.jpg").write_bytes(b"\xff\xd8 truncated")
    elif how == "classes differ":
        (root / "test" / "glacier").rename(root / "test" / "lake")
    elif how == "empty class":
        for f in (root / "train" / "forest").iterdir():
            f.unlink()
    elif how == "no train":
        (root / "train").rename(root / "training")
    elif how == "two train folders":
        make_folder(root, ("seg_train",))
    elif how == "one class":
        root = make_folder(tmp_path / "one", ("train", "test"), classes=("only",))
    elif how == "stale split":
        index_imagefolder(root)
        (root / "train" / "forest" / "0.jpg").unlink()
    elif how == "not a directory":
        root = root / "train" / "forest" / "0.jpg"
    with pytest.raises(DatasetError) as info:
        load_dataset("imagefolder", root, 16)
    assert message in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_spec_comes_from_the_folder_or_the_manifest(tmp_path):
    assert "imagefolder" in DATASET_NAMES
    with pytest.raises(KeyError, match="dataset_spec_for"):
        get_dataset_spec("imagefolder")
    spec = dataset_spec_for("imagefolder", class_names=["cat", "dog"])
    assert spec.class_names == ("cat", "dog") and spec.task == "multiclass"
    assert dataset_spec_for("dr", tmp_path) is get_dataset_spec("dr")
    with pytest.raises(KeyError, match="unknown dataset"):
        dataset_spec_for("nope", tmp_path)


def test_cli_inspect_detects_the_layout(tmp_path, capsys):
    root = make_folder(tmp_path, ("seg_train", "seg_test"), nested=True)
    assert main(["inspect", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("imagefolder:") and "seg_train/seg_train/" in out
    assert "val carved out of train" in out and "2 glacier" in out
    assert not (root / "splits.csv").exists()
    assert main(["inspect", str(tmp_path / "seg_test"), "--dataset", "imagefolder"]) == 2
    assert "no train/" in capsys.readouterr().err
    assert main(["acquire", "imagefolder", "--out", "x"]) == 0
    assert "intel-image-classification" in capsys.readouterr().out


def test_baseline_trains_on_an_image_folder(tmp_path, capsys):
    root = make_folder(tmp_path, ("train", "test"), per_class=8)
    argv = ["--dataset", "imagefolder", "--data", str(root), "--image-size", "16", "--size", "8",
            "--trees", "5", "--threads", "1"]
    assert baseline.main(argv) == 0
    assert "sklearn-rf" in capsys.readouterr().out
