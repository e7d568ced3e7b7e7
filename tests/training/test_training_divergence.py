"""python -m training divergence: the nudged control, the distance, and one real lock-step epoch of
torch, torch', TensorFlow and JAX on a tiny synthetic BloodMNIST."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.datasets.synth_blood import generate_bloodmnist
from shared.processes import child_environment
from training.divergence import ULP, nudged, relative_distance

REPO = Path(__file__).resolve().parents[2]


def test_nudged_moves_every_weight_by_one_rounding_step_and_nothing_else():
    rng = np.random.default_rng(0)
    state = {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "fc.bias": rng.standard_normal(5).astype(np.float32),
             "bn1.running_var": rng.random(4).astype(np.float32) + 0.5}
    moved = nudged(state, seed=0)
    for key in ("conv1.weight", "fc.bias"):
        relative = np.abs(moved[key].astype(np.float64) / state[key] - 1)
        assert moved[key].dtype == np.float32
        assert np.all(relative > 0) and np.all(relative <= 4 * ULP)
    np.testing.assert_array_equal(moved["bn1.running_var"], state["bn1.running_var"])
    assert 0 < relative_distance(moved, state, ("weight", "bias")) <= 4 * ULP


def test_relative_distance_is_the_norm_ratio_over_the_chosen_keys():
    b = {"a.weight": np.array([3.0, 4.0]), "a.running_var": np.array([100.0])}
    a = {"a.weight": np.array([3.0, 4.5]), "a.running_var": np.array([0.0])}
    assert relative_distance(a, b, ("weight",)) == pytest.approx(0.5 / 5.0)
    assert relative_distance(b, b, ("weight", "running_var")) == 0.0


@pytest.mark.slow  # imports and compiles all three frameworks (~1-2 min on 2 cores)
def test_training_divergence_runs_lock_step_from_identical_weights(tmp_path):
    data = generate_bloodmnist(tmp_path / "blood.npz", n=64, size=32, seed=0)
    out = tmp_path / "out"
    env = child_environment({"TF_CPP_MIN_LOG_LEVEL": "3"})
    done = subprocess.run(
        [sys.executable, "-m", "training", "divergence", "--dataset", "bloodmnist",
         "--data", str(data), "--image-size", "32", "--epochs", "1", "--batch-size", "8",
         "--control", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    start, after = json.loads((out / "training_divergence.json").read_text())
    assert set(start["frameworks"]) == {"torch", "torch'", "tensorflow", "jax"}
    # epoch 0: identical weights give identical predictions; the control differs by round-off
    for pair, figures in start["pairs"].items():
        assert figures["same_test_class"] == 1.0, pair
        if "torch'" in pair:
            assert 0 < figures["weights"] <= 4 * ULP, pair
        else:
            assert figures["weights"] == 0.0, pair
    accuracies = {r["test_accuracy"] for r in start["frameworks"].values()}
    assert len(accuracies) == 1
    # one epoch later every trainee moved, and all of them trained on the same batches
    for name, figures in after["frameworks"].items():
        assert np.isfinite(figures["train_loss"]) and np.isfinite(figures["val_loss"]), name
    assert all(figures["weights"] > 4 * ULP for figures in after["pairs"].values())
    assert "torch-jax" in done.stdout and "same test class" in done.stdout
