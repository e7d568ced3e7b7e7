"""The one framework-neutral training loop.

Everything that is not framework-specific lives here, so the three trainers cannot drift apart:
the seeded batch order and augmentation (`shared.datasets.iterate_batches`), per-sample class
weights, the validation loss (computed in numpy from each framework's logits, so every
framework is judged by the same formula), accuracy, the validation metric
(`shared.metrics.evaluate`), ReduceLROnPlateau, early stopping with best-checkpoint restore,
the progress line and the per-epoch history. A backend (`training.backends.base.Backend`)
contributes only build / train step / eval step / learning rate / state / save.

Conventions follow Keras' callbacks (the more intuitive of the two): early stopping stops after
`patience` consecutive epochs without improvement of the validation loss, the plateau schedule
multiplies the learning rate by `factor` after `patience` such epochs (torch's
ReduceLROnPlateau waits one epoch longer: it reduces when bad epochs *exceed* patience).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import numpy as np

from shared.datasets import DatasetSpec, ImageSet, iterate_batches
from shared.imaging import PreprocessSpec
from shared.metrics import choose_thresholds, evaluate

from .backends.base import Backend

PLATEAU_THRESHOLD = 1e-4
"""Relative improvement the plateau schedule counts as progress (torch's default, mode "rel")."""
DEFAULT_PLATEAU_FACTOR = 0.1
"""Learning-rate multiplier on a plateau (the default of both torch and Keras)."""
DEFAULT_MIN_LR = 1e-7
PREFETCH_BATCHES = 2
"""Batches prepared ahead in a background thread (same batches, overlapped with the step)."""
DEFAULT_PRINT_FREQ = 10
MULTILABEL_LOGIT_THRESHOLD = 0.0
"""Logit 0 = probability 0.5, the threshold shared.metrics uses for multilabel predictions."""
ACCURACY_KEY = {"multiclass": "accuracy", "multilabel": "hamming_accuracy"}
"""The `shared.metrics.evaluate` key that `correct_count` / n matches, per task."""


# --------------------------------------------------------------------------- schedules


class EarlyStopping:
    """Stop after `patience` consecutive epochs whose value did not beat the best by more than
    `min_delta`; remembers the best epoch (1-based) so the caller can restore its weights.
    patience 0 disables stopping (the best epoch is still tracked). NaN never improves."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if patience < 0 or min_delta < 0:
            raise ValueError(f"patience and min_delta must be >= 0, got {patience}, {min_delta}")
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch's value; True when it is the new best."""
        if value < self.best - self.min_delta:  # False for NaN
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


class ReduceLROnPlateau:
    """Multiply the learning rate by `factor` (never below `min_lr`) after `patience`
    consecutive epochs without a relative improvement of `threshold`, then wait `cooldown`
    epochs before counting again. Pure Python: the loop passes the result to `Backend.set_lr`."""

    def __init__(
        self,
        lr: float,
        *,
        factor: float = DEFAULT_PLATEAU_FACTOR,
        patience: int = 2,
        threshold: float = PLATEAU_THRESHOLD,
        min_lr: float = DEFAULT_MIN_LR,
        cooldown: int = 0,
    ) -> None:
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if patience < 1 or cooldown < 0:
            raise ValueError(f"patience must be >= 1 and cooldown >= 0, got {patience}, {cooldown}")
        self.lr = lr
        self.factor, self.patience, self.threshold = factor, patience, threshold
        self.min_lr, self.cooldown = min_lr, cooldown
        self.best = math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def step(self, value: float) -> float:
        """Record one epoch's value; returns the learning rate for the next epoch."""
        if value < self.best * (1.0 - self.threshold):  # False for NaN
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs >= self.patience:
            self.lr = max(self.lr * self.factor, self.min_lr)
            self.bad_epochs, self.cooldown_left = 0, self.cooldown
        return self.lr


# --------------------------------------------------------------------------- numpy math


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax (multiclass) or sigmoid (multilabel) of float logits, as float32."""
    logits = np.asarray(logits, np.float64)
    if task == "multiclass":
        probs = np.exp(log_softmax(logits))
    else:
        probs = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid without exp overflow
    return probs.astype(np.float32)


def per_sample_loss(logits: np.ndarray, labels: np.ndarray, task: str,
                    pos_weight: Sequence[float] | None = None) -> np.ndarray:
    """Cross-entropy (multiclass) or class-mean BCE-with-logits (multilabel, positives
    weighted by `pos_weight` when given) per example, the same formulas the backends
    minimise."""
    logits = np.asarray(logits, np.float64)
    if task == "multiclass":
        return -log_softmax(logits)[np.arange(len(labels)), labels]
    targets = np.asarray(labels, np.float64)
    softplus_neg = np.maximum(-logits, 0) + np.log1p(np.exp(-np.abs(logits)))  # -log sigmoid
    weight = 1.0 if pos_weight is None else 1.0 + (np.asarray(pos_weight) - 1.0) * targets
    bce = (1.0 - targets) * logits + weight * softplus_neg
    return bce.mean(axis=1)


def sample_weights(labels: np.ndarray, class_weights: np.ndarray | None) -> np.ndarray:
    """float32 weight per example: its class weight, or 1 everywhere without class weights."""
    if class_weights is None:
        return np.ones(len(labels), np.float32)
    return class_weights[labels].astype(np.float32)


def positive_weights(targets: np.ndarray) -> tuple[float, ...]:
    """multilabel 'balanced' BCE positive weights: negatives / positives of each class in
    the training targets (N, C), so a rare finding's positives weigh as much as its
    negatives; 1 for a class without positives or negatives."""
    targets = np.asarray(targets, np.float64)
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    ok = (positives > 0) & (negatives > 0)
    return tuple(float(w) for w in np.where(ok, negatives / np.maximum(positives, 1), 1.0))


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """sum(w * v) / sum(w): torch's CrossEntropyLoss(weight=...) reduction, used by every
    backend, so class weights change the loss' balance but not its scale."""
    total = float(np.sum(weights))
    return float(np.sum(values * weights) / total) if total > 0 else math.nan


def correct_count(logits: np.ndarray, labels: np.ndarray, task: str) -> float:
    """Correct predictions (multiclass) or correct label decisions / n_labels (multilabel)."""
    if task == "multiclass":
        return float(np.sum(np.argmax(logits, axis=1) == labels))
    decisions = (np.asarray(logits) >= MULTILABEL_LOGIT_THRESHOLD) == (np.asarray(labels) > 0)
    return float(decisions.mean(axis=1).sum())


def model_labels(labels: np.ndarray, task: str) -> np.ndarray:
    """Labels as the backends take them: int64 class indices or float32 0/1 targets."""
    return labels.astype(np.int64) if task == "multiclass" else labels.astype(np.float32)


# --------------------------------------------------------------------------- progress


class Progress:
    """The metric logger: `header [ step/total] loss .. acc .. img/s .. eta ..`, redrawn in place
    on a terminal, one line every `print_freq` steps otherwise (logs stay readable)."""

    def __init__(
        self, header: str, total: int, *, print_freq: int = DEFAULT_PRINT_FREQ,
        stream: IO[str] | None = None, enabled: bool = True,
    ) -> None:
        self.header, self.total, self.print_freq = header, total, max(1, print_freq)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()

    def update(self, step: int, loss: float, accuracy: float, images_per_second: float) -> None:
        if not self.enabled or not (self.tty or step % self.print_freq == 0 or step == self.total):
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / step * (self.total - step)
        width = len(str(self.total))
        line = (f"{self.header} [{step:>{width}}/{self.total}] loss {loss:.4f} acc {accuracy:.3f} "
                f"{images_per_second:7.1f} img/s eta {eta:5.0f}s")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        if self.tty and step == self.total:
            self.stream.write("\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()


# --------------------------------------------------------------------------- loop


@dataclass(frozen=True)
class FitConfig:
    """The hyperparameters of one run (the same for every framework)."""

    epochs: int
    batch_size: int
    lr: float
    seed: int = 0
    patience: int = 5
    plateau_patience: int = 2
    plateau_factor: float = DEFAULT_PLATEAU_FACTOR
    min_lr: float = DEFAULT_MIN_LR
    augment: bool = True
    class_weights: np.ndarray | None = field(default=None, compare=False)
    pos_weight: tuple[float, ...] | None = None
    """multilabel: BCE positive weight per class (the backends' `ModelConfig.pos_weight`)."""
    print_freq: int = DEFAULT_PRINT_FREQ
    progress: bool = True


@dataclass
class EpochRecord:
    """One line of history.jsonl. `seconds` is the whole epoch (training, data, validation);
    `train_seconds` / `images_per_second` cover only the timed train steps."""

    epoch: int
    lr: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_metric: float | None
    seconds: float
    train_seconds: float
    images_per_second: float
    compile_seconds: float
    best: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """What `fit` learned about the run, for the manifest and the comparison table."""

    history: list[EpochRecord]
    best_epoch: int | None
    best_val_loss: float
    stopped_early: bool
    final_lr: float
    val_metric_name: str

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean([r.seconds for r in self.history])) if self.history else 0.0

    @property
    def images_per_second(self) -> float:
        """Steady-state training throughput over all epochs (first step excluded)."""
        images = sum(r.images_per_second * r.train_seconds for r in self.history)
        seconds = sum(r.train_seconds for r in self.history)
        return images / seconds if seconds > 0 else 0.0

    @property
    def compile_seconds(self) -> float:
        return float(sum(r.compile_seconds for r in self.history))


def effective_batch_size(requested: int, n_train: int) -> int:
    """Training drops the last partial batch (fixed shapes: one compiled program for jit
    frameworks, no tiny BatchNorm batches), so the batch can be at most the training set."""
    if n_train < 1:
        raise ValueError("the training split is empty")
    return min(requested, n_train)


def _batches(
    image_set: ImageSet, batch_size: int, preprocess: PreprocessSpec, *, train: bool,
    seed: int, epoch: int, augment: bool,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    return iterate_batches(
        image_set, batch_size, spec=preprocess, shuffle=train, seed=seed, epoch=epoch,
        augment=augment and train, drop_last=train, prefetch=PREFETCH_BATCHES,
    )


def predict_logits(
    backend: Backend, image_set: ImageSet, preprocess: PreprocessSpec, batch_size: int
) -> np.ndarray:
    """Float32 logits (N, C) in dataset order. The last batch is zero-padded to `batch_size`
    (and the padding dropped), so jit frameworks compile one eval program."""
    outputs = []
    for x, _ in _batches(image_set, batch_size, preprocess, train=False, seed=0, epoch=0,
                         augment=False):
        n = len(x)
        if n < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
        outputs.append(np.asarray(backend.eval_step(x), np.float32)[:n])
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def evaluate_split(
    backend: Backend, image_set: ImageSet, dataset: DatasetSpec, preprocess: PreprocessSpec,
    batch_size: int, class_weights: np.ndarray | None = None, *,
    pos_weight: Sequence[float] | None = None, thresholds: Sequence[float] | None = None,
) -> dict[str, Any]:
    """shared.metrics.evaluate on one split (multilabel: at `thresholds`, default 0.5) plus
    its (class- or positive-weighted) loss."""
    logits = predict_logits(backend, image_set, preprocess, batch_size)
    labels = model_labels(image_set.labels, dataset.task)
    metrics = evaluate(dataset.task, labels, probabilities(logits, dataset.task),
                       dataset.class_names, thresholds)
    weights = sample_weights(labels, class_weights if dataset.task == "multiclass" else None)
    metrics["loss"] = weighted_mean(
        per_sample_loss(logits, labels, dataset.task, pos_weight), weights)
    return metrics


def validation_thresholds(
    backend: Backend, val: ImageSet, dataset: DatasetSpec, preprocess: PreprocessSpec,
    batch_size: int,
) -> list[float]:
    """multilabel: each class's F1-maximising decision threshold on the validation split
    (`shared.metrics.choose_thresholds`), for the test metrics and the manifest."""
    logits = predict_logits(backend, val, preprocess, batch_size)
    probs = probabilities(logits, dataset.task)
    return [float(t) for t in choose_thresholds(model_labels(val.labels, dataset.task), probs)]


@dataclass
class EpochTotals:
    """Sums over one training epoch. `timed_*` leave out the run's first step (warm-up:
    compilation for jit frameworks, oneDNN primitive creation for torch), so images/s is
    steady-state throughput for every framework alike."""

    loss_sum: float = 0.0
    correct: float = 0.0
    images: int = 0
    timed_images: int = 0
    timed_seconds: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.images)

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.images)

    @property
    def images_per_second(self) -> float:
        return self.timed_images / self.timed_seconds if self.timed_seconds > 0 else 0.0


def _train_epoch(
    backend: Backend, train: ImageSet, dataset: DatasetSpec, preprocess: PreprocessSpec,
    config: FitConfig, batch_size: int, epoch: int, header: str,
) -> EpochTotals:
    """One pass over the training split (`epoch` 0-based, as the data order is seeded)."""
    progress = Progress(header, len(train) // batch_size, print_freq=config.print_freq,
                        enabled=config.progress)
    totals = EpochTotals()
    batches = _batches(train, batch_size, preprocess, train=True, seed=config.seed,
                       epoch=epoch, augment=config.augment)
    for step, (x, y) in enumerate(batches, start=1):
        labels = model_labels(y, dataset.task)
        weights = sample_weights(labels, config.class_weights)
        start = time.perf_counter()
        loss, logits = backend.train_step(x, labels, weights)
        seconds = time.perf_counter() - start
        if epoch > 0 or step > 1:
            totals.timed_images += len(x)
            totals.timed_seconds += seconds
        totals.loss_sum += loss * len(x)
        totals.correct += correct_count(logits, labels, dataset.task)
        totals.images += len(x)
        progress.update(step, totals.loss, totals.accuracy, totals.images_per_second)
    return totals


def fit(
    backend: Backend,
    train: ImageSet,
    val: ImageSet,
    *,
    dataset: DatasetSpec,
    preprocess: PreprocessSpec,
    config: FitConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FitResult:
    """Train `backend` (already built) for up to `config.epochs` epochs, early-stopping on the
    validation loss and restoring the best epoch's weights before returning."""
    batch_size = effective_batch_size(config.batch_size, len(train))
    if len(val) == 0:
        raise ValueError("the validation split is empty: early stopping needs one")
    stopper = EarlyStopping(config.patience)
    plateau = ReduceLROnPlateau(config.lr, factor=config.plateau_factor,
                                patience=config.plateau_patience, min_lr=config.min_lr)
    lr = config.lr
    backend.set_lr(lr)
    best_state = backend.get_state()
    history: list[EpochRecord] = []
    width = len(str(config.epochs))
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        compile_before = backend.compile_seconds
        header = f"{backend.name} epoch {epoch:>{width}}/{config.epochs}"
        totals = _train_epoch(backend, train, dataset, preprocess, config, batch_size,
                              epoch - 1, header)
        metrics = evaluate_split(backend, val, dataset, preprocess, batch_size,
                                 config.class_weights, pos_weight=config.pos_weight)
        val_loss = metrics["loss"]
        improved = stopper.update(val_loss, epoch)
        if improved:
            best_state = backend.get_state()
        record = EpochRecord(
            epoch=epoch, lr=lr, train_loss=totals.loss, train_accuracy=totals.accuracy,
            val_loss=val_loss, val_accuracy=metrics[ACCURACY_KEY[dataset.task]],
            val_metric=metrics.get(dataset.primary_metric),
            seconds=time.perf_counter() - epoch_start, train_seconds=totals.timed_seconds,
            images_per_second=totals.images_per_second,
            compile_seconds=backend.compile_seconds - compile_before, best=improved,
        )
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        _log_epoch(record, dataset.primary_metric, config.progress)
        if stopper.should_stop or epoch == config.epochs:
            break
        new_lr = plateau.step(val_loss)
        if new_lr != lr:
            if config.progress:
                sys.stderr.write(f"  plateau: learning rate {lr:g} -> {new_lr:g}\n")
            lr = new_lr
            backend.set_lr(lr)
    backend.set_state(best_state)
    return FitResult(history=history, best_epoch=stopper.best_epoch, best_val_loss=stopper.best,
                     stopped_early=stopper.should_stop, final_lr=lr,
                     val_metric_name=dataset.primary_metric)


def _log_epoch(record: EpochRecord, metric: str, enabled: bool) -> None:
    if not enabled:
        return
    value = "n/a" if record.val_metric is None else f"{record.val_metric:.4f}"
    compile_note = f" (+{record.compile_seconds:.1f}s compile)" if record.compile_seconds else ""
    sys.stderr.write(
        f"  epoch {record.epoch}: train loss {record.train_loss:.4f} acc "
        f"{record.train_accuracy:.3f} | val loss {record.val_loss:.4f} acc "
        f"{record.val_accuracy:.3f} {metric} {value} | {record.seconds:.1f}s "
        f"{record.images_per_second:.1f} img/s{compile_note}{' *best' if record.best else ''}\n"
    )
    sys.stderr.flush()
