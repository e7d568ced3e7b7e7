"""Tests for shared.imaging: decoding, limits, colour modes, geometry, normalisation, augment.

Every input is generated here, tiny (32-64 px) except where size is the point; huge images
are built cheaply (hand-written PNG headers, a patched JPEG SOF, zlib-compressed 1-bit rows).
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from shared import imaging
from shared.imaging import (
    RESIZE_FILTER,
    AugmentDraw,
    AugmentParams,
    ImageError,
    ImageLimits,
    ImageTooLarge,
    PreprocessSpec,
    TooManyPixels,
    UndecodableImage,
    UnsupportedImageFormat,
    apply_augment,
    augment,
    decode_image,
    normalize,
    preprocess,
    preprocess_batch,
    sample_augment,
    square_pixels,
    to_square_uint8,
)

JPEG_TOLERANCE = 12  # max per-channel error allowed for lossy JPEG round trips
EXIF_ORIENTATION_TAG = 0x0112
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)


# --------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    """Encode a Pillow image to bytes in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def quadrants(width: int = 48, height: int = 40) -> np.ndarray:
    """RGB test card: red/green/blue/grey quadrants (top-left, top-right, bottom-left, -right)."""
    arr = np.empty((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    arr[:h2, :w2], arr[:h2, w2:], arr[h2:, :w2], arr[h2:, w2:] = RED, GREEN, BLUE, GREY
    return arr


def noise_image(size: int = 64, seed: int = 0) -> Image.Image:
    """Textured RGB image (JPEG-incompressible, so truncation hits the entropy data)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def rgb_array(data: bytes, **kwargs) -> np.ndarray:
    """Decode with :func:`decode_image` and return the RGB pixels as int array."""
    img = decode_image(data, **kwargs)
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def handmade_png(width: int, height: int, idat: bytes, *, bit_depth: int = 1) -> bytes:
    """Greyscale PNG with arbitrary header dimensions (no pixels are generated for them)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def valid_one_bit_png(side: int) -> bytes:
    """A real, all-black 1-bit PNG of side x side pixels; compresses to a few KB."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + packed bits
    return handmade_png(side, side, zlib.compress(row * side, 9))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small baseline JPEG whose SOF0 header is patched to claim width x height."""
    data = bytearray(encode(Image.new("RGB", (16, 16), GREY), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)  # marker(2) length(2) precision(1)
    return bytes(data)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("fmt", "params", "tolerance"),
    [
        ("JPEG", {"quality": 95}, JPEG_TOLERANCE),
        ("PNG", {}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("TIFF", {"compression": "tiff_lzw"}, 0),
        ("WEBP", {"lossless": True}, 0),
    ],
)
def test_decodes_each_supported_format(fmt: str, params: dict, tolerance: int) -> None:
    card = quadrants()
    got = rgb_array(encode(Image.fromarray(card), fmt, **params))
    assert got.shape == card.shape
    # Compare away from the quadrant edges, where lossy codecs smear colours.
    inner = (slice(4, 16), slice(4, 20))
    assert np.abs(got[inner] - card[inner].astype(int)).max() <= tolerance
    assert np.abs(got[-4:, -4:] - np.array(GREY)).max() <= tolerance


@pytest.mark.parametrize(
    ("orientation", "marker_corner"),
    [(6, (slice(0, 10), slice(-10, None))), (8, (slice(-10, None), slice(0, 10)))],
)
def test_exif_orientation_rotates_pixels(orientation: int, marker_corner: tuple) -> None:
    """Stored 64x32 with a red top-left marker; 6 = rotate 90 CW, 8 = rotate 90 CCW."""
    stored = np.full((32, 64, 3), BLUE, np.uint8)
    stored[:12, :12] = RED
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())

    img = decode_image(data)
    assert img.size == (32, 64)  # width and height swapped
    got = np.asarray(img).astype(int)
    assert np.abs(got[marker_corner].mean(axis=(0, 1)) - RED).max() < JPEG_TOLERANCE
    assert np.abs(got[28:36, 12:20].mean(axis=(0, 1)) - BLUE).max() < JPEG_TOLERANCE


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (32, 32), (255, 0, 0, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    got = rgb_array(data)
    assert np.abs(got - np.array((0, 255, 255))).max() <= JPEG_TOLERANCE  # cyan


# --------------------------------------------------------------------------- colour modes


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    values = np.array([0, 257 * 100, 1000, 65535], np.uint16)
    data = encode(Image.fromarray(np.tile(values, (32, 8))), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    got = rgb_array(data)
    # 1000 * 255 / 65535 = 3.89 -> 4; clipping would give 255 for everything above 255.
    np.testing.assert_array_equal(got[0, :4, 0], [0, 100, 4, 255])
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_thirty_two_bit_int_tiff_uses_sixteen_bit_range() -> None:
    values = np.array([-5, 0, 257 * 100, 65535, 70000], np.int32)
    data = encode(Image.fromarray(np.tile(values, (32, 1))), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    np.testing.assert_array_equal(rgb_array(data)[0, :, 1], [0, 0, 100, 255, 255])


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.0, 0.5, 1.0], [0, 128, 255]), ([-10.0, 0.0, 30.0], [0, 64, 255])],
)
def test_float_tiff(values: list[float], expected: list[int]) -> None:
    data = encode(Image.fromarray(np.tile(np.float32(values), (32, 1))), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"
    np.testing.assert_array_equal(rgb_array(data)[0, :, 0], expected)


def test_rgba_is_composited_on_black() -> None:
    pixels = np.array([[[200, 100, 50, 255], [255, 255, 255, 0], [200, 200, 200, 128]]], np.uint8)
    got = rgb_array(encode(Image.fromarray(np.repeat(pixels, 32, axis=0)), "PNG"))
    np.testing.assert_array_equal(got[0], [[200, 100, 50], [0, 0, 0], [100, 100, 100]])


def test_la_is_composited_on_black() -> None:
    pixels = np.array([[[200, 255], [200, 0], [200, 128]]], np.uint8)
    img = Image.fromarray(np.repeat(pixels, 32, axis=0), mode="LA")
    np.testing.assert_array_equal(rgb_array(encode(img, "PNG"))[0, :, 0], [200, 0, 100])


def test_palette_with_and_without_transparency() -> None:
    img = Image.new("P", (32, 32), 1)
    img.putpalette([0, 0, 0, 10, 200, 30, 250, 250, 250])
    img.paste(2, (0, 0, 16, 32))
    plain = rgb_array(encode(img, "PNG"))
    np.testing.assert_array_equal(plain[0, [0, 31]], [[250, 250, 250], [10, 200, 30]])
    transparent = rgb_array(encode(img, "PNG", transparency=2))
    np.testing.assert_array_equal(transparent[0, [0, 31]], [[0, 0, 0], [10, 200, 30]])


def test_grayscale_and_one_bit() -> None:
    np.testing.assert_array_equal(rgb_array(encode(Image.new("L", (32, 32), 77), "PNG"))[0, 0], 77)
    checker = Image.fromarray((np.indices((32, 32)).sum(axis=0) % 2).astype(bool))
    assert checker.mode == "1"
    got = rgb_array(encode(checker, "PNG"))
    assert set(np.unique(got)) == {0, 255}
    np.testing.assert_array_equal(got[0, :2], [[0, 0, 0], [255, 255, 255]])


# --------------------------------------------------------------------------- bad input


def test_truncated_jpeg_and_png_are_undecodable() -> None:
    for fmt in ("JPEG", "PNG"):
        data = encode(noise_image(), fmt)
        with pytest.raises(UndecodableImage, match="truncated"):
            decode_image(data[: len(data) * 6 // 10])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "0 bytes"),
        (b"Hello, I am a plain text file posing as image.jpg\n" * 3, "not a recognised image"),
        (bytes(range(256)) * 4, "not a recognised image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 60, None),  # JPEG magic, garbage after
        (PNG_SIGNATURE + b"\x00" * 40, None),
    ],
)
def test_garbage_is_undecodable(data: bytes, message: str | None) -> None:
    with pytest.raises(UndecodableImage, match=message) as info:
        decode_image(data)
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (encode(Image.new("P", (8, 8)), "GIF"), "GIF"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "HEIC"),
        (bytes(128) + b"DICM" + bytes(64), "DICOM"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ],
)
def test_real_but_unsupported_formats_get_415(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedImageFormat, match=name) as info:
        decode_image(data)
    assert info.value.http_status == 415


def test_error_classes_and_statuses() -> None:
    assert issubclass(ImageError, ValueError)
    assert issubclass(TooManyPixels, ImageTooLarge)
    statuses = {
        cls: cls.http_status
        for cls in (ImageError, UndecodableImage, UnsupportedImageFormat, ImageTooLarge)
    }
    assert statuses == {
        ImageError: 400,
        UndecodableImage: 400,
        UnsupportedImageFormat: 415,
        ImageTooLarge: 413,
    }
    assert TooManyPixels.http_status == 413


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt TIFF tags
def test_mutated_bytes_never_escape_as_raw_errors() -> None:
    """Seeded byte flips and cuts of valid files: either an RGB image or an ImageError."""
    rng = np.random.default_rng(1234)
    originals = [encode(noise_image(32), fmt) for fmt in ("JPEG", "PNG", "BMP", "TIFF", "WEBP")]
    for original in originals:
        for _ in range(12):
            data = bytearray(original)
            for position in rng.integers(0, len(data), size=4):
                data[position] = int(rng.integers(0, 256))
            for candidate in (bytes(data), bytes(data[: int(rng.integers(1, len(data)))])):
                with contextlib.suppress(ImageError):
                    assert decode_image(candidate).mode == "RGB"


# --------------------------------------------------------------------------- limits


def test_over_limit_bytes_is_413_before_parsing() -> None:
    data = encode(noise_image(), "PNG")
    with pytest.raises(ImageTooLarge, match="bytes") as info:
        decode_image(data, limits=ImageLimits(max_bytes=len(data) - 1))
    assert type(info.value) is ImageTooLarge and info.value.http_status == 413
    decode_image(data, limits=ImageLimits(max_bytes=len(data)))


def test_pixel_limit_is_checked_from_the_header() -> None:
    data = encode(noise_image(64), "PNG")
    with pytest.raises(TooManyPixels, match="64x64"):
        decode_image(data, limits=ImageLimits(max_pixels=64 * 64 - 1))
    decode_image(data, limits=ImageLimits(max_pixels=64 * 64))


@pytest.mark.parametrize("pillow_limit", ["default", "disabled"])
def test_tiny_png_claiming_100k_squared_is_refused(
    monkeypatch: pytest.MonkeyPatch, pillow_limit: str
) -> None:
    """Its IDAT holds one byte: decoding pixels would fail, so TooManyPixels proves the
    check ran on the header; it must hold even when a caller disabled Pillow's own check."""
    if pillow_limit == "disabled":
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    bomb = handmade_png(100_000, 100_000, zlib.compress(b"\x00"))
    assert len(bomb) < 100
    with pytest.raises(TooManyPixels) as info:
        decode_image(bomb)
    assert info.value.http_status == 413


@pytest.mark.parametrize("warning_action", ["ignore", "error"])
def test_ten_thousand_squared_png_is_refused(warning_action: str) -> None:
    """A real, valid 10,000 x 10,000 PNG (100 MP): over the 50 MP default; Pillow also warns
    (its 89 MP threshold), and a caller turning that warning into an error changes nothing."""
    data = valid_one_bit_png(10_000)
    assert len(data) < 100_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert Image.open(io.BytesIO(data)).size == (10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter(warning_action, Image.DecompressionBombWarning)
        with pytest.raises(TooManyPixels, match="pixels") as info:
            decode_image(data)
    if warning_action == "ignore":
        assert "10,000x10,000" in str(info.value)  # our own check, with the dimensions


def test_jpeg_claiming_ten_thousand_squared_is_refused() -> None:
    data = jpeg_claiming(10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert Image.open(io.BytesIO(data)).size == (10_000, 10_000)
        with pytest.raises(TooManyPixels):
            decode_image(data, target_size=224)


def test_zero_width_header_is_undecodable() -> None:
    with pytest.raises(UndecodableImage):
        decode_image(jpeg_claiming(0, 16))


def test_pillow_global_state_is_left_alone() -> None:
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    with pytest.raises(TooManyPixels):
        decode_image(handmade_png(100_000, 100_000, b""))
    data = encode(noise_image(), "JPEG")
    with pytest.raises(UndecodableImage):
        decode_image(data[: len(data) // 2])
    assert before == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


# --------------------------------------------------------------------------- draft + geometry


def test_draft_decodes_big_jpeg_smaller() -> None:
    gradient = np.linspace(0, 255, 1024, dtype=np.uint8)
    big = Image.fromarray(np.broadcast_to(gradient[None, :, None], (768, 1024, 3)).copy())
    data = encode(big, "JPEG", quality=90)
    assert decode_image(data).size == (1024, 768)
    # scale = min(1024 // 64, 768 // 64) = 12 -> largest DCT scale 1/8 -> 128 x 96
    assert decode_image(data, target_size=64).size == (128, 96)
    # scale = min(1024 // 300, 768 // 300) = 2 -> 1/2; short side stays >= target
    assert decode_image(data, target_size=300).size == (512, 384)
    # Not a JPEG: no draft, full size.
    assert decode_image(encode(big, "PNG"), target_size=64).size == (1024, 768)
    with pytest.raises(ValueError, match="target_size"):  # a caller bug, not a 400
        decode_image(data, target_size=0)


def test_to_square_center_crops_then_resizes() -> None:
    wide = np.zeros((32, 64, 3), np.uint8)
    wide[:, :16], wide[:, 16:48], wide[:, 48:] = RED, GREEN, BLUE
    square = to_square_uint8(Image.fromarray(wide), 16)
    assert square.shape == (16, 16, 3) and square.dtype == np.uint8
    assert (square == GREEN).all()  # nothing from the cropped-away sides bleeds in
    assert square.flags.writeable
    tall = to_square_uint8(Image.fromarray(wide.transpose(1, 0, 2)), 16)
    assert (tall == GREEN).all()


def test_to_square_accepts_any_mode() -> None:
    out = to_square_uint8(Image.new("L", (40, 32), 90), 24)
    assert out.shape == (24, 24, 3) and (out == 90).all()


# --------------------------------------------------------------------------- tensors


def test_normalize_matches_hand_computation() -> None:
    pixels = np.array([[[0, 128, 255], [255, 0, 64]]], np.uint8)  # HWC, 1x2
    spec = PreprocessSpec(size=2)
    mean, std = np.array(imaging.IMAGENET_MEAN), np.array(imaging.IMAGENET_STD)
    # pixel (0, 0) red channel: (0/255 - 0.485) / 0.229 = -2.117904
    expected = (pixels / 255.0 - mean) / std
    got = normalize(pixels, spec)
    assert got.dtype == np.float32 and got.shape == pixels.shape
    assert got[0, 0, 0] == pytest.approx(-2.117904, abs=1e-5)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    batch = np.stack([pixels, pixels[:, ::-1]])  # NHWC
    np.testing.assert_allclose(normalize(batch, spec)[1], expected[:, ::-1], atol=2e-6)


def test_normalize_custom_spec_and_validation() -> None:
    spec = PreprocessSpec(size=1, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    got = normalize(np.array([[[0, 255, 51]]], np.uint8), spec)
    np.testing.assert_allclose(got, [[[-1.0, 1.0, -0.6]]], atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        normalize(np.zeros((2, 2, 3), np.float32), spec)
    with pytest.raises(ValueError, match="channels"):
        normalize(np.zeros((2, 2, 4), np.uint8), spec)


def test_preprocess_and_batch() -> None:
    spec = PreprocessSpec(size=32)
    items = [
        encode(noise_image(64, seed=1), "JPEG"),
        encode(noise_image(48, seed=2), "PNG"),
        encode(Image.fromarray(quadrants()), "WEBP"),
    ]
    batch = preprocess_batch(items, spec)
    assert batch.shape == (3, 32, 32, 3) and batch.dtype == np.float32
    for index, data in enumerate(items):
        single = preprocess(data, spec)
        assert single.shape == (32, 32, 3) and single.dtype == np.float32
        np.testing.assert_array_equal(batch[index], single)
    assert preprocess_batch([], spec).shape == (0, 32, 32, 3)


def test_preprocess_batch_names_the_bad_item() -> None:
    good = encode(noise_image(32), "PNG")
    with pytest.raises(UndecodableImage) as info:
        preprocess_batch([good, b"not an image"], PreprocessSpec(size=16))
    assert "batch item 1" in info.value.__notes__


def test_preprocess_spec_from_manifest_input() -> None:
    spec = PreprocessSpec.from_manifest_input(
        {"size": 64, "layout": "NHWC", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}
    )
    assert spec == PreprocessSpec(size=64, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    assert PreprocessSpec.from_manifest_input({"size": 8}).mean == imaging.IMAGENET_MEAN
    with pytest.raises(ValueError, match="NHWC"):
        PreprocessSpec.from_manifest_input({"size": 8, "layout": "NCHW"})
    with pytest.raises(ValueError, match="size"):
        PreprocessSpec.from_manifest_input({"layout": "NHWC"})
    assert PreprocessSpec(size=np.int64(8)).size == 8
    with pytest.raises(ValueError, match="size"):
        PreprocessSpec(size=8.0)
    with pytest.raises(ValueError, match="std"):
        PreprocessSpec(size=8, std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="mean"):
        PreprocessSpec(size=8, mean=(0.5, 0.5))


# --------------------------------------------------------------------------- augmentation


def test_augment_is_deterministic_per_generator() -> None:
    image = np.asarray(noise_image(48))
    original = image.copy()
    first = augment(image, np.random.default_rng(7))
    again = augment(image, np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)
    assert first.dtype == np.uint8 and first.shape == image.shape
    others = [augment(image, np.random.default_rng(seed)) for seed in range(8)]
    assert sum(not np.array_equal(first, other) for other in others) >= 7
    np.testing.assert_array_equal(image, original)  # input untouched


def test_augment_draws_stay_in_range_and_streams_stay_aligned() -> None:
    rng = np.random.default_rng(0)
    draws = [sample_augment(rng) for _ in range(400)]
    angles = np.array([d.angle_deg for d in draws])
    assert np.abs(angles).max() <= 20.0 and angles.min() < -15 and angles.max() > 15
    assert 0.4 < np.mean([d.flip for d in draws]) < 0.6
    for factor in ("brightness", "contrast"):
        values = np.array([getattr(d, factor) for d in draws])
        assert values.min() >= 0.8 and values.max() <= 1.2
    # Same number of draws whatever the params, so a shared generator stays in step.
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    sample_augment(rng_a)
    sample_augment(rng_b, AugmentParams(0.0, 0.0, 0.0, 0.0))
    assert rng_a.random() == rng_b.random()


def test_augment_flip_only_and_identity() -> None:
    image = np.asarray(noise_image(32))
    flip_only = AugmentParams(flip_probability=1.0, max_rotation_deg=0, brightness=0, contrast=0)
    np.testing.assert_array_equal(
        augment(image, np.random.default_rng(0), params=flip_only), image[:, ::-1]
    )
    nothing = AugmentParams(flip_probability=0.0, max_rotation_deg=0, brightness=0, contrast=0)
    same = augment(image, np.random.default_rng(0), params=nothing)
    np.testing.assert_array_equal(same, image)
    assert not np.shares_memory(same, image) and same.flags.writeable


def test_augment_rotation_direction_and_fill() -> None:
    image = np.asarray(noise_image(32))
    ccw = apply_augment(image, AugmentDraw(flip=False, angle_deg=90.0, brightness=1, contrast=1))
    np.testing.assert_array_equal(ccw, np.rot90(image))  # positive = counter-clockwise
    white = np.full((64, 64, 3), 255, np.uint8)
    tilted = apply_augment(white, AugmentDraw(False, 20.0, 1.0, 1.0))
    assert (tilted[0, 0] == 0).all() and (tilted[32, 32] == 255).all()  # black fill in corners


def test_augment_brightness_contrast_numbers() -> None:
    flat = np.full((8, 8, 3), 100, np.uint8)
    brighter = apply_augment(flat, AugmentDraw(False, 0.0, brightness=1.1, contrast=1.0))
    assert (brighter == 110).all()
    clipped = apply_augment(np.full((8, 8, 3), 250, np.uint8), AugmentDraw(False, 0.0, 1.2, 1.0))
    assert (clipped == 255).all()
    halves = np.full((8, 8, 3), 50, np.uint8)
    halves[4:] = 150  # mean luma 100
    contrasted = apply_augment(halves, AugmentDraw(False, 0.0, brightness=1.0, contrast=1.2))
    assert (contrasted[:4] == 40).all() and (contrasted[4:] == 160).all()


def test_augment_rejects_non_rgb_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        augment(np.zeros((8, 8), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        augment(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))


@pytest.mark.parametrize("shape, mode", [((24, 24), "RGB"), ((40, 32), "RGB"),
                                         ((32, 40), "RGB"), ((24, 24), "L"), ((16, 16), "RGBA")])
def test_square_pixels_are_to_square_uint8s_without_the_copies(shape: tuple[int, int],
                                                               mode: str) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (*shape, 3), np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    view = square_pixels(image, 24)
    assert np.array_equal(view, to_square_uint8(image, 24)) and view.dtype == np.uint8
    assert not view.flags.writeable  # only for callers that read
    # the skipped same-size resize is a plain copy in Pillow: the very same pixels
    rgb = image.convert("RGB")
    assert np.array_equal(np.asarray(rgb.resize(rgb.size, RESIZE_FILTER)), np.asarray(rgb))
