"""The model a worker serves: manifest, predictor, batcher, readiness, and the request path.

Every route goes through :class:`InferenceEngine`, so the web form, the JSON API and the Open
Inference Protocol share one pipeline and one set of timings:

    decode (bytes -> RGB image)  ->  preprocess (field-of-view crop of a raw capture
    + square crop + resize + normalise)
    -> queue (waiting for a batch) -> compute (the batch's predict) -> postprocess (labels)

Decoding and preprocessing run on the request's own thread (gunicorn's gthread pool), so
they overlap with the batcher thread's inference; the shared ``shared.imaging`` functions are
exactly what training used.
A raw upload is first cropped to the dataset's field of view (``input.raw_capture`` of
the manifest, see ``services.input_kind``); a dataset-format upload is not, so it goes
through exactly what training used.

Lifecycle: ``LOADING`` until :meth:`InferenceEngine.start` has started the batcher and, on
its thread (the runtime's only one, see ``services.batching``), loaded the predictor, run its
warm-up and measured the preferred batch size (``READY``); ``DRAINING`` after
:meth:`shutdown`. Only ``READY`` accepts inference; /readyz reports it.
"""

from __future__ import annotations

import enum
import io
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from services import memory
from services.admission import MemoryBudget
from services.batching import DynamicBatcher, RowResult
from services.findings import task_json
from services.input_kind import DEFAULT, field_of_view
from services.metrics import ServiceMetrics
from services.predictors import Predictor, check_artifact, load_predictor, predictor_class
from services.settings import ServiceSettings
from shared.imaging import (
    FieldOfView,
    PreprocessSpec,
    crop_field_of_view,
    decode_cost_bytes,
    decode_image,
    finish_decode,
    normalize,
    open_image,
    square_pixels,
)
from shared.manifest import Manifest, read_manifest
from shared.runtimes import get_runtime

log = logging.getLogger(__name__)


TRIM_AFTER_BYTES = 256 * 2**20
"""Decode memory released before an idle budget hands freed heap back to the OS (a trim
after every small request would cost more than it returns)."""
JSON_CHARS_PER_FLOAT = 25
"""Widest JSON text of one float32 element with its separator (``-1.2345678901234567e-05,``
is 24): sizes the largest legitimate FP32 request body."""
JSON_ENVELOPE_BYTES = 64 * 2**10
"""Room for everything of an OIP request body besides its tensor data."""


class State(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"


class NotReady(RuntimeError):
    """The model is still loading/warming up, or the worker is draining."""


class TooManyImages(ValueError):
    """One request carries more images than the batch queue can ever hold."""


class NonFiniteOutput(ValueError):
    """The model's outputs for the request's input are NaN or infinite: no answer to give
    (an FP32 tensor of values like 3.4e38 overflows inside the network)."""


@dataclass
class Timings:
    """Seconds spent per stage of one request (summed over its images for decode and
    preprocess; the slowest image for queue and compute)."""

    decode: float = 0.0
    preprocess: float = 0.0
    queue: float = 0.0
    compute: float = 0.0
    postprocess: float = 0.0
    total: float = 0.0

    def stages(self) -> dict[str, float]:
        """The five pipeline stages (no total), in seconds."""
        return {k: v for k, v in vars(self).items() if k != "total"}

    def as_ms(self) -> dict[str, float]:
        """Every field in milliseconds, rounded to microseconds."""
        return {k: round(v * 1e3, 3) for k, v in vars(self).items()}


@dataclass
class Prediction:
    """One image's result."""

    class_index: int
    label: str
    probabilities: np.ndarray
    timings: Timings
    image: Image.Image | None = field(default=None, repr=False)


class InferenceEngine:
    """Owns one model in one worker process."""

    def __init__(self, settings: ServiceSettings, predictor: Predictor | None = None) -> None:
        framework, model_dir = settings.require_model()
        self.settings = settings
        self.model_dir = model_dir
        self.manifest: Manifest = predictor.manifest if predictor else read_manifest(model_dir)
        check_artifact(get_runtime(framework), self.manifest, model_dir)
        self.framework = framework
        self.version = model_dir.name
        self.spec = PreprocessSpec.from_manifest_input(self.manifest.input.to_dict())
        self.metrics = ServiceMetrics(framework, self.manifest.dataset)
        self.predictor = predictor
        self.batcher: DynamicBatcher | None = None
        self.budget = MemoryBudget(settings.decode_memory_bytes, wait_s=settings.decode_wait_s,
                                   on_idle=memory.release, idle_after_bytes=TRIM_AFTER_BYTES)
        self.state = State.LOADING

    # ------------------------------------------------------------------ identity

    @property
    def model_name(self) -> str:
        """``<dataset>-<framework>``: unique when the four services sit behind one proxy."""
        return f"{self.manifest.dataset}-{self.framework}"

    @property
    def framework_version(self) -> str:
        return self.predictor.version if self.predictor else self.manifest.framework_version

    @property
    def max_json_bytes(self) -> int:
        """Largest OIP JSON body: the larger of the biggest FP32 request (``queue_size``
        images of S x S x 3 floats as JSON text) and one largest encoded image as base64
        (a BYTES request), plus the envelope; never over ``max_body_bytes``."""
        s = self.settings
        fp32 = s.queue_size * self.spec.size**2 * 3 * JSON_CHARS_PER_FLOAT
        base64_image = -(-s.max_image_bytes // 3) * 4
        return min(s.max_body_bytes, max(fp32, base64_image) + JSON_ENVELOPE_BYTES)

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    @property
    def precision(self) -> str:
        """The precision the runtime really computes in (read back by the loaded predictor;
        the runtime table row's request until then)."""
        return self.predictor.precision if self.predictor else get_runtime(
            self.framework).precision

    def model_json(self) -> dict[str, Any]:
        """The ``model`` block of every prediction (and of /readyz)."""
        return {
            "name": self.model_name,
            "dataset": self.manifest.dataset,
            "framework": self.framework,
            "framework_version": self.framework_version,
            "version": self.version,
            "precision": self.precision,
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the batcher, whose thread loads the predictor (unless one was given), warms
        up every batch shape and measures the preferred batch size (unless configured)."""
        started = time.perf_counter()
        s = self.settings
        example = self._warm_up_pipeline()
        runtime = self.predictor if self.predictor is not None else predictor_class(
            self.framework)
        self.batcher = DynamicBatcher(
            self._predict,
            max_batch_size=s.max_batch_size,
            preferred_batch_size=s.preferred_batch_size,
            max_queue_delay_s=s.max_queue_delay_ms / 1e3,
            queue_size=s.queue_size,
            buckets=runtime.buckets_for(s.max_batch_size),
            on_batch=self.metrics.observe_batch,
            on_depth=self.metrics.queue_depth.set,
        )
        self.batcher.start(setup=lambda: self._prepare_runtime(example))
        seconds = time.perf_counter() - started
        self.metrics.model_loaded(
            version=self.version, framework_version=self.framework_version,
            dataset=self.manifest.dataset, sha256=self.manifest.sha256, seconds=seconds,
        )
        self.state = State.READY
        log.info("%s version %s ready in %.1f s (%s %s at %s, %s threads); batches of up to %d "
                 "images (images/s by batch size: %s)", self.model_name, self.version, seconds,
                 self.framework, self.framework_version, self.precision, s.threads,
                 self.batcher.preferred_batch_size, self.batcher.images_per_s or "not measured")
        if not (fov := self.field_of_view(DEFAULT)).whole_image:
            log.info("%s: raw uploads are cropped to %s before preprocessing, as the dataset "
                     "was made (input=dataset skips it)", self.model_name, fov.describe())

    def _prepare_runtime(self, example: np.ndarray) -> None:
        """On the batcher thread, the runtime's only one: load, then warm up. Calibration runs
        every batch shape the predictor's own warm-up would (each bucket, or 1 and the
        maximum, among others), untimed first, so it *is* the warm-up when it runs."""
        assert self.batcher is not None
        s = self.settings
        if self.predictor is None:
            self.predictor = load_predictor(
                self.framework, self.model_dir, self.manifest, threads=s.threads
            )
        if s.preferred_batch_size is None:
            self.batcher.calibrate(example)
        else:
            self.predictor.warmup(s.max_batch_size)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """The batcher's predict (the predictor is loaded on the batcher thread)."""
        assert self.predictor is not None
        return self.predictor.predict(batch)

    def _warm_up_pipeline(self) -> np.ndarray:
        """Decode and preprocess a JPEG and a PNG once, so that no request pays for Pillow's
        lazy initialisation (~100 ms on the first JPEG); returns the preprocessed image."""
        size = self.spec.size
        for fmt in ("JPEG", "PNG"):
            buffer = io.BytesIO()
            Image.new("RGB", (2 * size, size), (128, 96, 64)).save(buffer, format=fmt)
            image = decode_image(buffer.getvalue(), target_size=size)
            row = normalize(square_pixels(image, size), self.spec)
        return row

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop taking requests and finish every queued image (SIGTERM drain)."""
        self.state = State.DRAINING
        if self.batcher is not None:
            self.batcher.stop(timeout)

    # ------------------------------------------------------------------ inference

    def admit(self) -> None:
        """Refuse (503 + Retry-After) a request that could not be queued, before its body
        is read: not ready, draining, or a queue still full after ``queue_wait_ms``. The
        bounded wait costs no CPU, where a refusal to a client that retries at once costs a
        whole request cycle, taken from the batcher thread (GIL)."""
        self._ready_batcher(1).ensure_room(1, timeout=self.settings.queue_wait_ms / 1e3)

    def field_of_view(self, input_kind: str) -> FieldOfView:
        """The crop an upload of ``input_kind`` (``services.input_kind``) gets first."""
        return field_of_view(input_kind, self.manifest.input.raw_capture)

    def classify_images(self, items: Sequence[bytes], *, keep_image: int | None = None,
                        input_kind: str = DEFAULT) -> list[Prediction]:
        """Encoded images -> predictions (raises ImageError for bad input). Queue room is
        reserved before decoding, and each decode holds its share of the memory budget.
        ``input_kind``: raw captures are cropped to the model's field of view first.
        ``keep_image``: keep a copy of each image (as cropped) of at most that many pixels
        a side (the result page's thumbnail), so no full decoded image outlives its budget
        share."""
        batcher = self._ready_batcher(len(items))
        started = time.perf_counter()
        timings = Timings()
        size, limits = self.spec.size, self.settings.image_limits
        fov = self.field_of_view(input_kind)
        rows, images = [], []
        with batcher.expecting(len(items)) as submit:
            for index, data in enumerate(items):
                t0 = time.perf_counter()
                header = open_image(data, target_size=fov.draft_size(size), limits=limits)
                what = f"image {index} ({header.size[0]}x{header.size[1]})"
                with self.budget.reserve(decode_cost_bytes(header), what):
                    image = finish_decode(header)
                    t1 = time.perf_counter()
                    image = crop_field_of_view(image, fov)
                    rows.append(normalize(square_pixels(image, size), self.spec))
                    if keep_image:
                        image.thumbnail((keep_image, keep_image))
                timings.decode += t1 - t0
                timings.preprocess += time.perf_counter() - t1
                images.append(image if keep_image else None)
            futures = submit(rows)
        return self._finish(futures, timings, started, images)

    def classify_tensor(self, batch: np.ndarray) -> list[Prediction]:
        """An already preprocessed (N, S, S, 3) float32 batch -> predictions."""
        started = time.perf_counter()
        futures = self._ready_batcher(len(batch)).submit(batch)
        return self._finish(futures, Timings(), started, [None] * len(batch))

    def require_ready(self) -> None:
        """Raise :class:`NotReady` (503 + Retry-After) unless loaded, warm and not draining."""
        if self.state is not State.READY or self.batcher is None:
            raise NotReady(f"model {self.model_name} is {self.state.value}")

    def _ready_batcher(self, n: int) -> DynamicBatcher:
        """The batcher, if the model is ready and ``n`` images can ever fit its queue."""
        self.require_ready()
        assert self.batcher is not None
        if not 1 <= n <= self.settings.queue_size:
            raise TooManyImages(
                f"a request takes 1 to {self.settings.queue_size} images, got {n}"
            )
        return self.batcher

    def _finish(self, futures: list[Future[RowResult]], timings: Timings, started: float,
                images: list[Image.Image | None]) -> list[Prediction]:
        """Wait for the batcher, then label each row and record the stage metrics."""
        results = [future.result() for future in futures]
        if not all(np.isfinite(r.output).all() for r in results):
            raise NonFiniteOutput(
                "the model's outputs for this input are NaN or infinite, so there is no "
                "answer: the input values drive the network out of float32 range (send "
                "preprocessed images: pixels normalised by the model's mean and std)")
        t0 = time.perf_counter()
        timings.queue = max(r.queue_s for r in results)
        timings.compute = max(r.compute_s for r in results)
        names = self.manifest.class_names
        predictions = []
        for result, image in zip(results, images, strict=True):
            index = int(np.argmax(result.output))
            predictions.append(Prediction(index, names[index], result.output, timings, image))
        timings.postprocess = time.perf_counter() - t0
        timings.total = time.perf_counter() - started
        self.metrics.observe_stages(timings.stages())
        return predictions

    def input_json(self, input_kind: str) -> dict[str, Any]:
        """How an upload of ``input_kind`` was cropped before the shared preprocessing."""
        fov = self.field_of_view(input_kind)
        return {"kind": input_kind, "centre_crop": fov.centre_crop,
                "field_of_view": fov.describe()}

    def prediction_json(self, prediction: Prediction) -> dict[str, Any]:
        """The JSON body of POST /predict (multilabel adds the findings above their
        thresholds: :mod:`services.findings`)."""
        probs = prediction.probabilities.tolist()
        return {
            "label": prediction.label,
            "class_index": prediction.class_index,
            "probabilities": dict(zip(self.manifest.class_names, probs, strict=True)),
            **task_json(self.manifest, prediction.probabilities),
            "model": self.model_json(),
            "timings_ms": prediction.timings.as_ms(),
        }
