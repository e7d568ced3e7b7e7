"""The contract every training backend implements, declared in full here (like mlcommons'
inference `backend.py`), plus the lazy factory.

A backend owns one model and its optimizer in one framework and nothing else: the loop
(`training.loop`) owns data, loss bookkeeping, schedules, early stopping and logging. State
crosses the boundary as a *numpy state dict* (torchvision keys and layouts, see
`training.porting`), so "initialise once in torch and port", best-checkpoint restore and
resume all use the same path in every framework.

Numbers that must be equal across frameworks are defined once here: Adam's betas and epsilon
(Keras' default epsilon is 1e-7, torch's and optax's 1e-8, so it is always set explicitly).
Keras applies epsilon before bias correction ("epsilon hat"), torch and optax after it; the
difference is eps * (1 - 1/sqrt(1 - beta2^t)), negligible next to sqrt(v) except for
parameters with near-zero gradients in the first steps.
"""

from __future__ import annotations

import importlib
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from shared.processes import usable_cpu_count, usable_cpu_ids

StateDict = dict[str, np.ndarray]

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
PRECISIONS = ("fp32", "bf16")
TASKS = ("multiclass", "multilabel")

BACKENDS: dict[str, str] = {
    "torch": "training.backends.torch:TorchBackend",
    "tensorflow": "training.backends.tensorflow:TensorFlowBackend",
    "jax": "training.backends.jax:JaxBackend",
}
"""Framework name -> "module:class", imported only when asked for."""


@dataclass(frozen=True)
class ModelConfig:
    """What a backend needs to build its model: identical for every framework in a run."""

    num_classes: int
    image_size: int
    stage_sizes: tuple[int, ...]
    task: str = "multiclass"
    precision: str = "fp32"
    threads: int | None = None
    seed: int = 0
    """Only used by `build(None)` (framework-native init, e.g. before `load`)."""
    pos_weight: tuple[float, ...] | None = None
    """multilabel: weight of each class's positive term in BCE (torch's
    `BCEWithLogitsLoss(pos_weight=...)`); None weighs positives and negatives alike."""

    def __post_init__(self) -> None:
        if self.pos_weight is not None and (
                self.task != "multilabel" or len(self.pos_weight) != self.num_classes
                or min(self.pos_weight) <= 0):
            raise ValueError(f"pos_weight: one positive weight per class of a multilabel "
                             f"model, got {self.pos_weight} for a {self.task} model with "
                             f"{self.num_classes} classes")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"


class Backend(ABC):
    """One framework's model + Adam optimizer, driven by `training.loop`.

    Arrays in and out are numpy: images float32 NHWC, labels int64 (N,) class indices or
    float32 (N, C) 0/1 targets for multilabel, per-example weights float32 (N,).
    The loss minimised is sum(w * l) / sum(w), l = cross-entropy (multiclass) or the class-mean
    of BCE-with-logits (multilabel; each class's positive term times `ModelConfig.pos_weight`
    when given), computed in float32 also under bf16.
    """

    name: ClassVar[str]
    """Framework name as in manifests: "torch", "tensorflow", "jax"."""
    file_name: ClassVar[str]
    """Native model file written by `save` (model.pt, model.keras, params.msgpack)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.compile_seconds = 0.0
        """Total seconds spent tracing/compiling step functions (0 for eager torch); the loop
        excludes it from images/s and reports it separately."""

    @abstractmethod
    def build(self, init: StateDict | None, lr: float) -> None:
        """Create the model (from `init`, or the framework's own seeded init when None), the
        optimizer with learning rate `lr`, and set intra-op threads."""

    @abstractmethod
    def train_step(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray
    ) -> tuple[float, np.ndarray]:
        """One optimizer step in training mode; returns (loss, float32 logits (N, C))."""

    @abstractmethod
    def eval_step(self, x: np.ndarray) -> np.ndarray:
        """float32 logits (N, C) in inference mode (BatchNorm running statistics)."""

    @abstractmethod
    def set_lr(self, lr: float) -> None:
        """Change the learning rate without recompiling or resetting optimizer state."""

    @abstractmethod
    def get_state(self) -> StateDict:
        """A copy of the model weights (BN statistics included) as a numpy state dict."""

    @abstractmethod
    def set_state(self, state: StateDict) -> None:
        """Load a numpy state dict into the built model (optimizer state is kept)."""

    @abstractmethod
    def save(self, directory: Path) -> str:
        """Write the native model file into `directory`; returns its file name."""

    @abstractmethod
    def load(self, path: Path) -> None:
        """Load weights from a native model file written by `save` into the built model."""

    @abstractmethod
    def parameter_count(self) -> int:
        """Trainable parameters (BN running statistics not counted): equal across frameworks."""

    @abstractmethod
    def device(self) -> str:
        """Where the model runs: "cpu", "cuda"/"gpu" (recorded in the manifest)."""

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the framework and its companions (first key = `name`)."""

    def framework_version(self) -> str:
        return self.versions()[self.name]

    @contextmanager
    def compiling(self) -> Iterator[None]:
        """Time a trace/compile and add it to `compile_seconds`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.compile_seconds += time.perf_counter() - start


def get_backend(name: str) -> type[Backend]:
    """The backend class for a framework name, importing only that framework."""
    try:
        module_name, class_name = BACKENDS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown framework {name!r}; known: {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module_name), class_name)


def limit_cpus(threads: int) -> None:
    """Pin the process to `threads` CPUs when fewer than usable were asked for.

    torch and TensorFlow take an intra-op thread count at run time, but XLA's CPU client
    (JAX) sizes its thread pool from the affinity mask when the client is created and has no
    run-time knob; pinning before the first JAX computation is the one setting all three
    honour. Must run before any framework starts its pools.
    """
    if hasattr(os, "sched_setaffinity") and 0 < threads < usable_cpu_count():
        os.sched_setaffinity(0, usable_cpu_ids()[:threads])
