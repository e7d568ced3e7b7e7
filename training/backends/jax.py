"""JAX/Flax backend: jitted train and eval steps, compiled ahead of time on first use per input
shape (timed as compile seconds, separate from step time), optax Adam with an injectable
learning rate (changing it never recompiles).

bf16: the Flax ResNet has no `dtype` field, so mixed precision is done here the way
`torch.autocast` does it: float32 master parameters, cast (with the images) to bfloat16 inside
the jitted step; Flax then computes convolutions and dense layers in bfloat16, BatchNorm
statistics in float32 (Flax promotes them), and the loss in float32.

Threads: XLA's CPU client has no run-time intra-op setting (see `base.limit_cpus`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from shared.models.flax_resnet import (
    build_flax_resnet,
    init_variables,
    load_flax_variables,
    save_flax_variables,
)
from training.porting import flax_to_state_dict, state_dict_to_flax

from .base import ADAM_BETAS, ADAM_EPSILON, Backend, StateDict

Variables = dict[str, Any]


def weighted_bce(logits: jax.Array, targets: jax.Array,
                 pos_weight: tuple[float, ...] | None) -> jax.Array:
    """Element-wise BCE-with-logits, positives weighted by `pos_weight` (torch's formula:
    (1 - y) x + (1 + (p - 1) y) softplus(-x)); optax's own when there is no weight."""
    if pos_weight is None:
        return optax.sigmoid_binary_cross_entropy(logits, targets)
    p = jnp.asarray(pos_weight, jnp.float32)
    return (1 - targets) * logits + (1 + (p - 1) * targets) * jax.nn.softplus(-logits)


class JaxBackend(Backend):
    name = "jax"
    file_name = "params.msgpack"

    def build(self, init: StateDict | None, lr: float) -> None:
        cfg = self.config
        self.model = build_flax_resnet(cfg.num_classes, cfg.stage_sizes)
        dummy = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
        self._template = jax.eval_shape(partial(self.model.init, train=False),
                                        jax.random.PRNGKey(0), dummy)
        if init is None:
            variables = init_variables(self.model, cfg.image_size, seed=cfg.seed)
        else:
            variables = state_dict_to_flax(init, self._template)
        self._set_variables(variables)
        self.tx = optax.inject_hyperparams(optax.adam)(
            learning_rate=lr, b1=ADAM_BETAS[0], b2=ADAM_BETAS[1], eps=ADAM_EPSILON
        )
        self.opt_state = self.tx.init(self.params)
        self.compute_dtype = jnp.bfloat16 if cfg.bf16 else jnp.float32
        self._train_jit = jax.jit(self._train_fn, donate_argnums=(0,))
        self._eval_jit = jax.jit(self._eval_fn)
        self._executables: dict[tuple, Callable] = {}

    def _set_variables(self, variables: Variables) -> None:
        self.params = jax.device_put(variables["params"])
        self.batch_stats = jax.device_put(variables["batch_stats"])

    def _cast(self, tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda leaf: leaf.astype(self.compute_dtype), tree)

    def _logits(self, params: Any, batch_stats: Any, x: jax.Array, train: bool) -> tuple:
        variables = {"params": self._cast(params), "batch_stats": batch_stats}
        if train:
            logits, updates = self.model.apply(variables, self._cast(x), train=True,
                                               mutable=["batch_stats"])
            return logits.astype(jnp.float32), updates["batch_stats"]
        return self.model.apply(variables, self._cast(x), train=False).astype(jnp.float32), None

    def _train_fn(self, state: tuple, x: jax.Array, y: jax.Array, w: jax.Array) -> tuple:
        params, batch_stats, opt_state = state

        def loss_fn(params: Any) -> tuple[jax.Array, tuple]:
            logits, new_stats = self._logits(params, batch_stats, x, train=True)
            if self.config.task == "multiclass":
                per_example = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            else:
                per_example = weighted_bce(logits, y, self.config.pos_weight).mean(axis=1)
            return jnp.sum(per_example * w) / jnp.sum(w), (logits, new_stats)

        (loss, (logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_stats, opt_state), loss, logits

    def _eval_fn(self, params: Any, batch_stats: Any, x: jax.Array) -> jax.Array:
        return self._logits(params, batch_stats, x, train=False)[0]

    def _executable(self, key: tuple, jitted: Any, *args: Any) -> Callable:
        """The compiled program for `key` (step name + batch shape, which fixes every other
        shape): lowered and compiled on first use, timed into `compile_seconds`, so step
        timings never include compilation."""
        if key not in self._executables:
            with self.compiling():
                self._executables[key] = jitted.lower(*args).compile()
        return self._executables[key]

    def train_step(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
        state = (self.params, self.batch_stats, self.opt_state)
        step = self._executable(("train", x.shape), self._train_jit, state, x, y, w)
        (self.params, self.batch_stats, self.opt_state), loss, logits = step(state, x, y, w)
        return float(loss), np.asarray(logits)

    def eval_step(self, x: np.ndarray) -> np.ndarray:
        step = self._executable(("eval", x.shape), self._eval_jit, self.params,
                                self.batch_stats, x)
        return np.asarray(step(self.params, self.batch_stats, x))

    def set_lr(self, lr: float) -> None:
        hyperparams = self.opt_state.hyperparams
        hyperparams["learning_rate"] = jnp.asarray(lr, hyperparams["learning_rate"].dtype)

    def _variables(self) -> Variables:
        return {"params": self.params, "batch_stats": self.batch_stats}

    def get_state(self) -> StateDict:
        return flax_to_state_dict(self._variables())

    def set_state(self, state: StateDict) -> None:
        self._set_variables(state_dict_to_flax(state, self._template))

    def save(self, directory: Path) -> str:
        save_flax_variables(Path(directory) / self.file_name, self._variables())
        return self.file_name

    def load(self, path: Path) -> None:
        self._set_variables(load_flax_variables(path, self.model, self.config.image_size))

    def parameter_count(self) -> int:
        return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(self.params))

    def device(self) -> str:
        return jax.default_backend()

    def versions(self) -> dict[str, str]:
        return {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__}
