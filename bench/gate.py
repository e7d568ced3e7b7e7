"""The accuracy gate: may a fast variant stand in for its fp32 parent? Pure functions.

Every runtime of a run classifies the same test images through its running service
(:mod:`bench.served_accuracy`); this module scores those answers and judges them:

- **score**: top-1 accuracy, the dataset's main metric (``DatasetSpec.primary_metric``: QWK
  for DR, accuracy for BloodMNIST) and macro AUC where the dataset lists it, all from
  :func:`shared.metrics.evaluate`, the function training scores models with;
- **agreement**: the share of test images on which a variant predicts what its fp32 parent
  (the row its ``variant_of`` names, served in the same run) predicts;
- **verdict**: MLPerf's rule for ResNet-50: a variant keeps at least 99 % of its parent's
  top-1 (for a multilabel dataset, which has no top-1, of its main metric). ``pass`` or
  ``fail``; a base row is the ``reference``; a variant whose parent was not served (or whose
  test images did not all get an answer) is ``unjudged``. Only ``reference`` and ``pass``
  rows may be named a winner (:func:`may_win`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.metrics import MULTILABEL_THRESHOLD, evaluate

GATE_RATIO = 0.99
"""A variant must keep this fraction of its parent's gate metric (MLPerf: 99 % of fp32 top-1)."""
VERDICTS = ("reference", "pass", "fail", "unjudged")
WINNING_VERDICTS = ("reference", "pass")


def gate_metric(task: str, primary_metric: str) -> str:
    """The metric the gate compares: top-1 accuracy, or the main metric where no top-1
    exists (multilabel)."""
    return "accuracy" if task == "multiclass" else primary_metric


def predictions(task: str, probabilities: np.ndarray) -> np.ndarray:
    """What a model answers: the argmax class (multiclass) or the labels over the
    threshold (multilabel)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if task == "multiclass":
        return probs.argmax(axis=1)
    return probs >= MULTILABEL_THRESHOLD


def agreement(task: str, probabilities: np.ndarray, parent_probabilities: np.ndarray) -> float:
    """Share of images on which both models answer the same (every label, multilabel)."""
    ours, theirs = predictions(task, probabilities), predictions(task, parent_probabilities)
    if ours.shape != theirs.shape:
        raise ValueError(f"answers of different shapes: {ours.shape} vs {theirs.shape}")
    same = ours == theirs if ours.ndim == 1 else np.all(ours == theirs, axis=1)
    return float(np.mean(same))


def score(task: str, labels: np.ndarray, probabilities: np.ndarray,
          class_names: Sequence[str], primary_metric: str) -> dict[str, Any]:
    """Top-1 (None for multilabel), the main metric and macro AUC of one model's answers."""
    metrics = evaluate(task, labels, probabilities, class_names)
    return {"images": len(labels),
            "top1": metrics.get("accuracy") if task == "multiclass" else None,
            "primary_metric": primary_metric, "primary": metrics.get(primary_metric),
            "macro_auc": metrics.get("macro_auc")}


def judge(name: str, scores: Mapping[str, Any], parent: str,
          parent_scores: Mapping[str, Any] | None, metric: str,
          agreement_with_parent: float | None, ratio: float = GATE_RATIO) -> dict[str, Any]:
    """The verdict of one runtime (see the module doc); ``metric`` is :func:`gate_metric`'s
    key in ``scores`` terms ('accuracy' reads ``top1``, anything else ``primary``)."""
    key = "top1" if metric == "accuracy" else "primary"
    value = scores.get(key)
    verdict: dict[str, Any] = {"parent": parent or None, "metric": metric, "value": value,
                               "parent_value": None, "ratio_to_parent": None,
                               "agreement": agreement_with_parent, "threshold": ratio}
    if scores.get("failed_images"):
        return {**verdict, "verdict": "unjudged",
                "reason": f"{scores['failed_images']} of {scores.get('sent_images')} test "
                          f"images got no answer"}
    if not parent:
        return {**verdict, "verdict": "reference", "reason": f"{name} is an fp32 base row"}
    if parent_scores is None or parent_scores.get(key) is None:
        return {**verdict, "verdict": "unjudged",
                "reason": f"its fp32 parent {parent} was not evaluated in this run"}
    parent_value = parent_scores[key]
    verdict.update(parent_value=parent_value)
    if value is None:
        return {**verdict, "verdict": "unjudged", "reason": f"no {metric} could be computed"}
    verdict["ratio_to_parent"] = value / parent_value if parent_value else None
    if value >= ratio * parent_value:
        return {**verdict, "verdict": "pass",
                "reason": f"{metric} {value:.4f} >= {ratio:.0%} of {parent}'s {parent_value:.4f}"}
    return {**verdict, "verdict": "fail",
            "reason": f"{metric} {value:.4f} < {ratio:.0%} of {parent}'s {parent_value:.4f}"}


def judge_all(scores: Mapping[str, Mapping[str, Any]], parents: Mapping[str, str],
              probabilities: Mapping[str, np.ndarray], task: str, primary_metric: str,
              ratio: float = GATE_RATIO) -> dict[str, dict[str, Any]]:
    """Verdicts of every scored runtime: ``parents`` maps a runtime to its ``variant_of``
    ('' for a base row), ``probabilities`` holds each one's answers on the same images."""
    metric = gate_metric(task, primary_metric)
    verdicts = {}
    for name, own in scores.items():
        parent = parents.get(name, "")
        parent_scores = scores.get(parent) if parent else None
        agree = None
        if parent and name in probabilities and parent in probabilities and not (
                own.get("failed_images") or (parent_scores or {}).get("failed_images")):
            agree = agreement(task, probabilities[name], probabilities[parent])
        verdicts[name] = judge(name, own, parent, parent_scores, metric, agree, ratio)
    return verdicts


def may_win(verdict: Mapping[str, Any] | None) -> bool:
    """Whether a runtime may be ranked as a winner: a base row, or a variant that passed."""
    return bool(verdict) and verdict.get("verdict") in WINNING_VERDICTS
