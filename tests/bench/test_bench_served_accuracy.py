"""The accuracy gate's test sets (bench.served_accuracy): a MedMNIST .npz encoded as PNG,
a DR directory sent as its original files, seeded subsets, and data that is no test split."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.served_accuracy import EvalDataError, is_dataset, load_test_split


def test_npz_test_split_is_sent_as_png_with_its_labels(tmp_path: Path) -> None:
    from shared.datasets import load_dataset
    from shared.datasets.synth_blood import generate_bloodmnist

    npz = generate_bloodmnist(tmp_path / "bloodmnist_32.npz", 200, size=32, seed=0)
    test = load_dataset("bloodmnist", npz, None)["test"]
    full = load_test_split("bloodmnist", npz)
    assert len(full) == len(test) == full.total and is_dataset(npz)
    data, content_type = full.images[0]
    assert content_type == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), test.images[0])
    assert np.array_equal(full.labels, test.labels)
    subset = load_test_split("bloodmnist", npz, max_images=10, seed=3)
    assert len(subset) == 10 and subset.total == len(test)
    assert subset.describe() == {"source": str(npz), "split": "test", "images": 10,
                                 "split_images": len(test)}
    again = load_test_split("bloodmnist", npz, max_images=10, seed=3)
    assert np.array_equal(subset.labels, again.labels)


def test_dr_test_split_is_sent_as_the_original_files(tmp_path: Path) -> None:
    from shared.datasets import index_dr
    from shared.datasets.synth_dr import generate_dr

    directory = generate_dr(tmp_path / "dr", 40, size=32, seed=1)
    records = [r for r in index_dr(directory, write_splits=False) if r.split == "test"]
    test = load_test_split("dr", directory)
    assert len(test) == len(records) > 0
    assert [data for data, _ in test.images] == [r.file.read_bytes() for r in records]
    assert test.images[0][1] in ("image/jpeg", "image/png")
    assert list(test.labels) == [r.level for r in records]


def test_data_that_is_no_test_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EvalDataError, match="neither a MedMNIST"):
        load_test_split("bloodmnist", tmp_path)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(EvalDataError, match="cannot read the bloodmnist test split"):
        load_test_split("bloodmnist", broken)
    (tmp_path / "train.csv").write_text("id_code,diagnosis\n")
    with pytest.raises(EvalDataError, match="DR"):
        load_test_split("dr", tmp_path)
