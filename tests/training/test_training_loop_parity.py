"""The one rule, for training: from identical weights the three backends compute the same
eval logits, the same training-mode loss and logits, and after one Adam step still agree, so
BatchNorm momentum, optimizer settings and loss definitions match across frameworks.

One known convention difference remains after a step: torch updates BatchNorm's running
variance with the unbiased batch variance (x n/(n-1), n = batch x height x width), Keras and
Flax with the biased one. At 32 px the last stage is 1x1, so n = batch and the factor is large;
at 224 px with batch 32 it is 1 + 1/1568. Running means agree everywhere; the running
variances and the post-step eval logits are compared between Keras and Flax only.
"""

import numpy as np
import pytest

from shared.models import TINY
from training.backends import ModelConfig, get_backend

pytestmark = pytest.mark.slow  # imports and compiles all three frameworks (~40-90 s)

IMAGE_SIZE = 32
NUM_CLASSES = 5
BATCH = 4
ATOL = 1e-4
AFTER_STEP_ATOL = 1e-3
LR = 1e-5
"""Small, so that Adam's first, sign-like step (|update| ~ lr for every parameter, whatever
the gradient's size) keeps round-off-level gradient differences invisible."""
FRAMEWORKS = ("torch", "tensorflow", "jax")


@pytest.fixture(scope="module")
def outputs(tiny_state):
    """Per framework: initial eval logits, first train step (loss, logits), eval after it."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 4])
    w = np.array([1.0, 2.0, 0.5, 1.0], np.float32)
    config = ModelConfig(num_classes=NUM_CLASSES, image_size=IMAGE_SIZE, stage_sizes=TINY,
                         threads=1)
    results = {}
    for framework in FRAMEWORKS:
        backend = get_backend(framework)(config)
        backend.build(tiny_state, LR)
        initial = backend.eval_step(x)
        loss, logits = backend.train_step(x, y, w)
        results[framework] = (initial, loss, logits, backend.eval_step(x),
                              backend.parameter_count(), backend.get_state(),
                              _frozen_step(backend, x, y, w))
    return results


def _frozen_step(backend, x, y, w) -> tuple[bool, bool]:
    """After set_lr(0): does a train step leave the weights alone, without recompiling?"""
    backend.set_lr(0.0)
    compiled, before = backend.compile_seconds, backend.get_state()
    backend.train_step(x, y, w)
    after = backend.get_state()
    weights = [key for key in before if not key.endswith(("running_mean", "running_var",
                                                          "num_batches_tracked"))]
    unchanged = all(np.array_equal(before[key], after[key]) for key in weights)
    return unchanged, backend.compile_seconds == compiled


@pytest.mark.parametrize("framework", FRAMEWORKS[1:])
def test_training_loop_identical_init_gives_identical_eval_logits(outputs, framework):
    np.testing.assert_allclose(outputs[framework][0], outputs["torch"][0], atol=ATOL, rtol=0)
    assert outputs[framework][4] == outputs["torch"][4]


@pytest.mark.parametrize("framework", FRAMEWORKS[1:])
def test_training_loop_first_train_step_matches(outputs, framework):
    _, loss, logits, *_ = outputs[framework]
    _, torch_loss, torch_logits, *_ = outputs["torch"]
    assert loss == pytest.approx(torch_loss, abs=ATOL)
    np.testing.assert_allclose(logits, torch_logits, atol=ATOL, rtol=0)


@pytest.mark.parametrize("framework", FRAMEWORKS[1:])
def test_training_loop_after_one_step_running_means_match(outputs, framework, tiny_state):
    """BN momentum convention (torch 0.1 == Keras/Flax 0.9): running means move alike."""
    state, reference = outputs[framework][5], outputs["torch"][5]
    means = [key for key in reference if key.endswith("running_mean")]
    for key in means:
        np.testing.assert_allclose(state[key], reference[key], atol=ATOL, rtol=0, err_msg=key)
    assert not np.allclose(reference[means[0]], tiny_state[means[0]], atol=ATOL)


def test_training_loop_after_one_step_keras_and_flax_agree(outputs):
    keras_state, flax_state = outputs["tensorflow"][5], outputs["jax"][5]
    for key in (key for key in keras_state if key.endswith("running_var")):
        np.testing.assert_allclose(keras_state[key], flax_state[key], atol=ATOL, rtol=0,
                                   err_msg=key)
    np.testing.assert_allclose(outputs["tensorflow"][3], outputs["jax"][3],
                               atol=AFTER_STEP_ATOL, rtol=0)
    assert not np.allclose(outputs["jax"][3], outputs["jax"][0], atol=ATOL)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_loop_set_lr_takes_effect_without_recompiling(outputs, framework):
    assert outputs[framework][6] == (True, True)
