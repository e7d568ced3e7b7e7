"""The one image preprocessing used by every trainer and every service.

Bytes in, NHWC float32 out, with the same function on both sides of the train/serve
boundary so that a model never sees pixels prepared differently from how it was trained.

Pipeline: limits on encoded bytes -> header parse (Pillow, restricted to the supported
formats) -> pixel-count limit from the header, before any pixel is decoded -> JPEG
``draft()`` (DCT-domain downscale during decode) -> EXIF orientation -> any mode to RGB ->
centre crop to a square and antialiased resize -> ``(x / 255 - mean) / std`` as one
multiply-add in float32.

A raw capture (the photo a dataset image was cut from) first gets the dataset's
:class:`FieldOfView` (:func:`crop_field_of_view`, right after decoding); a dataset image
does not, so it takes exactly the path its training copy took.

Choices worth knowing:

- Alpha is composited on **black** (equivalent to premultiplying by alpha): fundus photos
  have a black surround, and the result does not depend on whatever colour an encoder left
  under fully transparent pixels.
- 16-bit and 32-bit integer grey images are scaled from the full 0..65535 range to 0..255
  (rounded), never clipped; float (``F``) images in 0..1 are scaled by 255, any other float
  range is stretched from its own min..max (a float image carries no intrinsic range).
- CMYK is converted by Pillow's formula (no ICC colour management).
- Every failure inside Pillow becomes an :class:`ImageError` subclass whose ``http_status``
  a service returns directly (400 / 413 / 415); no raw ``OSError`` ever escapes.
- Pillow's global state (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``, warning filters)
  is never changed; our own limits are checked independently of it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageOps

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Pillow format ids accepted by :func:`decode_image` (MPO camera JPEGs open as JPEG).
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")
SUPPORTED_FORMATS_TEXT = "JPEG, PNG, BMP, TIFF, WebP"

#: Background that transparent pixels are composited onto (see module docstring).
ALPHA_BACKGROUND: tuple[int, int, int] = (0, 0, 0)
#: Resampling filter for the square resize; Pillow's filters antialias when downscaling.
RESIZE_FILTER = Image.Resampling.BILINEAR
#: Resampling filter and fill colour for augmentation rotations.
ROTATE_FILTER = Image.Resampling.BILINEAR
ROTATE_FILL: tuple[int, int, int] = (0, 0, 0)

UINT8_MAX = 255
UINT16_MAX = 65535
CHANNELS = 3
#: ITU-R BT.601 luma weights, as in torchvision's contrast adjustment.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float64)

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"})
_DICOM_PREAMBLE = 128
_SNIFF_BYTES = 1024


# --------------------------------------------------------------------------- errors


class ImageError(ValueError):
    """Base for every rejected input image; ``http_status`` is what a service returns."""

    http_status = 400


class UndecodableImage(ImageError):
    """Zero bytes, text, truncated or corrupt data: not a decodable image."""

    http_status = 400


class UnsupportedImageFormat(ImageError):
    """A real image format (or colour mode) that this pipeline refuses, e.g. GIF or HEIC."""

    http_status = 415


class ImageTooLarge(ImageError):
    """Encoded bytes over :attr:`ImageLimits.max_bytes`."""

    http_status = 413


class TooManyPixels(ImageTooLarge):
    """Header dimensions over :attr:`ImageLimits.max_pixels` (decompression bomb)."""

    http_status = 413


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ImageLimits:
    """Refusal thresholds, checked before any pixel is decoded."""

    max_bytes: int = 20 * 2**20
    max_pixels: int = 50_000_000


DEFAULT_LIMITS = ImageLimits()

#: Peak bytes per decoded pixel from header to square, besides the decoded image itself:
#: the RGB conversion and the square crop each make a 4-byte-a-pixel copy (Pillow stores RGB
#: as RGBX). Measured whole peaks: palette PNG ~8.5 B/px (1 + 8), RGBA PNG ~12 (4 + 8).
DECODE_COPY_BYTES_PER_PIXEL = 8
#: Bytes a pixel of a decoded image takes in Pillow, by mode (4 for any mode not listed).
MODE_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2,
                        "I;16N": 2, "LA": 4, "PA": 4}


@dataclass(frozen=True)
class PreprocessSpec:
    """Model input: square side in pixels and per-channel mean/std on the 0..1 scale (NHWC)."""

    size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        """Reject specs that would silently produce wrong tensors."""
        if not isinstance(self.size, int | np.integer) or self.size <= 0:
            raise ValueError(f"PreprocessSpec.size must be a positive int, got {self.size!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != CHANNELS:
                raise ValueError(f"PreprocessSpec.{name} needs {CHANNELS} values, got {value!r}")
        if min(self.std) <= 0:
            raise ValueError(f"PreprocessSpec.std must be positive, got {self.std!r}")

    @classmethod
    def from_manifest_input(cls, d: dict) -> PreprocessSpec:
        """Build from a manifest ``input`` dict (``size``, ``layout``, ``mean``, ``std``)."""
        layout = d.get("layout", "NHWC")
        if layout != "NHWC":
            raise ValueError(f"only NHWC input layout is supported, manifest says {layout!r}")
        try:
            size = d["size"]
        except KeyError:
            raise ValueError("manifest input is missing 'size'") from None
        return cls(
            size=int(size),
            mean=tuple(float(v) for v in d.get("mean", IMAGENET_MEAN)),
            std=tuple(float(v) for v in d.get("std", IMAGENET_STD)),
        )

    @cached_property
    def scale(self) -> np.ndarray:
        """Per-channel float32 gain: ``1 / (255 * std)``."""
        return (1.0 / (UINT8_MAX * np.asarray(self.std, np.float64))).astype(np.float32)

    @cached_property
    def offset(self) -> np.ndarray:
        """Per-channel float32 bias: ``-mean / std``."""
        return (-np.asarray(self.mean, np.float64) / np.asarray(self.std)).astype(np.float32)


@dataclass(frozen=True)
class FieldOfView:
    """How a raw capture becomes a dataset image, before the shared square crop and resize.

    A dataset made by cropping its source photos (MedMNIST's BloodMNIST keeps the centre
    200 x 200 px of each 360 x 363 PBC microscope capture) trains a model on that field of
    view; a service that squares and resizes a raw capture instead shows the model cells
    1.8x smaller than it ever saw. ``centre_crop`` is the side of the centred square that is
    kept, as a fraction of the capture's shorter side, so it holds for any capture size;
    1.0 keeps the whole image (nothing is cropped before the shared squaring).
    ``capture`` says in words what a raw capture is, for forms and docs.
    """

    centre_crop: float = 1.0
    capture: str = ""

    def __post_init__(self) -> None:
        """Refuse crops that are not a fraction in (0, 1]."""
        crop = self.centre_crop
        if isinstance(crop, bool) or not isinstance(crop, int | float) or not (0 < crop <= 1):
            raise ValueError(f"centre_crop must be a number in (0, 1], got {crop!r}")
        if not isinstance(self.capture, str):
            raise ValueError(f"capture must be a string, got {self.capture!r}")

    @property
    def whole_image(self) -> bool:
        """True when a raw capture is used as it is (the crop keeps everything)."""
        return self.centre_crop == 1

    def draft_size(self, size: int) -> int:
        """Smallest short side a JPEG may be ``draft()``-reduced to so that the crop still
        has ``size`` px (the crop is then resized to ``size``)."""
        return math.ceil(size / self.centre_crop)

    def describe(self) -> str:
        """Plain words for users, e.g. ``the centre 56% of the shorter side``."""
        if self.whole_image:
            return "the whole image"
        return f"the centre {self.centre_crop:.0%} of the shorter side"


WHOLE_IMAGE = FieldOfView()
"""A dataset whose images are whole captures (and every manifest that predates the field)."""


def crop_field_of_view(img: Image.Image, fov: FieldOfView) -> Image.Image:
    """Crop a raw capture to ``fov`` (the centred square of ``centre_crop`` x the shorter
    side, rounded to whole pixels), or return ``img`` itself for the whole image.

    Services run it on raw uploads only, before the same :func:`to_square_uint8` and
    :func:`normalize` that training and dataset-format uploads go through.
    """
    if fov.whole_image:
        return img
    width, height = img.size
    side = max(1, round(fov.centre_crop * min(width, height)))
    left, top = (width - side) // 2, (height - side) // 2
    return img.crop((left, top, left + side, top + side))


# --------------------------------------------------------------------------- decoding


def decode_image(
    data: bytes, *, target_size: int | None = None, limits: ImageLimits = DEFAULT_LIMITS
) -> Image.Image:
    """Decode untrusted bytes to an RGB, EXIF-upright Pillow image.

    With ``target_size``, a JPEG is decoded by ``draft()`` at 1/2, 1/4 or 1/8 scale while
    its short side stays >= ``target_size`` (several times faster for camera JPEGs).
    Raises an :class:`ImageError` subclass for every bad input. The two halves,
    :func:`open_image` and :func:`finish_decode`, let a caller budget the decode's memory
    (:func:`decode_cost_bytes`) between the header and the pixels.
    """
    return finish_decode(open_image(data, target_size=target_size, limits=limits))


def open_image(
    data: bytes, *, target_size: int | None = None, limits: ImageLimits = DEFAULT_LIMITS
) -> Image.Image:
    """Check ``limits`` and parse only the header (no pixel decoded yet); with
    ``target_size``, a JPEG is set to decode reduced by ``draft()``, and its ``size`` is the
    reduced one."""
    if target_size is not None and target_size <= 0:
        raise ValueError(f"target_size must be positive, got {target_size}")
    _check_encoded_size(data, limits)
    img = _open_header(data)
    _check_pixel_count(img.size, limits)
    if target_size is not None:
        try:
            img.draft("RGB", (target_size, target_size))
        except Exception as exc:  # untrusted input: any decoder failure is the input's fault
            raise UndecodableImage(f"corrupt image header: {exc}") from exc
    return img


def finish_decode(img: Image.Image) -> Image.Image:
    """Decode the pixels of an :func:`open_image` result to an RGB, EXIF-upright image."""
    try:
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        return _to_rgb(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"too many pixels (Pillow's decompression-bomb check): {exc}") from exc
    except Exception as exc:  # untrusted input: any decoder failure is the input's fault
        raise UndecodableImage(f"image data is truncated or corrupt: {exc}") from exc


def decode_cost_bytes(img: Image.Image) -> int:
    """Bytes of memory that decoding and squaring ``img`` (an :func:`open_image` result)
    may hold at its peak: the decoded image in its mode plus the copies on the way to RGB."""
    width, height = img.size
    per_pixel = MODE_BYTES_PER_PIXEL.get(img.mode, 4) + DECODE_COPY_BYTES_PER_PIXEL
    return width * height * per_pixel


def _check_encoded_size(data: bytes, limits: ImageLimits) -> None:
    """Refuse empty input (400) and input over ``max_bytes`` (413) before parsing."""
    if len(data) == 0:
        raise UndecodableImage("empty image: 0 bytes received")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"encoded image is {len(data):,} bytes, over the limit of {limits.max_bytes:,}"
        )


def _open_header(data: bytes) -> Image.Image:
    """Parse only the header, with Pillow restricted to :data:`SUPPORTED_FORMATS`."""
    try:
        return Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"too many pixels (Pillow's decompression-bomb check): {exc}") from exc
    except Image.UnidentifiedImageError:
        known = _sniff_unsupported_format(data)
        if known:
            raise UnsupportedImageFormat(
                f"{known} images are not supported; send one of {SUPPORTED_FORMATS_TEXT}"
            ) from None
        raise UndecodableImage(
            f"not a recognised image (supported: {SUPPORTED_FORMATS_TEXT})"
        ) from None
    except Exception as exc:  # corrupt header inside a recognised format
        raise UndecodableImage(f"corrupt image header: {exc}") from exc


def _sniff_unsupported_format(data: bytes) -> str | None:
    """Name a real but refused format from its signature, so it gets 415 rather than 400."""
    head = data[:_SNIFF_BYTES]
    signatures = {
        b"GIF87a": "GIF",
        b"GIF89a": "GIF",
        b"%PDF-": "PDF",
        b"8BPS": "PSD",
        b"\x00\x00\x00\x0cjP  \r\n\x87\n": "JPEG 2000",
        b"\xffO\xffQ": "JPEG 2000",
    }
    for magic, name in signatures.items():
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "HEIC/HEIF/AVIF"
    if data[_DICOM_PREAMBLE : _DICOM_PREAMBLE + 4] == b"DICM":
        return "DICOM"
    text = head.lstrip()
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "SVG"
    return None


def _check_pixel_count(size: tuple[int, int], limits: ImageLimits) -> None:
    """Refuse decompression bombs from the header dimensions, before decoding pixels."""
    width, height = size
    if width == 0 or height == 0:
        raise UndecodableImage(f"image header claims {width}x{height} pixels")
    if width * height > limits.max_pixels:
        raise TooManyPixels(
            f"image is {width:,}x{height:,} = {width * height:,} pixels, "
            f"over the limit of {limits.max_pixels:,}"
        )


# --------------------------------------------------------------------------- colour modes


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB by the rules in the module docstring."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT_MODES:
        return _grey_to_rgb(_sixteen_bit_to_uint8(np.asarray(img)))
    if mode == "F":
        return _grey_to_rgb(_float_to_uint8(np.asarray(img)))
    try:
        if img.has_transparency_data:
            return _composite_on_background(img.convert("RGBA"))
        return img.convert("RGB")
    except ValueError as exc:  # Pillow has no conversion for this mode
        raise UnsupportedImageFormat(f"colour mode {mode!r} cannot be converted to RGB") from exc


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 with rounding (32-bit ``I`` is clipped to 0..65535 first)."""
    wide = np.clip(values, 0, UINT16_MAX).astype(np.uint32)
    return ((wide * UINT8_MAX + UINT16_MAX // 2) // UINT16_MAX).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a float image to 0..255: 0..1 data by x255, any other range by its min..max.

    Non-finite values become 0; a constant image outside 0..1 becomes all zeros.
    """
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        span = high - low
        values = (values - low) / span if span > 0 else np.zeros_like(values)
    return np.rint(values * UINT8_MAX).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    """Replicate an 8-bit grey array into the three channels of an RGB image."""
    return Image.fromarray(grey).convert("RGB")


def _composite_on_background(rgba: Image.Image) -> Image.Image:
    """Flatten RGBA onto :data:`ALPHA_BACKGROUND` using alpha as the paste mask."""
    flat = Image.new("RGB", rgba.size, ALPHA_BACKGROUND)
    flat.paste(rgba, (0, 0), rgba)
    return flat


# --------------------------------------------------------------------------- geometry + tensors


def to_square_uint8(img: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square on the short side and resize to ``size``: (size, size, 3) uint8.

    Any mode is accepted and converted like :func:`decode_image` would. Used for datasets
    too, so training pixels match serving pixels.
    """
    return np.array(_square(img, size))


def square_pixels(img: Image.Image, size: int) -> np.ndarray:
    """:func:`to_square_uint8`'s pixels as a read-only array, one copy fewer (for callers
    that only read them, like :func:`normalize`); an image already ``size`` px square is
    not resized at all (Pillow's same-size resize is a plain copy: same pixels)."""
    return np.asarray(_square(img, size))


def _square(img: Image.Image, size: int) -> Image.Image:
    """Crop+resize as a Pillow image (internal: callers that only read skip a copy).

    The crop is explicit rather than ``resize(box=...)``: with a box, the resize filter's
    support reaches past the box edge and blends cropped-away pixels into the border.
    """
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    img = _to_rgb(img)
    width, height = img.size
    if width != height:
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if img.size == (size, size):
        return img
    return img.resize((size, size), RESIZE_FILTER)


def normalize(batch_uint8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """``(x / 255 - mean) / std`` for HWC or NHWC uint8, as one float32 multiply-add."""
    if batch_uint8.dtype != np.uint8 or batch_uint8.ndim not in (3, 4):
        raise ValueError(
            f"normalize needs HWC or NHWC uint8, got {batch_uint8.dtype} {batch_uint8.shape}"
        )
    if batch_uint8.shape[-1] != CHANNELS:
        raise ValueError(f"normalize needs {CHANNELS} channels last, got {batch_uint8.shape}")
    # Over rows of whole pixels: broadcasting the 3-vectors along the last axis makes numpy's
    # inner loop 3 elements long (7x slower at 224 px); the result is bit-identical.
    width = batch_uint8.shape[-2]
    rows = batch_uint8.reshape(-1, width * CHANNELS)
    out = np.multiply(rows, np.tile(spec.scale, width), dtype=np.float32)
    out += np.tile(spec.offset, width)
    return out.reshape(batch_uint8.shape)


def decode_square_uint8(
    data: bytes, size: int, *, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Bytes to (size, size, 3) uint8 with draft decoding: what datasets should store."""
    return np.asarray(_square(decode_image(data, target_size=size, limits=limits), size))


def preprocess(
    data: bytes, spec: PreprocessSpec, *, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Bytes to the model's (size, size, 3) float32 input."""
    return normalize(decode_square_uint8(data, spec.size, limits=limits), spec)


def preprocess_batch(
    items: Sequence[bytes], spec: PreprocessSpec, *, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Encoded images to one (N, size, size, 3) float32 batch, normalised in a single pass.

    An :class:`ImageError` carries a note naming the index of the offending item.
    """
    pixels = np.empty((len(items), spec.size, spec.size, CHANNELS), dtype=np.uint8)
    for index, data in enumerate(items):
        try:
            pixels[index] = decode_square_uint8(data, spec.size, limits=limits)
        except ImageError as exc:
            exc.add_note(f"batch item {index}")
            raise
    return normalize(pixels, spec)


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentParams:
    """Ranges for training augmentation (factors are drawn from ``[1 - x, 1 + x]``)."""

    flip_probability: float = 0.5
    max_rotation_deg: float = 20.0
    brightness: float = 0.2
    contrast: float = 0.2


DEFAULT_AUGMENT = AugmentParams()


@dataclass(frozen=True)
class AugmentDraw:
    """One sampled augmentation; positive angles rotate counter-clockwise."""

    flip: bool
    angle_deg: float
    brightness: float
    contrast: float


def sample_augment(
    rng: np.random.Generator, params: AugmentParams = DEFAULT_AUGMENT
) -> AugmentDraw:
    """Draw one augmentation: always four draws in a fixed order, so streams stay aligned."""
    flip = bool(rng.random() < params.flip_probability)
    angle = float(rng.uniform(-params.max_rotation_deg, params.max_rotation_deg))
    brightness = float(rng.uniform(1.0 - params.brightness, 1.0 + params.brightness))
    contrast = float(rng.uniform(1.0 - params.contrast, 1.0 + params.contrast))
    return AugmentDraw(flip, angle, brightness, contrast)


def apply_augment(image_uint8: np.ndarray, draw: AugmentDraw) -> np.ndarray:
    """Apply flip, then rotation (black fill), then brightness/contrast; returns a new array."""
    _check_hwc_uint8(image_uint8)
    out = image_uint8[:, ::-1] if draw.flip else image_uint8
    if draw.angle_deg != 0.0:
        rotated = Image.fromarray(out).rotate(
            draw.angle_deg, resample=ROTATE_FILTER, fillcolor=ROTATE_FILL
        )
        out = np.array(rotated)
    if draw.brightness != 1.0 or draw.contrast != 1.0:
        out = _jitter(out, draw.brightness, draw.contrast)
    if np.may_share_memory(out, image_uint8):
        out = out.copy()
    return out


def augment(
    image_uint8: np.ndarray, rng: np.random.Generator, *, params: AugmentParams = DEFAULT_AUGMENT
) -> np.ndarray:
    """Random flip, rotation and brightness/contrast jitter; deterministic for a given rng."""
    return apply_augment(image_uint8, sample_augment(rng, params))


def _jitter(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """Brightness ``x*b`` then contrast about the mean luma, fused into one affine map.

    ``((x*b - m*b) * c + m*b)`` with ``m`` the mean luma of ``x`` equals
    ``x*(b*c) + m*b*(1-c)``; only the final result is clipped to 0..255.
    """
    mean_luma = float(image.reshape(-1, CHANNELS).mean(axis=0) @ LUMA_WEIGHTS)
    out = np.multiply(image, np.float32(brightness * contrast), dtype=np.float32)
    out += np.float32(brightness * mean_luma * (1.0 - contrast))
    np.clip(out, 0, UINT8_MAX, out=out)
    return np.rint(out, out=out).astype(np.uint8)


def _check_hwc_uint8(image: np.ndarray) -> None:
    """Augmentation works on one RGB image: (H, W, 3) uint8."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != CHANNELS:
        raise ValueError(f"augment needs an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
