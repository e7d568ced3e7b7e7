"""TensorFlow/Keras 3 backend (Keras on its default "tensorflow" backend).

The train and eval steps are `tf.function`s traced once (batch dimension left open), not
per-batch eager calls; bf16 through the Keras "mixed_bfloat16" dtype policy, set only while the
model is built (the global policy is restored afterwards)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from shared.models.keras_resnet import build_keras_resnet, keras_parameter_count
from training.porting import keras_to_state_dict, state_dict_to_keras

from .base import ADAM_BETAS, ADAM_EPSILON, Backend, StateDict

MIXED_POLICY = "mixed_bfloat16"
log = logging.getLogger(__name__)


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to `name` for the duration (layers capture it when
    they are created), then restored."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def set_intra_op_threads(threads: int) -> None:
    """TF fixes its thread pools when its runtime starts; later changes are refused, so a
    second backend in one process keeps the first setting (logged, not fatal)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        if current != threads:
            log.warning("TensorFlow already started with %s intra-op threads; keeping them",
                        current)


class TensorFlowBackend(Backend):
    name = "tensorflow"
    file_name = "model.keras"

    def build(self, init: StateDict | None, lr: float) -> None:
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}; this backend needs "
                               "KERAS_BACKEND=tensorflow (Keras' default)")
        cfg = self.config
        if cfg.threads:
            set_intra_op_threads(cfg.threads)
        keras.utils.set_random_seed(cfg.seed)
        with dtype_policy(MIXED_POLICY if cfg.bf16 else "float32"):
            self.model = build_keras_resnet(cfg.num_classes, cfg.image_size, cfg.stage_sizes)
        if init is not None:
            state_dict_to_keras(init, self.model)
        self.optimizer = keras.optimizers.Adam(
            learning_rate=lr, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1], epsilon=ADAM_EPSILON
        )
        self.optimizer.build(self.model.trainable_variables)
        images = tf.TensorSpec([None, cfg.image_size, cfg.image_size, 3], tf.float32)
        labels = (tf.TensorSpec([None], tf.int64) if cfg.task == "multiclass"
                  else tf.TensorSpec([None, cfg.num_classes], tf.float32))
        weights = tf.TensorSpec([None], tf.float32)
        self._train = tf.function(self._train_graph, input_signature=[images, labels, weights])
        self._eval = tf.function(self._eval_graph, input_signature=[images])
        self._traced: set[str] = set()

    def _per_example_loss(self, logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        if self.config.task == "multiclass":
            return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        if self.config.pos_weight is None:
            bce = tf.nn.sigmoid_cross_entropy_with_logits(labels, logits)
        else:
            bce = tf.nn.weighted_cross_entropy_with_logits(
                labels, logits, tf.constant(self.config.pos_weight, tf.float32))
        return tf.reduce_mean(bce, axis=1)

    def _train_graph(self, x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, ...]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(x, training=True), tf.float32)
            loss = tf.reduce_sum(self._per_example_loss(logits, y) * w) / tf.reduce_sum(w)
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        return loss, logits

    def _eval_graph(self, x: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.model(x, training=False), tf.float32)

    def _trace_once(self, name: str, function: tf.types.experimental.PolymorphicFunction) -> None:
        """Trace on first use (timed as compile seconds); later calls hit the trace cache."""
        if name not in self._traced:
            with self.compiling():
                function.get_concrete_function()
            self._traced.add(name)

    def train_step(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
        self._trace_once("train", self._train)
        loss, logits = self._train(x, y, w)
        return float(loss), logits.numpy()

    def eval_step(self, x: np.ndarray) -> np.ndarray:
        self._trace_once("eval", self._eval)
        return self._eval(x).numpy()

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate.assign(lr)

    def get_state(self) -> StateDict:
        return keras_to_state_dict(self.model)

    def set_state(self, state: StateDict) -> None:
        state_dict_to_keras(state, self.model)

    def save(self, directory: Path) -> str:
        self.model.save(Path(directory) / self.file_name)
        return self.file_name

    def load(self, path: Path) -> None:
        self.model.load_weights(path)

    def parameter_count(self) -> int:
        return keras_parameter_count(self.model)

    def device(self) -> str:
        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"

    def versions(self) -> dict[str, str]:
        return {"tensorflow": tf.__version__, "keras": keras.__version__}
