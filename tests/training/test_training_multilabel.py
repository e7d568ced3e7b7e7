"""Multilabel training in the three backends: from one init, each minimises the same sigmoid
BCE (optionally positive-weighted) that the loop's numpy validation loss computes, so the
loss early stopping watches means the same thing in every framework; and the pure pieces
(balanced positive weights, the weighted BCE formula) against their definitions."""

import math

import numpy as np
import pytest

from shared.models import TINY
from training.backends import ModelConfig, get_backend
from training.loop import per_sample_loss, positive_weights, weighted_mean

IMAGE_SIZE = 32
CLASSES = 5
ATOL = 1e-4
FRAMEWORKS = ("torch", "tensorflow", "jax")
POS_WEIGHT = (1.0, 3.0, 0.5, 8.0, 1.0)


def test_positive_weights_are_negatives_over_positives():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    assert positive_weights(targets) == pytest.approx((1 / 3, 3.0, 1.0))
    assert positive_weights(np.ones((3, 2))) == (1.0, 1.0)  # no negatives: unweighted


def test_weighted_bce_matches_its_definition():
    logits = np.array([[2.0, -1.0], [0.0, 30.0]])
    targets = np.array([[1.0, 0.0], [1.0, 1.0]])

    def bce(x, y, p):
        s = 1 / (1 + math.exp(-x))
        return -(p * y * math.log(s) + (1 - y) * math.log(1 - s))

    expected = [np.mean([bce(2, 1, 4), bce(-1, 0, 0.5)]), np.mean([bce(0, 1, 4), bce(30, 1, 0.5)])]
    np.testing.assert_allclose(per_sample_loss(logits, targets, "multilabel", (4.0, 0.5)),
                               expected, rtol=1e-12)
    np.testing.assert_allclose(per_sample_loss(logits, targets, "multilabel", (1.0, 1.0)),
                               per_sample_loss(logits, targets, "multilabel"), rtol=1e-12)


def test_pos_weight_is_refused_for_multiclass_and_wrong_lengths():
    with pytest.raises(ValueError, match="pos_weight"):
        ModelConfig(num_classes=2, image_size=32, stage_sizes=TINY, pos_weight=(1.0, 2.0))
    with pytest.raises(ValueError, match="pos_weight"):
        ModelConfig(num_classes=3, image_size=32, stage_sizes=TINY, task="multilabel",
                    pos_weight=(1.0, 2.0))


@pytest.mark.slow  # imports and compiles all three frameworks
@pytest.mark.parametrize("pos_weight", [None, POS_WEIGHT], ids=["plain", "pos-weighted"])
def test_backends_minimise_the_loops_bce_from_one_init(tiny_state, pos_weight):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    y = (rng.random((4, CLASSES)) < 0.4).astype(np.float32)
    w = np.array([1.0, 2.0, 0.5, 1.0], np.float32)
    config = ModelConfig(num_classes=CLASSES, image_size=IMAGE_SIZE, stage_sizes=TINY,
                         task="multilabel", threads=1, pos_weight=pos_weight)
    losses = {}
    for framework in FRAMEWORKS:
        backend = get_backend(framework)(config)
        backend.build(tiny_state, 1e-5)
        loss, logits = backend.train_step(x, y, w)
        expected = weighted_mean(per_sample_loss(logits, y, "multilabel", pos_weight), w)
        assert loss == pytest.approx(expected, abs=ATOL), framework
        losses[framework] = loss
    assert max(losses.values()) - min(losses.values()) < ATOL
