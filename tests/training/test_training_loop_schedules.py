"""The neutral loop's pure-Python parts: early stopping, the plateau schedule, the numpy loss
and accuracy every framework is judged by, and the progress line. No framework imported."""

import io
import math

import numpy as np
import pytest

from training.loop import (
    EarlyStopping,
    Progress,
    ReduceLROnPlateau,
    correct_count,
    effective_batch_size,
    per_sample_loss,
    probabilities,
    sample_weights,
    weighted_mean,
)


def test_training_loop_early_stopping_waits_patience_epochs_then_stops():
    stopper = EarlyStopping(patience=2)
    assert stopper.update(1.0, 1)
    assert stopper.update(0.8, 2)
    assert not stopper.update(0.9, 3) and not stopper.should_stop
    assert not stopper.update(0.8, 4)  # equal is not better
    assert stopper.should_stop
    assert (stopper.best, stopper.best_epoch) == (0.8, 2)


def test_training_loop_early_stopping_improvement_resets_the_count():
    stopper = EarlyStopping(patience=2)
    for epoch, value in enumerate([1.0, 1.1, 0.9, 1.0], start=1):
        stopper.update(value, epoch)
    assert stopper.bad_epochs == 1 and not stopper.should_stop and stopper.best_epoch == 3


def test_training_loop_early_stopping_min_delta_and_nan():
    stopper = EarlyStopping(patience=1, min_delta=0.1)
    stopper.update(1.0, 1)
    assert not stopper.update(0.95, 2)  # within min_delta
    stopper = EarlyStopping(patience=3)
    assert not stopper.update(math.nan, 1)
    assert stopper.best_epoch is None


def test_training_loop_early_stopping_patience_zero_never_stops():
    stopper = EarlyStopping(patience=0)
    for epoch in range(1, 20):
        stopper.update(float(epoch), epoch)
    assert not stopper.should_stop and stopper.best_epoch == 1


def test_training_loop_plateau_reduces_after_patience_bad_epochs():
    plateau = ReduceLROnPlateau(1e-3, factor=0.1, patience=2)
    assert plateau.step(1.0) == 1e-3
    assert plateau.step(1.0) == 1e-3  # one bad epoch
    assert plateau.step(1.0) == pytest.approx(1e-4)  # second bad epoch: reduce
    assert plateau.step(1.0) == pytest.approx(1e-4)  # the count restarted
    assert plateau.step(0.5) == pytest.approx(1e-4)  # improvement


def test_training_loop_plateau_threshold_is_relative():
    plateau = ReduceLROnPlateau(1.0, factor=0.5, patience=1, threshold=0.01)
    plateau.step(100.0)
    assert plateau.step(99.5) == 0.5  # 0.5 % better: below the 1 % threshold


def test_training_loop_plateau_min_lr_and_cooldown():
    plateau = ReduceLROnPlateau(1e-3, factor=0.1, patience=1, min_lr=5e-5, cooldown=1)
    plateau.step(1.0)
    assert plateau.step(1.0) == pytest.approx(1e-4)
    assert plateau.step(1.0) == pytest.approx(1e-4)  # cooldown epoch
    assert plateau.step(1.0) == pytest.approx(5e-5)  # floored at min_lr
    assert plateau.step(1.0) == pytest.approx(5e-5)


@pytest.mark.parametrize("kwargs", [{"factor": 1.0}, {"factor": 0.0}, {"patience": 0}])
def test_training_loop_plateau_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        ReduceLROnPlateau(1e-3, **kwargs)


def test_training_loop_cross_entropy_matches_the_definition():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    expected = [-math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1))), math.log(3)]
    np.testing.assert_allclose(per_sample_loss(logits, labels, "multiclass"), expected)
    np.testing.assert_allclose(probabilities(logits, "multiclass").sum(axis=1), 1, rtol=1e-6)


def test_training_loop_bce_with_logits_is_stable_for_large_logits():
    logits = np.array([[1000.0, -1000.0], [0.0, 0.0]])
    targets = np.array([[1, 0], [1, 0]])
    losses = per_sample_loss(logits, targets, "multilabel")
    np.testing.assert_allclose(losses, [0.0, math.log(2)], atol=1e-12)
    np.testing.assert_allclose(probabilities(logits, "multilabel")[1], [0.5, 0.5])


def test_training_loop_class_weights_weight_the_mean():
    weights = sample_weights(np.array([0, 1, 1]), np.array([2.0, 0.5], np.float32))
    np.testing.assert_allclose(weights, [2.0, 0.5, 0.5])
    assert weighted_mean(np.array([1.0, 4.0, 4.0]), weights) == pytest.approx(6.0 / 3.0)
    assert weighted_mean(np.array([1.0, 2.0]), sample_weights(np.array([0, 1]), None)) == 1.5


def test_training_loop_correct_count_per_task():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert correct_count(logits, np.array([1, 1, 1]), "multiclass") == 2
    multilabel = np.array([[1.0, -1.0], [-1.0, -1.0]])
    assert correct_count(multilabel, np.array([[1, 0], [1, 0]]), "multilabel") == 1.5


def test_training_loop_batch_is_capped_at_the_training_set():
    assert effective_batch_size(32, 20) == 20
    assert effective_batch_size(32, 100) == 32
    with pytest.raises(ValueError):
        effective_batch_size(32, 0)


def test_training_loop_progress_prints_every_print_freq_steps():
    stream = io.StringIO()
    progress = Progress("torch epoch 1/2", 5, print_freq=2, stream=stream)
    for step in range(1, 6):
        progress.update(step, 0.5, 0.75, 123.4)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # steps 2, 4 and the last one
    assert lines[-1].startswith("torch epoch 1/2 [5/5] loss 0.5000 acc 0.750")
    assert "123.4 img/s" in lines[-1]
