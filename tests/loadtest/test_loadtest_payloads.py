"""``loadtest/_payloads.py``: the pool of real image files and the bodies that carry them."""

from __future__ import annotations

import base64
import io
import itertools
import json
from pathlib import Path

import _payloads
import numpy as np
import pytest
from _config import ConfigError, PayloadSettings
from _payloads import MULTIPART_CONTENT_TYPE, load_pool, synthetic_source
from PIL import Image
from werkzeug.test import EnvironBuilder

from shared.datasets import index_dr, write_medmnist_npz
from shared.datasets.synth_dr import generate_dr


def image_file(path: Path, size: tuple[int, int], fmt: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 256, (size[1], size[0], 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path, format=fmt)
    return path


@pytest.fixture(scope="module")
def dr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dr(tmp_path_factory.mktemp("dr"), 20, size=48, seed=1)


def test_camera_profile_sends_the_files_as_they_are(tmp_path: Path) -> None:
    jpeg = image_file(tmp_path / "a.jpeg", (120, 80), "JPEG")
    png = image_file(tmp_path / "sub" / "b.png", (50, 60), "PNG")
    image_file(tmp_path / ".cache" / "c.png", (8, 8), "PNG")  # hidden folder: skipped
    (tmp_path / "labels.csv").write_text("not an image")
    pool = load_pool(PayloadSettings(source=tmp_path))
    assert [(p.name, p.data, p.content_type, p.width, p.height) for p in pool.payloads] == [
        ("a.jpeg", jpeg.read_bytes(), "image/jpeg", 120, 80),
        ("b.png", png.read_bytes(), "image/png", 50, 60)]
    assert pool.describe().startswith(f"2 camera images from {tmp_path} (mean 85x70 px, ")


def test_small_profile_reencodes_at_the_model_size(tmp_path: Path) -> None:
    image_file(tmp_path / "a.jpeg", (300, 200), "JPEG")
    image_file(tmp_path / "b.png", (90, 120), "PNG")
    pool = load_pool(PayloadSettings(source=tmp_path, profile="small", size=64))
    for payload, fmt in zip(pool.payloads, ("JPEG", "PNG"), strict=True):
        with Image.open(io.BytesIO(payload.data)) as image:
            assert (image.format, image.size) == (fmt, (64, 64))
        assert payload.content_type == f"image/{fmt.lower()}"


def test_a_dr_dataset_gives_one_split_without_writing_it(dr_dir: Path) -> None:
    records = index_dr(dr_dir, write_splits=False)
    pool = load_pool(PayloadSettings(source=dr_dir, split="val"))
    assert sorted(p.name for p in pool.payloads) == sorted(
        r.file.name for r in records if r.split == "val")
    assert len(load_pool(PayloadSettings(source=dr_dir, split="all")).payloads) == 20
    assert not (dr_dir / "splits.csv").exists()


def test_count_takes_a_seeded_sample(dr_dir: Path) -> None:
    def names(seed: int) -> list[str]:
        settings = PayloadSettings(source=dr_dir, split="all", count=5, seed=seed)
        return [p.name for p in load_pool(settings).payloads]

    assert len(names(0)) == 5 and names(0) == names(0)
    assert names(0) != names(1)


def test_a_medmnist_npz_gives_png_images_of_a_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8),
                  rng.integers(0, 8, (n, 1), dtype=np.uint8))
              for s, n in (("train", 6), ("val", 2), ("test", 3))}
    npz = write_medmnist_npz(tmp_path / "bloodmnist.npz", splits, n_classes=8)
    pool = load_pool(PayloadSettings(source=npz))
    assert [p.name for p in pool.payloads] == ["test_0.png", "test_1.png", "test_2.png"]
    with Image.open(io.BytesIO(pool.payloads[1].data)) as image:
        assert np.array_equal(np.asarray(image), splits["test"][0][1])


def test_without_a_source_a_synthetic_set_is_generated_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = synthetic_source
    monkeypatch.setattr(_payloads, "synthetic_source",
                        lambda cache_dir: real(cache_dir, n=2, size=64))
    pool = load_pool(PayloadSettings(split="test"), cache_dir=tmp_path)  # split: not applied
    assert sorted(p.name for p in pool.payloads) == ["1_left.jpeg", "1_right.jpeg"]
    target = real(tmp_path, n=2, size=64)
    stamp = (target / "1_left.jpeg").stat().st_mtime_ns
    assert real(tmp_path, n=2, size=64) == target
    assert (target / "1_left.jpeg").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [target.name]


def test_request_bodies_carry_the_image(tmp_path: Path) -> None:
    data = image_file(tmp_path / 'odd "name".png', (16, 16), "PNG").read_bytes()
    payload = load_pool(PayloadSettings(source=tmp_path)).payloads[0]
    body, content_type = payload.upload("multipart")
    assert content_type == MULTIPART_CONTENT_TYPE
    request = EnvironBuilder(method="POST", data=body, content_type=content_type).get_request()
    upload = request.files["image"]
    assert upload.read() == data and upload.mimetype == "image/png" and upload.filename
    assert payload.upload("raw") == (data, "image/png")
    (tensor,) = json.loads(payload.oip_json)["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("input", "BYTES", [1])
    assert base64.b64decode(tensor["data"][0]) == data
    assert payload.input_kind == "raw" and payload.predict_path == "/predict"
    assert "parameters" not in json.loads(payload.oip_json)  # a raw capture: the default


def test_images_of_a_dataset_are_sent_as_dataset_images(tmp_path: Path, dr_dir: Path) -> None:
    """A service crops a raw capture to its dataset's field of view; images drawn from the
    dataset itself already have it, so they say ``input=dataset``."""
    rng = np.random.default_rng(0)
    splits = {s: (rng.integers(0, 256, (2, 28, 28, 3), dtype=np.uint8),
                  rng.integers(0, 8, (2, 1), dtype=np.uint8)) for s in ("train", "val", "test")}
    npz = write_medmnist_npz(tmp_path / "bloodmnist.npz", splits, n_classes=8)
    for source, profile in ((npz, "camera"), (npz, "small"), (dr_dir, "camera")):
        for payload in load_pool(PayloadSettings(source=source, profile=profile,
                                                 size=32)).payloads:
            assert payload.input_kind == "dataset"
            assert payload.predict_path == "/predict?input=dataset"
            assert json.loads(payload.oip_json)["parameters"] == {"input": "dataset"}


def test_picker_is_seeded(dr_dir: Path) -> None:
    pool = load_pool(PayloadSettings(source=dr_dir, split="all"))
    first = [p.name for p in itertools.islice(pool.picker(("onnx", 0)), 20)]
    assert first == [p.name for p in itertools.islice(pool.picker(("onnx", 0)), 20)]
    assert first != [p.name for p in itertools.islice(pool.picker(("onnx", 1)), 20)]


def test_unusable_sources_fail_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no images in"):
        load_pool(PayloadSettings(source=tmp_path))
    with pytest.raises(ConfigError, match="neither a directory"):
        load_pool(PayloadSettings(source=tmp_path / "missing"))
    (tmp_path / "broken.jpg").write_text("not a JPEG")
    with pytest.raises(ConfigError, match="broken.jpg is not a readable image"):
        load_pool(PayloadSettings(source=tmp_path))
