"""bf16 mixed precision in every backend: float32 weights, bfloat16 compute, float32 loss and
logits; results close to fp32 (bfloat16 keeps ~3 significant digits), training still works,
and the Keras global dtype policy is left as it was."""

import numpy as np
import pytest

from shared.models import TINY
from training.backends import ModelConfig, get_backend
from training.backends.torch import initial_state

pytestmark = pytest.mark.slow  # compiles fp32 and bf16 programs in three frameworks

SIZE = 32
CLASSES = 5
BF16_ATOL = 0.1
"""Logits are O(1); bfloat16's 8-bit mantissa through a dozen layers stays well inside."""


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, SIZE, SIZE, 3)).astype(np.float32)
    return x, np.arange(8) % CLASSES, np.ones(8, np.float32)


@pytest.fixture(scope="module")
def init():
    return initial_state(CLASSES, TINY, seed=0)


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_training_loop_bf16_close_to_fp32_and_trains(framework, batch, init):
    x, y, w = batch
    backends = {}
    for precision in ("fp32", "bf16"):
        backend = get_backend(framework)(ModelConfig(
            num_classes=CLASSES, image_size=SIZE, stage_sizes=TINY, precision=precision,
            threads=1))
        backend.build(init, 1e-3)
        backends[precision] = backend
    fp32_logits, bf16_logits = (backends[p].eval_step(x) for p in ("fp32", "bf16"))
    assert bf16_logits.dtype == np.float32
    np.testing.assert_allclose(bf16_logits, fp32_logits, atol=BF16_ATOL, rtol=0)
    assert not np.array_equal(bf16_logits, fp32_logits)  # bf16 really was used
    losses = [backends["bf16"].train_step(x, y, w)[0] for _ in range(3)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    state = backends["bf16"].get_state()
    assert {value.dtype for value in state.values() if value.dtype.kind in "fV"} == {
        np.dtype(np.float32)}  # master weights stay float32


def test_training_loop_bf16_restores_the_keras_policy():
    import keras

    before = keras.config.dtype_policy().name
    backend = get_backend("tensorflow")(ModelConfig(
        num_classes=CLASSES, image_size=SIZE, stage_sizes=TINY, precision="bf16"))
    backend.build(None, 1e-3)
    assert keras.config.dtype_policy().name == before
    assert backend.model.layers[-1].dtype_policy.name == "mixed_bfloat16"
