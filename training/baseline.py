"""Classical baseline: a scikit-learn RandomForest on flattened, downscaled pixels (as in the
Intel-images framework comparison that inspired this project), scored on the same test split
by the same `shared.metrics`, so the deep models have a floor to beat.

Runs inside `python -m training --framework all` (one row of the comparison table) or alone:

    python -m training.baseline --dataset bloodmnist --data data/bloodmnist_64.npz
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.datasets import (
    DATASET_NAMES,
    DatasetError,
    DatasetSpec,
    ImageSet,
    dataset_spec_for,
    load_dataset,
)
from shared.imaging import to_square_uint8
from shared.metrics import choose_thresholds, evaluate
from shared.processes import usable_cpu_count

from .report import BASELINE_FRAMEWORK, BYTES_PER_MB, markdown_table, metric_cells

BASELINE_IMAGE_SIZE = 32
"""Side of the downscaled image: 32 x 32 x 3 = 3,072 features per example."""
DEFAULT_TREES = 200
UINT8_MAX = 255.0


def flatten_pixels(image_set: ImageSet, size: int) -> np.ndarray:
    """(N, size*size*3) float32 in [0, 1]: each image resized with the shared resize."""
    from PIL import Image

    small = [to_square_uint8(Image.fromarray(image), size) for image in image_set.images]
    return np.stack(small).reshape(len(image_set), -1).astype(np.float32) / UINT8_MAX


def _multilabel_probabilities(model: Any, features: np.ndarray) -> np.ndarray:
    """(N, C) positive-label probabilities: a multilabel forest gives one (N, k) array per
    label, k = 1 when a label was constant in training (its probability is then 0 or 1)."""
    columns = []
    for classes, probs in zip(model.classes_, model.predict_proba(features), strict=True):
        positive = np.flatnonzero(classes == 1)
        columns.append(probs[:, positive[0]] if positive.size else np.zeros(len(features)))
    return np.stack(columns, axis=1).astype(np.float32)


def _class_probabilities(model: Any, features: np.ndarray, n_classes: int) -> np.ndarray:
    """Scatter predict_proba columns into all `n_classes` (classes absent from training stay
    at probability 0)."""
    probs = np.zeros((len(features), n_classes), np.float32)
    probs[:, model.classes_.astype(np.int64)] = model.predict_proba(features)
    return probs


def train_baseline(
    sets: dict[str, ImageSet], dataset: DatasetSpec, *, size: int = BASELINE_IMAGE_SIZE,
    trees: int = DEFAULT_TREES, seed: int = 0, threads: int | None = None,
    class_weights: str = "none",
) -> dict[str, Any]:
    """Fit on the training split, score on the test split; returns a comparison-table row
    (parameter_count = total tree nodes, size = the pickled forest). Multilabel decision
    thresholds are chosen on the validation split, as for the deep models."""
    from sklearn.ensemble import RandomForestClassifier

    train_x = flatten_pixels(sets["train"], size)
    test_x = flatten_pixels(sets["test"], size)
    model = RandomForestClassifier(
        n_estimators=trees, random_state=seed, n_jobs=threads or usable_cpu_count(),
        class_weight="balanced" if class_weights == "balanced" else None,
    )
    start = time.perf_counter()
    model.fit(train_x, sets["train"].labels)
    fit_seconds = time.perf_counter() - start
    thresholds = None
    if dataset.task == "multiclass":
        probs = _class_probabilities(model, test_x, dataset.n_classes)
    else:
        probs = _multilabel_probabilities(model, test_x)
        if len(sets.get("val", ())):
            val_probs = _multilabel_probabilities(model, flatten_pixels(sets["val"], size))
            thresholds = choose_thresholds(sets["val"].labels, val_probs)
    metrics = evaluate(dataset.task, sets["test"].labels, probs, dataset.class_names,
                       thresholds)
    return {
        "framework": BASELINE_FRAMEWORK,
        **metric_cells(metrics, dataset),
        "seconds_per_epoch": fit_seconds,
        "images_per_second": len(train_x) / fit_seconds if fit_seconds > 0 else None,
        "compile_seconds": None,
        "parameter_count": int(sum(tree.tree_.node_count for tree in model.estimators_)),
        "size_mb": len(pickle.dumps(model)) / BYTES_PER_MB,
        "epochs": 1,
        "best_epoch": None,
        "precision": "fp64",
        "features": f"{size}x{size}x3 pixels",
        "trees": trees,
        "test_metrics": metrics,
    }


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.baseline",
        description="RandomForest on flattened downscaled pixels: the classical baseline.",
    )
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES,
                        help="dataset name (required)")
    parser.add_argument("--data", required=True, help="dataset path (required)")
    parser.add_argument("--image-size", type=int, default=224,
                        help="size the dataset is loaded at before downscaling (default: 224)")
    parser.add_argument("--size", type=int, default=BASELINE_IMAGE_SIZE,
                        help=f"downscaled side in pixels (default: {BASELINE_IMAGE_SIZE})")
    parser.add_argument("--trees", type=int, default=DEFAULT_TREES,
                        help=f"number of trees (default: {DEFAULT_TREES})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="parallel jobs (default: the usable CPUs)")
    parser.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                        help="class weighting (default: none)")
    parser.add_argument("--json", default=None,
                        help="also write the result row as JSON to this file (default: none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        dataset = dataset_spec_for(args.dataset, args.data)
        sets = load_dataset(args.dataset, args.data, args.image_size)
    except DatasetError as error:
        print(f"python -m training.baseline: error: {error}", file=sys.stderr)
        return 2
    row = train_baseline(sets, dataset, size=args.size, trees=args.trees, seed=args.seed,
                         threads=args.threads, class_weights=args.class_weights)
    print(markdown_table([row], dataset))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as stream:
            json.dump(row, stream, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
