"""JAX predictor: the Flax ResNet rebuilt from ``manifest.architecture`` and the variables
restored from ``params.msgpack`` (checked against the module's variable tree).

``jax.jit`` compiles once per input shape, so this runtime declares power-of-two batch
buckets: warm-up compiles each bucket up to the service's max batch size and the batcher pads
every batch to one of them, so a request never waits for XLA.

Variant ``precision="bf16"`` (jax-bf16): the Flax modules compute in bfloat16
(``dtype=bfloat16``; the float32 variables are cast as they are used, Flax's mixed-precision
convention); ``precision`` reports the dtype of the compiled function's output.

Threads: XLA's CPU pool is sized to the cores the process may run on; ``threads == 1`` turns
Eigen multi-threading off through ``XLA_FLAGS`` (only effective before JAX's first use).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from services.predictors.base import Predictor
from shared.models.flax_resnet import build_flax_resnet, load_flax_variables

SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
PRECISION_NAMES = {jnp.dtype(v): k for k, v in DTYPES.items()}


class JaxPredictor(Predictor):
    """Flax linen ResNet, jit-compiled per batch bucket."""

    framework = "jax"
    batch_buckets = (1, 2, 4, 8, 16, 32, 64, 128)

    @property
    def version(self) -> str:
        return jax.__version__

    @property
    def precision(self) -> str:
        return PRECISION_NAMES[jnp.dtype(self.output_dtype)]

    def load(self, path: Path) -> None:
        if self.threads == 1:
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_FLAGS}"
        dtype = DTYPES[self.runtime.precision]
        model = build_flax_resnet(self.manifest.num_classes, self.stage_sizes, dtype=dtype)
        variables = load_flax_variables(path, model, self.image_size)
        self.variables = jax.device_put(variables)
        self.apply = jax.jit(partial(model.apply, train=False))
        self.output_dtype = jax.eval_shape(
            self.apply, self.variables, jax.ShapeDtypeStruct((1, *(self.image_size,) * 2, 3),
                                                             jnp.float32)).dtype

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.apply(self.variables, batch), dtype=np.float32)
