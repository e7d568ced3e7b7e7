"""ChestX-ray14: the reader on generated and malformed layouts, the split, the generator."""

import csv
import hashlib
import shutil

import numpy as np
import pytest
from PIL import Image

from shared.datasets import DatasetError, get_dataset_spec, index_chestxray14, load_dataset
from shared.datasets import chestxray14 as cx
from shared.datasets.synth_chestxray14 import (
    CSV_HEADER,
    generate_chestxray14,
    render_radiograph,
)

FINDINGS = get_dataset_spec("chestxray14").class_names


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A tiny synthetic set, generated once; tests copy it before changing anything."""
    return generate_chestxray14(tmp_path_factory.mktemp("cxr") / "set", 60, size=32, seed=3)


@pytest.fixture
def root(synthetic, tmp_path):
    return shutil.copytree(synthetic, tmp_path / "set")


def read_rows(root):
    with open(root / "Data_Entry_2017.csv", newline="") as f:
        return list(csv.reader(f))


def write_rows(root, rows, name="Data_Entry_2017.csv"):
    with open(root / name, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_load_shapes_labels_official_test_and_patient_split(root):
    sets = load_dataset("chestxray14", root, 32)
    rows = read_rows(root)
    assert rows[0] == list(CSV_HEADER)  # the real header, unquoted commas and all
    findings = {r[0]: r[1] for r in rows[1:]}
    patient = {r[0]: r[3] for r in rows[1:]}
    assert sum(len(s) for s in sets.values()) == len(findings)
    for s in sets.values():
        assert s.images.shape[1:] == (32, 32, 3) and s.images.dtype == np.uint8
        assert s.labels.shape == (len(s), 14) and s.labels.dtype == np.int64
        for image, row in zip(s.ids, s.labels, strict=True):
            names = [FINDINGS[k] for k in np.flatnonzero(row)]
            assert "|".join(names) or findings[image] == "No Finding"
    test_list = (root / "test_list.txt").read_text().split()
    assert sets["test"].ids == test_list
    patients = {name: {patient[i] for i in s.ids} for name, s in sets.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    assert all(patients.values())


def test_validation_split_is_seeded_saved_and_reused(root, tmp_path):
    other = shutil.copytree(root, tmp_path / "other")
    first = {r.image: r.split for r in index_chestxray14(root, split_seed=1)}
    assert (root / "splits.csv").is_file()
    assert {r.image: r.split for r in index_chestxray14(other, split_seed=1)} == first
    reused = index_chestxray14(root, split_seed=2)  # the stored split wins over the seed
    assert {r.image: r.split for r in reused} == first
    (other / "splits.csv").unlink()
    seeds = [{r.image: r.split for r in index_chestxray14(other, split_seed=s, write_splits=False)}
             for s in range(2, 6)]
    assert any(split != first for split in seeds)


def test_decoded_images_are_cached_and_the_cache_follows_the_labels(root, monkeypatch):
    first = load_dataset("chestxray14", root, 32)
    assert len(list((root / ".cache").glob("chestxray14_32_*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cx, "decode_files", no_decoding)
    second = load_dataset("chestxray14", root, 32)
    for s in first:
        np.testing.assert_array_equal(first[s].images, second[s].images)
    rows = read_rows(root)
    rows[1][1] = "Hernia" if rows[1][1] != "Hernia" else "Mass"
    write_rows(root, rows)
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_dataset("chestxray14", root, 32)  # new labels: a new cache key


def test_images_folder_and_v2020_csv(root):
    (root / "images").mkdir()
    for png in root.glob("images_*/images/*.png"):
        png.rename(root / "images" / png.name)
    for folder in root.glob("images_*"):
        shutil.rmtree(folder)
    rows = read_rows(root)
    rows[1][1] = "Hernia"
    write_rows(root, rows, "Data_Entry_2017_v2020.csv")  # preferred over Data_Entry_2017.csv
    records = index_chestxray14(root)
    assert records[0].findings == (FINDINGS.index("Hernia"),)
    assert all(r.file.parent == root / "images" for r in records)


def test_rgba_png_becomes_rgb(root):
    png = next(root.glob("images_*/images/*.png"))
    grey = np.asarray(Image.open(png).convert("L"))
    Image.fromarray(grey).convert("RGBA").save(png)
    sets = load_dataset("chestxray14", root, 32)
    where = {i: (name, k) for name, s in sets.items() for k, i in enumerate(s.ids)}
    split, k = where[png.name]
    image = sets[split].images[k]
    assert image.shape == (32, 32, 3)
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def share_patient_across_lists(root):
    """Give a test image the Patient ID of a train_val image; return that patient."""
    rows = read_rows(root)
    train_val_image = (root / "train_val_list.txt").read_text().split()[0]
    test_image = (root / "test_list.txt").read_text().split()[0]
    patient = next(r[3] for r in rows if r[0] == train_val_image)
    for r in rows:
        if r[0] == test_image:
            r[3] = patient
    write_rows(root, rows)
    return patient


def corrupt(root, how):
    """Break the layout one way; return the file the error must name."""
    rows = read_rows(root)
    csv_path = root / "Data_Entry_2017.csv"
    train_val, test = root / "train_val_list.txt", root / "test_list.txt"
    if how == "missing column":
        write_rows(root, [[c if c != "Patient ID" else "Patient" for c in rows[0]], *rows[1:]])
    elif how == "not utf-8":
        csv_path.write_bytes(b"Image Index,Finding Labels,Patient ID\n\xff\xfe,\x80,1\n")
    elif how == "unknown finding":
        rows[3][1] = "Effusion|Pneumonitis"
        write_rows(root, rows)
    elif how == "no finding mixed":
        rows[3][1] = "No Finding|Mass"
        write_rows(root, rows)
    elif how == "empty cell":
        rows[3][1] = ""
        write_rows(root, rows)
    elif how == "duplicate image":
        write_rows(root, [*rows, rows[2]])
    elif how == "no rows":
        write_rows(root, rows[:1])
    elif how == "missing image":
        next(root.glob("images_*/images/*.png")).unlink()
        return root
    elif how == "patient in both lists":
        share_patient_across_lists(root)
        return test
    elif how == "image in both lists":
        test.write_text(test.read_text() + train_val.read_text().split()[0] + "\n")
        return test
    elif how == "unlisted image":
        train_val.write_text("\n".join(train_val.read_text().split()[1:]) + "\n")
        return csv_path
    elif how == "listed unknown image":
        test.write_text(test.read_text() + "99999999_000.png\n")
        return test
    elif how == "no list":
        test.unlink()
        return test
    elif how == "no csv":
        csv_path.unlink()
        return root
    return csv_path


ERRORS = {
    "missing column": "missing column 'Patient ID'",
    "not utf-8": "not a readable CSV",
    "unknown finding": "unknown finding 'Pneumonitis'",
    "no finding mixed": "'No Finding' together with findings",
    "empty cell": "empty",
    "duplicate image": "duplicate image",
    "no rows": "no rows",
    "missing image": "not found",
    "patient in both lists": "in both",
    "image in both lists": "in both",
    "unlisted image": "in neither",
    "listed unknown image": "99999999_000.png",
    "no list": "official split list not found",
    "no csv": "no Data_Entry_2017.csv",
}


@pytest.mark.parametrize("how", sorted(ERRORS))
def test_malformed_layouts_raise_one_error_naming_the_file(root, how):
    named = corrupt(root, how)
    with pytest.raises(DatasetError) as info:
        load_dataset("chestxray14", root, 32)
    message = str(info.value)
    assert ERRORS[how] in message and str(named) in message


def test_patient_in_both_lists_names_the_patient(root):
    patient = share_patient_across_lists(root)
    with pytest.raises(DatasetError, match=f"patient '{patient}' has images in both"):
        index_chestxray14(root)


def test_stale_split_file_is_an_error(root):
    index_chestxray14(root)
    splits = (root / "splits.csv").read_text().splitlines()
    image, split = splits[1].split(",")
    splits[1] = f"{image},{'train' if split == 'test' else 'test'}"
    (root / "splits.csv").write_text("\n".join(splits) + "\n")
    with pytest.raises(DatasetError, match="splits.csv"):
        index_chestxray14(root)


def test_generator_is_deterministic_by_seed(tmp_path):
    a = generate_chestxray14(tmp_path / "a", 12, size=32, seed=5)
    b = generate_chestxray14(tmp_path / "b", 12, size=32, seed=5)
    c = generate_chestxray14(tmp_path / "c", 12, size=32, seed=6)
    assert digest(a) == digest(b) != digest(c)


def test_generated_labels_look_like_the_real_set(tmp_path):
    from shared.datasets.synth_chestxray14 import assign_findings, images_per_patient

    rng = np.random.default_rng(0)
    counts = images_per_patient(4000, rng)
    assert counts.sum() == 4000 and counts.max() > 3 and 2.5 < counts.mean() < 3.5
    labels = assign_findings(np.repeat(np.arange(len(counts)), counts), rng)
    frequency = labels.mean(axis=0)
    assert FINDINGS[int(np.argmax(frequency))] == "Infiltration"
    assert FINDINGS[int(np.argmin(frequency))] == "Hernia"
    assert 0.45 < (labels.sum(axis=1) == 0).mean() < 0.62  # about half "No Finding"
    assert (labels.sum(axis=1) >= 2).mean() > 0.1  # findings co-occur
    effusion, atelectasis = FINDINGS.index("Effusion"), FINDINGS.index("Atelectasis")
    both = (labels[:, effusion] & labels[:, atelectasis]).mean()
    assert both > 1.5 * frequency[effusion] * frequency[atelectasis]


@pytest.mark.parametrize(
    ("finding", "region", "sign"),
    [
        ("Cardiomegaly", (slice(30, 44), slice(38, 50)), 1),  # heart spreads into the left lung
        ("Effusion", (slice(34, 46), slice(4, 60)), 1),  # fluid at the lung bases
        ("Emphysema", (slice(14, 34), slice(6, 58)), -1),  # darker, hyperinflated lungs
    ],
)
def test_findings_change_the_picture_where_expected(finding, region, sign):
    """Same patient, same exposure, with and without the finding (findings draw from their
    own random stream, so nothing else moves)."""
    k = FINDINGS.index(finding)
    diffs = [
        float(render_radiograph([k], 64, (0, p), (0, p, 1))[region].mean())
        - float(render_radiograph([], 64, (0, p), (0, p, 1))[region].mean())
        for p in range(12)
    ]
    assert all(sign * d >= 0 for d in diffs) and sign * np.mean(diffs) > 4, diffs


def test_generator_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n must be >= 3"):
        generate_chestxray14(tmp_path, 2)
    with pytest.raises(ValueError, match="size must be >= 32"):
        generate_chestxray14(tmp_path, 10, size=16)
    with pytest.raises(ValueError, match="finding indices"):
        render_radiograph([14], 32, 0, 0)
