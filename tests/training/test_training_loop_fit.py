"""`training.loop.fit` end to end: first against a scripted numpy backend (exact control of the
validation loss, so early stopping, the plateau schedule and best-checkpoint restore are
checked epoch by epoch, in milliseconds), then one real short run with the torch backend."""

import math
from pathlib import Path

import numpy as np
import pytest

from shared.datasets import ImageSet, get_dataset_spec
from shared.imaging import PreprocessSpec, normalize
from shared.models import TINY
from training.backends import Backend, ModelConfig, get_backend
from training.loop import FitConfig, evaluate_split, fit

SIZE = 32
BLOOD = get_dataset_spec("bloodmnist")
DR = get_dataset_spec("dr")


def easy_set(n: int, seed: int, n_classes: int = BLOOD.n_classes) -> ImageSet:
    """Each class a flat colour plus noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    colours = np.random.default_rng(99).integers(0, 256, (n_classes, 3))
    images = colours[labels][:, None, None, :] + rng.normal(0, 20, (n, SIZE, SIZE, 3))
    return ImageSet(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64))


class ScriptedBackend(Backend):
    """Validation logits follow a script, one entry per epoch: every label is 0 and the logits
    are [a, 0, 0, 0, 0] (DR's 5 classes), so the validation loss is log(1 + 4 exp(-a)). The
    "weights" are the number of train steps taken, which makes a restored checkpoint visible."""

    name = "scripted"
    file_name = "scripted.npy"

    def __init__(self, script: list[float]) -> None:
        super().__init__(ModelConfig(num_classes=DR.n_classes, image_size=SIZE, stage_sizes=TINY))
        self.script, self.steps, self.lrs = script, 0, []

    def build(self, init, lr):
        self.lrs.append(lr)

    def train_step(self, x, y, w):
        self.steps += 1
        return 1.0 / self.steps, np.zeros((len(x), DR.n_classes), np.float32)

    def eval_step(self, x):
        logits = np.zeros((len(x), DR.n_classes), np.float32)
        logits[:, 0] = self.script[self.steps - 1]
        return logits

    def set_lr(self, lr):
        self.lrs.append(lr)

    def get_state(self):
        return {"steps": np.array(self.steps)}

    def set_state(self, state):
        self.steps = int(state["steps"])

    def save(self, directory):
        np.save(Path(directory) / self.file_name, self.steps)
        return self.file_name

    def load(self, path):
        self.steps = int(np.load(path))

    def parameter_count(self):
        return 0

    def device(self):
        return "cpu"

    def versions(self):
        return {"scripted": "1"}


def scripted_fit(script, **config):
    backend = ScriptedBackend(script)
    n = 4  # one step per epoch (batch = training set)
    train = ImageSet(np.zeros((n, SIZE, SIZE, 3), np.uint8), np.zeros(n, np.int64))
    settings = {"epochs": len(script), "batch_size": n, "lr": 1.0, "progress": False,
                "augment": False, **config}
    records = []
    result = fit(backend, train, train, dataset=DR, preprocess=PreprocessSpec(SIZE),
                 config=FitConfig(**settings), on_epoch=records.append)
    return backend, result, records


def test_training_loop_fit_stops_early_and_restores_the_best_epoch():
    # val loss falls until epoch 3, then rises: patience 2 stops after epoch 5
    backend, result, records = scripted_fit([0.0, 1.0, 3.0, 2.0, 1.0, 5.0, 6.0], patience=2,
                                            plateau_patience=5)
    assert [r.epoch for r in records] == [1, 2, 3, 4, 5]
    assert result.stopped_early and result.best_epoch == 3
    assert [r.best for r in records] == [True, True, True, False, False]
    assert backend.steps == 3  # the weights after epoch 3 were restored
    assert records[2].val_loss == pytest.approx(math.log1p(4 * math.exp(-3.0)))


def test_training_loop_fit_plateau_lowers_the_learning_rate():
    backend, result, records = scripted_fit([1.0, 1.0, 1.0, 1.0, 1.0], patience=0,
                                            plateau_patience=2, plateau_factor=0.5)
    assert [r.lr for r in records] == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert backend.lrs == [1.0, 0.5]  # set at the start, then after epoch 3
    assert not result.stopped_early and result.epochs == 5 and result.final_lr == 0.5


def test_training_loop_fit_records_timing_without_the_warmup_step():
    _, result, records = scripted_fit([1.0, 2.0, 3.0], patience=0)
    assert records[0].train_seconds == 0.0 and records[0].images_per_second == 0.0
    assert records[1].images_per_second > 0 and result.images_per_second > 0
    assert result.seconds_per_epoch > 0 and result.compile_seconds == 0.0


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    config = ModelConfig(num_classes=BLOOD.n_classes, image_size=SIZE, stage_sizes=TINY,
                         threads=1)
    backend = get_backend("torch")(config)
    from training.backends.torch import initial_state

    backend.build(initial_state(BLOOD.n_classes, TINY, seed=0), 1e-3)
    train, val = easy_set(48, seed=1), easy_set(16, seed=2)
    fit_config = FitConfig(epochs=3, batch_size=16, lr=1e-3, augment=False, progress=False)
    result = fit(backend, train, val, dataset=BLOOD, preprocess=PreprocessSpec(SIZE),
                 config=fit_config)
    return backend, result, val, tmp_path_factory.mktemp("torch")


def test_training_loop_fit_torch_lowers_the_training_loss(torch_run):
    _, result, _, _ = torch_run
    losses = [record.train_loss for record in result.history]
    assert losses[-1] < 0.8 * losses[0], losses


def test_training_loop_fit_torch_keeps_the_best_weights(torch_run):
    backend, result, val, _ = torch_run
    metrics = evaluate_split(backend, val, BLOOD, PreprocessSpec(SIZE), 16)
    assert metrics["loss"] == pytest.approx(result.best_val_loss, rel=1e-5)


def test_training_loop_fit_torch_save_load_roundtrip(torch_run):
    backend, _, val, directory = torch_run
    path = directory / backend.save(directory)
    fresh = get_backend("torch")(backend.config)
    fresh.build(None, 1e-3)
    fresh.load(path)
    batch = normalize(val.images[:4], PreprocessSpec(SIZE))
    np.testing.assert_array_equal(fresh.eval_step(batch), backend.eval_step(batch))
