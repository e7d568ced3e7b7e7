"""TensorFlow predictor: ``model.keras`` loaded as is (no rebuilding), called through one
``tf.function`` whose signature leaves the batch dimension open, so every batch size reuses
a single trace (``model.predict`` would retrace per shape and add its own batching loop).

Intra-op threads are set before the model is loaded (TF fixes its pools on first use; a
process where TF already ran keeps its pools, with a warning) and inter-op to 1: ops run one
at a time, each parallel inside, like the other runtimes.

Variant ``compile=True`` (tensorflow-xla): the ``tf.function`` is ``jit_compile=True``, so XLA
compiles the whole net once per input shape; the row serves the power-of-two batch buckets
and warm-up compiles each. XLA may fuse differently from the eager kernels; the model computes
in Keras's compute dtype (float32), which ``precision`` reports.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from services.predictors.base import Predictor

log = logging.getLogger(__name__)
DTYPE_NAMES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class TensorFlowPredictor(Predictor):
    """Keras 3 model on the TensorFlow backend."""

    framework = "tensorflow"

    @property
    def version(self) -> str:
        return tf.__version__

    @property
    def precision(self) -> str:
        return DTYPE_NAMES[self.model.dtype_policy.compute_dtype]

    def load(self, path: Path) -> None:
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(f"KERAS_BACKEND is {keras.backend.backend()!r}, need 'tensorflow'")
        if self.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # TF already ran in this process (never in a fresh worker)
                log.warning("TensorFlow already initialised: keeping %d intra-op threads",
                            tf.config.threading.get_intra_op_parallelism_threads())
        model = keras.saving.load_model(path, compile=False)
        size = self.image_size
        signature = [tf.TensorSpec([None, size, size, 3], tf.float32)]
        self._forward = tf.function(lambda x: model(x, training=False), input_signature=signature,
                                    jit_compile=self.runtime.compile)
        self.model = model

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(tf.convert_to_tensor(batch)).numpy()
