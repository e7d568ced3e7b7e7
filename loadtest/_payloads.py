"""The payload pool: real image files the simulated clients upload (a locustfile helper).

Sources (``VERSUS_PAYLOAD_DIR``):

- a DR dataset directory (Kaggle ``trainLabels.csv`` or APTOS ``train.csv`` layout): the
  images of one split (``VERSUS_PAYLOAD_SPLIT``, default test), from the same patient split
  the trainers use (``shared.datasets.index_dr``; read-only, no ``splits.csv`` is written);
- a MedMNIST ``.npz`` (BloodMNIST): the images of one split, encoded as PNG;
- any other directory: every image file in it (recursively, hidden folders skipped);
- unset: a few synthetic fundus photos (``shared.datasets.synth_dr``) of a few megapixels,
  generated once into ``$TMPDIR/versus-loadtest-<uid>/`` and reused, so ``locust -f loadtest/``
  works out of the box.

Profiles (``VERSUS_PAYLOAD_PROFILE``): ``camera`` sends the files exactly as stored (a clinic
uploading full-size fundus JPEGs: the service pays for decoding megapixels); ``small``
re-encodes each image once at start to ``VERSUS_PAYLOAD_SIZE`` px with the services' own
square crop (``shared.imaging.to_square_uint8``): a client that resizes before uploading.

Request bodies (multipart form, raw image, OIP JSON, OIP binary) are built once per image and
cached, so the load generator spends its CPU on sending, not on encoding. The ``oip-binary``
upload sends the model's input tensor: each image is preprocessed once, when the first
request for it is built (the model's size, mean, std and raw-capture field of view come from
its manifest, ``GET /model``), with the services' own functions (``shared.imaging``), so the
tensor is exactly what the service would have computed from the file.

Images drawn from a dataset (a DR directory, a MedMNIST ``.npz``) are dataset images, and
are sent as such (``input=dataset`` on ``/predict``, ``"parameters": {"input": "dataset"}``
in OIP); any other image is a raw capture (the services' default), which a service crops to
its dataset's field of view first (``services/input_kind.py``).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from _checks import ModelInfo
from _config import ConfigError, PayloadSettings
from PIL import Image

from shared import binary_tensors, imaging

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DR_LABEL_FILES = ("trainLabels.csv", "train.csv")
#: The default pool: 2 synthetic patients x 2 eyes, short side 1536 px (1536x1536 to
#: 2304x1536, i.e. 2.4-3.5 MP). Synthetic JPEGs compress better than real photographs
#: (~0.1-0.3 MB instead of 1-3 MB): the pixel count, which decoding pays for, is realistic.
SYNTH_IMAGES = 4
SYNTH_SIZE = 1536
SMALL_JPEG_QUALITY = 90
#: Local files are trusted: far above the services' limits, which the pool must not hide.
READ_LIMITS = imaging.ImageLimits(max_bytes=512 * 2**20, max_pixels=500_000_000)
BOUNDARY = "versus-loadtest-6b1f0c"  # fixed, so every request body is deterministic
MULTIPART_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
FORM_FIELD = "image"  # services.routes_web.FIELD
OIP_INPUT = "input"  # services.oip.INPUT
OIP_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class Request:
    """One ready-to-send ``POST``: path (with its query), body and headers."""

    path: str
    body: bytes
    headers: dict[str, str]


def oip_path(model: ModelInfo) -> str:
    """The OIP inference route of ``model`` (the dataset name is every service's alias)."""
    return f"/v2/models/{model.dataset}/infer"


def oip_binary_body(tensor: bytes, datatype: str, shape: list[int], input_kind: str
                    ) -> tuple[bytes, dict[str, str]]:
    """An OIP request in the binary tensor data extension as ``tritonclient.http`` frames it
    on its defaults: one input whose data follows the JSON header, every output asked for
    in binary (``binary_data_output``); ``input=dataset`` in the request parameters for a
    dataset image. Returns (body, headers)."""
    parameters: dict[str, object] = {"binary_data_output": True}
    if input_kind != "raw":
        parameters["input"] = input_kind
    header = json.dumps({
        "inputs": [{"name": OIP_INPUT, "shape": shape, "datatype": datatype,
                    "parameters": {binary_tensors.SIZE: len(tensor)}}],
        "parameters": parameters,
    }).encode()
    return header + tensor, {"Content-Type": OIP_CONTENT_TYPE,
                             binary_tensors.HEADER: str(len(header))}


@dataclass
class Payload:
    """One encoded image and the request bodies that carry it (built on first use)."""

    name: str
    data: bytes
    content_type: str
    width: int
    height: int
    input_kind: str = "raw"
    """``raw`` (a capture: the services' default) or ``dataset`` (drawn from a dataset)."""
    _requests: dict[tuple, Request] = dataclasses.field(default_factory=dict, repr=False,
                                                        compare=False)

    @property
    def predict_path(self) -> str:
        """``/predict``, saying ``input=dataset`` for a dataset image."""
        return "/predict" if self.input_kind == "raw" else f"/predict?input={self.input_kind}"

    @cached_property
    def multipart(self) -> bytes:
        """A ``multipart/form-data`` body with the image in field ``image``, as a browser's
        upload form or ``curl -F image=@file`` sends it."""
        filename = self.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{FORM_FIELD}\"; "
                f"filename=\"{filename}\"\r\nContent-Type: {self.content_type}\r\n\r\n")
        return head.encode() + self.data + f"\r\n--{BOUNDARY}--\r\n".encode()

    @cached_property
    def oip_json(self) -> bytes:
        """A KServe OIP v2 inference request: one BYTES input holding the base64 image."""
        tensor = {"name": "input", "datatype": "BYTES", "shape": [1],
                  "data": [base64.b64encode(self.data).decode("ascii")]}
        request: dict = {"inputs": [tensor]}
        if self.input_kind != "raw":
            request["parameters"] = {"input": self.input_kind}
        return json.dumps(request).encode()

    def upload(self, mode: str) -> tuple[bytes, str]:
        """(body, Content-Type) for ``POST /predict`` in upload ``mode`` (multipart|raw)."""
        if mode == "raw":
            return self.data, self.content_type
        return self.multipart, MULTIPART_CONTENT_TYPE

    def request(self, mode: str, model: ModelInfo) -> Request:
        """The request of upload ``mode`` (``_config.UPLOADS``) for ``model``'s service,
        built on first use and cached (per model input, for ``oip-binary``)."""
        key = (mode, model.dataset, model.spec, model.raw_capture)
        if key not in self._requests:
            self._requests[key] = self._build_request(mode, model)
        return self._requests[key]

    def _build_request(self, mode: str, model: ModelInfo) -> Request:
        if mode == "oip-bytes":
            body, headers = oip_binary_body(binary_tensors.encode_bytes_elements([self.data]),
                                            "BYTES", [1], self.input_kind)
            return Request(oip_path(model), body, headers)
        if mode == "oip-binary":
            tensor = self.tensor(model)[None]
            body, headers = oip_binary_body(binary_tensors.encode_array(tensor, "FP32"),
                                            "FP32", list(tensor.shape), self.input_kind)
            return Request(oip_path(model), body, headers)
        body, content_type = self.upload(mode)
        return Request(self.predict_path, body,
                       {"Content-Type": content_type, "Accept": "application/json"})

    def tensor(self, model: ModelInfo) -> np.ndarray:
        """The model input the service computes from this file: decode (JPEG draft-scaled
        as the service does), the raw-capture crop for a raw capture, square, normalise."""
        if model.spec is None:
            raise ConfigError("the oip-binary upload needs the model's input size, mean and "
                              "std, and the service's manifest has no 'input'")
        size = model.spec.size
        fov = model.raw_capture if self.input_kind == "raw" else imaging.WHOLE_IMAGE
        try:
            image = imaging.decode_image(self.data, target_size=fov.draft_size(size),
                                         limits=READ_LIMITS)
        except imaging.ImageError as exc:
            raise ConfigError(f"VERSUS_PAYLOAD_DIR: {self.name}: {exc}") from exc
        image = imaging.crop_field_of_view(image, fov)
        return imaging.normalize(imaging.square_pixels(image, size), model.spec)


@dataclass(frozen=True)
class PayloadPool:
    """The images of one run, plus where they came from (for the log and the report)."""

    payloads: tuple[Payload, ...]
    source: str
    profile: str

    def picker(self, seed: object) -> Iterator[Payload]:
        """An endless, seeded random sequence of payloads (one per simulated user)."""
        rng = random.Random(str(seed))
        while True:
            yield self.payloads[rng.randrange(len(self.payloads))]

    def describe(self) -> str:
        width = np.mean([p.width for p in self.payloads])
        height = np.mean([p.height for p in self.payloads])
        kilobytes = np.mean([len(p.data) / 1e3 for p in self.payloads])
        return (f"{len(self.payloads)} {self.profile} images from {self.source} "
                f"(mean {width:.0f}x{height:.0f} px, {kilobytes:.1f} kB)")


def load_pool(settings: PayloadSettings, *, cache_dir: Path | None = None) -> PayloadPool:
    """Read (or generate) the source images, sample at most ``settings.count`` with the seed,
    and apply the profile."""
    source = settings.source or synthetic_source(cache_dir)
    split = settings.split if settings.source else "all"  # too few synthetic ones to split
    items = source_images(source, split, settings.count, settings.seed)
    if not items:
        where = f"split {split!r} of " if _is_dataset(source) else ""
        raise ConfigError(f"VERSUS_PAYLOAD_DIR: no images in {where}{source}")
    kind = "dataset" if _is_dataset(source) else "raw"
    payloads = tuple(
        dataclasses.replace(small_payload(name, data, settings.size) if settings.profile
                            == "small" else as_payload(name, data), input_kind=kind)
        for name, data in items
    )
    return PayloadPool(payloads, str(source), settings.profile)


def _is_dataset(source: Path) -> bool:
    return source.suffix == ".npz" or any((source / f).is_file() for f in DR_LABEL_FILES)


def source_images(source: Path, split: str, count: int, seed: int
                  ) -> list[tuple[str, bytes]]:
    """Up to ``count`` (name, encoded bytes) from ``source``: a seeded sample in name order."""
    if source.suffix == ".npz":
        return _npz_images(source, split, count, seed)
    if not source.is_dir():
        raise ConfigError(f"VERSUS_PAYLOAD_DIR: {source} is neither a directory nor a "
                          f"MedMNIST .npz file")
    if any((source / f).is_file() for f in DR_LABEL_FILES):
        from shared.datasets import index_dr

        files = [r.file for r in index_dr(source, write_splits=False)
                 if split in ("all", r.split)]
    else:
        files = image_files(source)
    return [(f.name, f.read_bytes()) for f in _sample(sorted(files), count, seed)]


def image_files(directory: Path) -> list[Path]:
    """Image files under ``directory`` by suffix, skipping hidden folders (e.g. ``.cache``)."""
    return sorted(
        p for p in directory.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(directory).parts[:-1])
    )


def _sample(items: list, count: int, seed: int) -> list:
    if len(items) <= count:
        return items
    keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:count])
    return [items[i] for i in keep]


def _npz_images(path: Path, split: str, count: int, seed: int) -> list[tuple[str, bytes]]:
    from shared.datasets import load_bloodmnist

    sets = load_bloodmnist(path, None)
    chosen = list(sets) if split == "all" else [split]
    pairs = [(f"{s}_{i}.png", image) for s in chosen for i, image in enumerate(sets[s].images)]
    return [(name, _encode(image, "PNG")) for name, image in _sample(pairs, count, seed)]


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    options = {"quality": SMALL_JPEG_QUALITY} if fmt == "JPEG" else {}
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def as_payload(name: str, data: bytes) -> Payload:
    """The file as it is; only its header is read (format and size), to label the upload."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format, image.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"VERSUS_PAYLOAD_DIR: {name} is not a readable image ({exc})"
                          ) from exc
    return Payload(name, data, Image.MIME.get(fmt or "", "application/octet-stream"),
                   width, height)


def small_payload(name: str, data: bytes, size: int) -> Payload:
    """Re-encode at ``size`` px with the services' square crop: JPEG stays JPEG (quality
    90), anything else becomes PNG."""
    original = as_payload(name, data)
    try:
        image = imaging.decode_image(data, target_size=size, limits=READ_LIMITS)
    except imaging.ImageError as exc:
        raise ConfigError(f"VERSUS_PAYLOAD_DIR: {name}: {exc}") from exc
    fmt = "JPEG" if original.content_type == "image/jpeg" else "PNG"
    return Payload(name, _encode(imaging.to_square_uint8(image, size), fmt),
                   f"image/{fmt.lower()}", size, size)


def synthetic_source(cache_dir: Path | None = None, *, n: int = SYNTH_IMAGES,
                     size: int = SYNTH_SIZE, seed: int = 0) -> Path:
    """A synthetic fundus set in ``<cache_dir>/dr-synth-n<n>-s<size>-seed<seed>``, generated
    on first use (under a file lock, then renamed into place, so concurrent Locust worker
    processes generate it once) and reused afterwards."""
    if cache_dir is None:  # per user: another user's cache would not be writable
        uid = os.getuid() if hasattr(os, "getuid") else 0
        cache_dir = Path(tempfile.gettempdir()) / f"versus-loadtest-{uid}"
    target = cache_dir / f"dr-synth-n{n}-s{size}-seed{seed}"
    if (target / "trainLabels.csv").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{target.name}.lock", "w") as lock:
        _lock(lock)
        if not (target / "trainLabels.csv").is_file():
            from shared.datasets.synth_dr import generate_dr

            log.info("generating %d synthetic fundus photos (%d px) into %s, once",
                     n, size, target)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache_dir))
            generate_dr(staging, n, size=size, seed=seed)
            shutil.rmtree(target, ignore_errors=True)  # an incomplete leftover, if any
            os.replace(staging, target)
    return target


def _lock(handle: io.TextIOWrapper) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: at worst two processes generate the same files
        return
    fcntl.flock(handle, fcntl.LOCK_EX)
