"""How far torch, TensorFlow and JAX training drift apart from identical weights on identical
batches: the three backends are trained in lock-step in one process, and after every epoch
the script prints, per framework, validation loss and test accuracy, and per pair the relative
weight distance and the share of test images given the same class.

    python -m training divergence --dataset dr --data data/dr-synth --image-size 128 \
        --stage-sizes tiny --epochs 6 --lr 1e-3 [--threads 1] [--out reports/]

Used to tell a porting bug from round-off growing through a chaotic optimisation. The control
(`--control`) is a second torch model whose initial weights differ from the first's by one
float32 rounding step (relative 2**-24): when torch drifts from torch' as fast as from
TensorFlow and JAX, the frameworks differ by round-off only, not by a bug. The
learning rate is held constant (no plateau schedule, no early stopping), so that every
difference comes from the frameworks' arithmetic, never from a schedule's discrete decision.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.datasets import class_weights, dataset_spec_for, iterate_batches, load_dataset
from shared.imaging import PreprocessSpec
from shared.metrics import evaluate
from shared.models import avoid_llvm_clash, parse_stage_sizes

from .backends import ModelConfig, get_backend
from .loop import (
    evaluate_split,
    model_labels,
    predict_logits,
    probabilities,
    sample_weights,
)

FRAMEWORKS = ("torch", "tensorflow", "jax")
CONTROL = "torch'"
ULP = 2.0**-24
WEIGHT_SUFFIXES = ("weight", "bias")
"""State-dict keys compared for weight distance (BN running statistics are reported apart)."""


def relative_distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray], suffixes: tuple[str, ...]
                      ) -> float:
    """||a - b|| / ||b|| over the keys ending in `suffixes`."""
    keys = [k for k in b if k.endswith(suffixes)]
    diff = sum(float(np.sum((a[k].astype(np.float64) - b[k]) ** 2)) for k in keys)
    norm = sum(float(np.sum(b[k].astype(np.float64) ** 2)) for k in keys)
    return float(np.sqrt(diff / norm))


def nudged(state: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """`state` with every float weight moved by one rounding step (x (1 +- 2**-24))."""
    rng = np.random.default_rng(seed)
    return {key: (value * (1 + ULP * rng.choice([-1.0, 1.0], value.shape))).astype(value.dtype)
            if key.endswith(WEIGHT_SUFFIXES) else value for key, value in state.items()}


def build_backends(args: argparse.Namespace, num_classes: int, task: str) -> dict[str, Any]:
    """The three frameworks from one torch init (and the nudged torch control)."""
    from .backends.torch import initial_state

    stages = parse_stage_sizes(args.stage_sizes)
    init = initial_state(num_classes, stages, args.seed)
    config = ModelConfig(num_classes=num_classes, image_size=args.image_size,
                         stage_sizes=stages, task=task, threads=args.threads, seed=args.seed)
    trainees = [(name, name, init) for name in FRAMEWORKS]
    if args.control:
        trainees.insert(1, (CONTROL, "torch", nudged(init, args.seed)))
    backends = {}
    for name, framework, weights in trainees:
        backend = get_backend(framework)(config)
        backend.build(weights, args.lr)
        backends[name] = backend
    return backends


def epoch_report(backends: dict[str, Any], sets: dict, spec: Any, preprocess: PreprocessSpec,
                 batch_size: int, weights: np.ndarray | None, epoch: int,
                 train_losses: dict[str, list[float]]) -> dict[str, Any]:
    """Per framework: mean train loss, validation loss/accuracy, test accuracy and metric;
    per pair: weight and running-variance distance, share of test images given one class."""
    states = {name: backend.get_state() for name, backend in backends.items()}
    test_labels = model_labels(sets["test"].labels, spec.task)
    row: dict[str, Any] = {"epoch": epoch, "frameworks": {}, "pairs": {}}
    predictions = {}
    for name, backend in backends.items():
        val = evaluate_split(backend, sets["val"], spec, preprocess, batch_size, weights)
        logits = predict_logits(backend, sets["test"], preprocess, batch_size)
        test = evaluate(spec.task, test_labels, probabilities(logits, spec.task),
                        spec.class_names)
        predictions[name] = logits.argmax(axis=1)
        row["frameworks"][name] = {
            "train_loss": float(np.mean(train_losses[name])), "val_loss": val["loss"],
            "val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"],
            "test_metric": test.get(spec.primary_metric),
        }
    for a, b in itertools.combinations(backends, 2):
        row["pairs"][f"{a}-{b}"] = {
            "weights": relative_distance(states[a], states[b], WEIGHT_SUFFIXES),
            "running_var": relative_distance(states[a], states[b], ("running_var",)),
            "same_test_class": float(np.mean(predictions[a] == predictions[b])),
        }
    return row


def print_row(row: dict[str, Any], metric: str) -> None:
    print(f"epoch {row['epoch']}")
    for name, r in row["frameworks"].items():
        print(f"  {name:<10} train loss {r['train_loss']:.4f}  val loss {r['val_loss']:.4f}  "
              f"val acc {r['val_accuracy']:.3f}  test acc {r['test_accuracy']:.3f}  "
              f"{metric} {r['test_metric']:.3f}")
    for pair, r in row["pairs"].items():
        print(f"  {pair:<17} |dW|/|W| {r['weights']:.2e}  running var {r['running_var']:.2e}  "
              f"same test class {r['same_test_class']:.3f}")
    print(flush=True)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training divergence",
                                description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, choices=("dr", "bloodmnist"))
    p.add_argument("--data", type=Path, required=True, help="dataset path")
    p.add_argument("--image-size", type=int, default=128, help="(default: 128)")
    p.add_argument("--stage-sizes", default="tiny", help="(default: tiny)")
    p.add_argument("--epochs", type=int, default=6, help="(default: 6)")
    p.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="constant Adam LR (default: 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="(default: 0)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--control", action="store_true",
                   help="also train torch from a one-rounding-step nudged init")
    p.add_argument("--out", type=Path, help="write training_divergence.json here")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    avoid_llvm_clash()
    spec = dataset_spec_for(args.dataset, args.data)
    sets = load_dataset(args.dataset, args.data, args.image_size)
    preprocess = PreprocessSpec(args.image_size)
    weights = (class_weights(sets["train"].labels, spec.n_classes)
               if args.class_weights == "balanced" else None)
    backends = build_backends(args, spec.n_classes, spec.task)
    rows = [epoch_report(backends, sets, spec, preprocess, args.batch_size, weights, 0,
                         {name: [float("nan")] for name in backends})]
    print_row(rows[-1], spec.primary_metric)
    for epoch in range(args.epochs):
        losses: dict[str, list[float]] = {name: [] for name in backends}
        for x, y in iterate_batches(sets["train"], args.batch_size, spec=preprocess,
                                    shuffle=True, seed=args.seed, epoch=epoch,
                                    augment=args.augment, drop_last=True):
            labels = model_labels(y, spec.task)
            w = sample_weights(labels, weights)
            for name, backend in backends.items():
                losses[name].append(backend.train_step(x, labels, w)[0])
        rows.append(epoch_report(backends, sets, spec, preprocess, args.batch_size, weights,
                                 epoch + 1, losses))
        print_row(rows[-1], spec.primary_metric)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "training_divergence.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
