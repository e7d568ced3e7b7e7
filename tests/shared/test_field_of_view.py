"""The raw-capture field of view: how each dataset declares it, how ``shared.imaging``
applies it, and how the manifest carries it (with a default for manifests that predate it).

The fairness point: a raw capture cropped to the field of view and a dataset image (the
same crop, saved as the dataset stores it) give the model bit-identical tensors, because
after the crop both go through the one decode + square + resize + normalise path.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from shared.datasets import DATASETS, get_dataset_spec, synth_blood
from shared.datasets.registry import BLOODMNIST_CROP_PX, PBC_CAPTURE_PX
from shared.imaging import (
    WHOLE_IMAGE,
    FieldOfView,
    PreprocessSpec,
    crop_field_of_view,
    decode_image,
    normalize,
    open_image,
    preprocess,
    to_square_uint8,
)
from shared.manifest import InputSpec, ManifestError

BLOOD = get_dataset_spec("bloodmnist").raw_capture


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def raw_preprocess(data: bytes, spec: PreprocessSpec, fov: FieldOfView) -> np.ndarray:
    """What a service does with a raw upload."""
    image = decode_image(data, target_size=fov.draft_size(spec.size))
    return normalize(to_square_uint8(crop_field_of_view(image, fov), spec.size), spec)


def test_each_dataset_declares_its_field_of_view() -> None:
    assert BLOOD.centre_crop * min(PBC_CAPTURE_PX) == pytest.approx(BLOODMNIST_CROP_PX)
    assert "PBC" in BLOOD.capture and BLOOD.describe() == "the centre 56% of the shorter side"
    assert DATASETS["dr"].raw_capture.whole_image
    assert DATASETS["chestxray14"].raw_capture.whole_image
    assert all(isinstance(spec.raw_capture, FieldOfView) for spec in DATASETS.values())


def test_the_bloodmnist_crop_of_a_pbc_capture_is_200_px() -> None:
    capture = Image.new("RGB", PBC_CAPTURE_PX)
    assert crop_field_of_view(capture, BLOOD).size == (200, 200)
    pixels = np.zeros((360, 363, 3), np.uint8)
    pixels[80:280, 81:281] = 255  # the centred 200 px square: (363 - 200) // 2 = 81 across
    cropped = np.asarray(crop_field_of_view(Image.fromarray(pixels), BLOOD))
    assert cropped.min() == 255
    assert crop_field_of_view(Image.new("RGB", (720, 1000)), BLOOD).size == (400, 400)


def test_whole_image_is_left_alone() -> None:
    image = Image.new("RGB", (50, 30))
    assert crop_field_of_view(image, WHOLE_IMAGE) is image
    assert WHOLE_IMAGE.draft_size(64) == 64 and WHOLE_IMAGE.describe() == "the whole image"


@pytest.mark.parametrize("crop", [0, -0.5, 1.01, float("nan"), True, "0.5"])
def test_field_of_view_refuses_bad_crops(crop) -> None:
    with pytest.raises(ValueError, match="centre_crop"):
        FieldOfView(centre_crop=crop)


@pytest.mark.parametrize("label", range(8))
def test_raw_capture_and_dataset_image_give_the_same_tensor(label: int) -> None:
    capture = Image.fromarray(synth_blood.render_capture(label, (1, label)))
    assert capture.size == PBC_CAPTURE_PX
    dataset_image = crop_field_of_view(capture, BLOOD)
    spec = PreprocessSpec(64)
    raw = raw_preprocess(encode(capture), spec, BLOOD)
    np.testing.assert_array_equal(raw, preprocess(encode(dataset_image), spec))
    whole = preprocess(encode(capture), spec)  # the capture squashed whole: another image
    assert np.abs(whole - raw).mean() > 0.1


def test_jpeg_draft_keeps_enough_pixels_for_the_crop() -> None:
    """A camera-sized JPEG capture is draft-decoded small, but never below the crop's need."""
    capture = Image.fromarray(synth_blood.render_capture(0, 3)).resize((1452, 1440))
    data = encode(capture, "JPEG", quality=95)
    for size in (32, 64, 224):
        header = open_image(data, target_size=BLOOD.draft_size(size))
        assert crop_field_of_view(header, BLOOD).size[0] >= size
    # drafted for the model size alone, the crop would be upsampled from 200 px
    assert crop_field_of_view(open_image(data, target_size=224), BLOOD).size[0] < 224
    spec = PreprocessSpec(224)
    full = normalize(to_square_uint8(crop_field_of_view(decode_image(data), BLOOD), 224), spec)
    np.testing.assert_allclose(raw_preprocess(data, spec, BLOOD), full, atol=0.15)


def test_render_capture_is_a_wider_smear_around_the_cell() -> None:
    first = synth_blood.render_capture(4, 9)
    assert first.shape == (360, 363, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, synth_blood.render_capture(4, 9))
    small = synth_blood.render_capture(4, 9, crop_px=40, capture_px=(80, 72))
    assert small.shape == (72, 80, 3)
    with pytest.raises(ValueError, match="crop_px"):
        synth_blood.render_capture(4, 9, crop_px=400)


def input_dict(**fields: object) -> dict:
    return {"size": 64, "layout": "NHWC", "mean": [0.5] * 3, "std": [0.25] * 3, **fields}


def test_manifest_carries_the_field_of_view() -> None:
    spec = InputSpec(size=64, mean=[0.5] * 3, std=[0.25] * 3, raw_capture=BLOOD)
    data = spec.to_dict()
    assert data["raw_capture"] == {"centre_crop": BLOOD.centre_crop, "capture": BLOOD.capture}
    assert InputSpec.from_dict(data) == spec
    assert InputSpec(**data).raw_capture == BLOOD  # how derived artifacts copy it


def test_manifest_without_the_field_means_the_whole_image() -> None:
    assert InputSpec.from_dict(input_dict()).raw_capture == WHOLE_IMAGE


@pytest.mark.parametrize(("raw_capture", "field"), [
    ({"centre_crop": 0}, "input.raw_capture.centre_crop"),
    ({"centre_crop": 1.5}, "input.raw_capture.centre_crop"),
    ({"centre_crop": "half"}, "input.raw_capture.centre_crop"),
    ({"centre_crop": None}, "input.raw_capture.centre_crop"),
    ({"capture": 7}, "input.raw_capture.capture"),
    ({"crop": 0.5}, "input.raw_capture.crop"),
    ("centre", "input.raw_capture"),
])
def test_manifest_refuses_a_bad_field_of_view(raw_capture, field) -> None:
    with pytest.raises(ManifestError) as caught:
        InputSpec.from_dict(input_dict(raw_capture=raw_capture))
    assert caught.value.field == field
