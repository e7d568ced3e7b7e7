"""The predictor contract: the only framework-specific code a service has.

Like mlcommons/inference's ``backend.py``, one small base class declares everything a
runtime must provide, and each framework file fills it in (~50 lines). Unlike it, the whole
contract is declared here, nothing implied:

- ``framework``      class attribute: the runtime's name in :mod:`shared.runtimes`;
- ``runtime``        class attribute: that row of the runtime table. A predictor class serves
                     its base row and every variant of it: :meth:`Predictor.for_runtime`
                     binds the class to one row (``framework`` is then the variant's name), and
                     ``load`` reads the row's ``precision`` and ``compile`` settings;
- ``version``        the framework's version string (reported by /model, /v2, metrics);
- ``precision``      the precision the runtime really computes in, read back from it where
                     it can say (fp32, bf16, fp16, int8: :data:`shared.runtimes.PRECISIONS`);
                     reported in every prediction's ``model`` block and /readyz;
- ``batch_buckets``  batch sizes the runtime is compiled for, or None when any batch size
                     runs without recompiling; the batcher pads batches up to a bucket, and so
                     does ``predict`` (a direct caller never triggers a compile either). A row
                     with ``compile`` gets :data:`COMPILED_BATCH_BUCKETS`;
- ``threads``        intra-op threads for the runtime's math pool (None: its default);
- ``load(path)``     read the sha256-verified native file (called by ``__init__``);
- ``logits(batch)``  float32 NHWC (N, S, S, 3) -> (N, C) logits, the one hot path;
- ``predict(batch)`` probabilities: softmax (multiclass) or sigmoid (multilabel) in numpy,
                     shared so that every runtime applies exactly the same activation;
- ``warmup(max_batch_size)`` runs every batch shape serving will use (compiling jit
                     runtimes' buckets), so that no request ever pays for a compile.

A predictor is built in the worker process after gunicorn forks (no runtime is fork-safe),
on the batcher thread, which also warms it up and is the only thread that calls it.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import ClassVar

import numpy as np

from shared.manifest import Manifest, verify_model_file
from shared.models import StageSizes, parse_stage_sizes
from shared.runtimes import Runtime, get_runtime

COMPILED_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
"""The batch shapes a jit-compiled runtime serves (powers of two: at most twice the work)."""


class Predictor(abc.ABC):
    """Loads one model artifact and maps preprocessed batches to class probabilities."""

    framework: ClassVar[str]
    runtime: ClassVar[Runtime | None] = None
    """Set on a class bound to a variant row; a base predictor reads its row at ``__init__``."""
    batch_buckets: ClassVar[tuple[int, ...] | None] = None

    @classmethod
    def for_runtime(cls, row: Runtime) -> type[Predictor]:
        """This class bound to ``row`` (itself for its own row): ``framework`` the row's name,
        ``runtime`` the row, and the power-of-two buckets if the row compiles."""
        if row.name == cls.framework:
            return cls
        buckets = cls.batch_buckets
        if buckets is None and row.compile:
            buckets = COMPILED_BATCH_BUCKETS
        return type(f"{cls.__name__}[{row.name}]", (cls,), {
            "__module__": cls.__module__, "__doc__": f"{cls.__name__} as {row.name}",
            "framework": row.name, "runtime": row, "batch_buckets": buckets})

    def __init__(self, model_dir: Path, manifest: Manifest, *, threads: int | None = None) -> None:
        """Verify the artifact file (size, sha256: a mismatch is refused) and load it. Which
        artifact kinds a runtime reads is the runtime table's business
        (:func:`services.predictors.load_predictor` checks it)."""
        self.model_dir = Path(model_dir)
        self.manifest = manifest
        self.threads = threads
        if self.runtime is None:
            self.runtime = get_runtime(self.framework)
        self.load(verify_model_file(self.model_dir, manifest))

    # ------------------------------------------------------------------ to implement

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """Version of the framework running the model."""

    @property
    @abc.abstractmethod
    def precision(self) -> str:
        """The precision the runtime really computes in (fp32, bf16, fp16, int8), read back
        from the runtime where it can tell, not merely the row's request."""

    @abc.abstractmethod
    def load(self, path: Path) -> None:
        """Apply ``self.threads`` and the row's ``precision``/``compile`` settings, read the
        native model file at ``path``, keep it ready."""

    @abc.abstractmethod
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) float32 NHWC -> (N, C) logits as a numpy array."""

    # ------------------------------------------------------------------ shared

    @property
    def image_size(self) -> int:
        """Square input side in pixels (``manifest.input.size``)."""
        return self.manifest.input.size

    @property
    def stage_sizes(self) -> StageSizes:
        """ResNet blocks per stage, from ``manifest.architecture`` (stage_sizes, else name)."""
        arch = self.manifest.architecture
        return parse_stage_sizes(arch.get("stage_sizes", arch["name"]))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) float32 -> (N, C) float32 probabilities (a batch padded with zeros to
        its bucket first, when the runtime has buckets)."""
        n = len(batch)
        bucket = next((b for b in self.batch_buckets or () if b >= n), n)
        if bucket > n:
            batch = np.concatenate([batch, np.zeros((bucket - n, *batch.shape[1:]), batch.dtype)])
        z = np.asarray(self.logits(batch), dtype=np.float64)[:n]
        if self.manifest.task == "multilabel":
            return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)

    @classmethod
    def buckets_for(cls, max_batch_size: int) -> tuple[int, ...] | None:
        """The buckets serving up to ``max_batch_size`` needs: those below it plus the first
        that holds it (None when the runtime takes any batch size)."""
        if cls.batch_buckets is None:
            return None
        covering = [b for b in cls.batch_buckets if b >= max_batch_size]
        if not covering:
            raise ValueError(
                f"{cls.framework}: max batch size {max_batch_size} exceeds the largest "
                f"batch bucket {max(cls.batch_buckets)}"
            )
        return tuple(b for b in cls.batch_buckets if b < max_batch_size) + (covering[0],)

    def warmup(self, max_batch_size: int) -> None:
        """Run every batch shape serving will use: each bucket, or sizes 1 and the maximum."""
        sizes = self.buckets_for(max_batch_size) or sorted({1, max_batch_size})
        for n in sizes:
            self.predict(np.zeros((n, self.image_size, self.image_size, 3), np.float32))
