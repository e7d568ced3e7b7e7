"""JAX predictor: the Flax ResNet rebuilt from ``manifest.architecture`` and the variables
restored from ``params.msgpack`` (checked against the module's variable tree).

``jax.jit`` compiles once per input shape, so this runtime declares power-of-two batch
buckets: warm-up compiles each bucket up to the service's max batch size and the batcher pads
every batch to one of them, so a request never waits for XLA.

Threads: XLA's CPU pool is sized to the cores the process may run on; ``threads == 1`` turns
Eigen multi-threading off through ``XLA_FLAGS`` (only effective before JAX's first use).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import jax
import numpy as np

from services.predictors.base import Predictor
from shared.models.flax_resnet import build_flax_resnet, load_flax_variables

SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


class JaxPredictor(Predictor):
    """Flax linen ResNet, jit-compiled per batch bucket."""

    framework = "jax"
    batch_buckets = (1, 2, 4, 8, 16, 32, 64, 128)

    @property
    def version(self) -> str:
        return jax.__version__

    def load(self, path: Path) -> None:
        if self.threads == 1:
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_FLAGS}"
        model = build_flax_resnet(self.manifest.num_classes, self.stage_sizes)
        variables = load_flax_variables(path, model, self.image_size)
        self.variables = jax.device_put(variables)
        self.apply = jax.jit(partial(model.apply, train=False))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.apply(self.variables, batch))
