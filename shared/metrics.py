"""Classification metrics in pure numpy (no scikit-learn at runtime).

Every trainer, the sklearn baseline and the bench report score models with these functions,
so a number in the report means the same thing whichever framework produced the model.
Each function matches scikit-learn's definition (checked by tests/shared/test_metrics.py);
where a metric is undefined for the data (e.g. ROC AUC of a class with no positives) the
function returns ``nan``, as scikit-learn >= 1.6 does, and :func:`evaluate` turns that into
``None`` so its result stays strict JSON.

Conventions: labels are integer class indices ``0..C-1``; ``probs`` is an ``(N, C)`` array of
scores (probabilities or logits: only the ranking matters for AUC, only the argmax for the
label metrics).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

TASKS = ("multiclass", "multilabel")

#: Scalar keys :func:`evaluate` returns for each task (DatasetSpec.metrics picks from these).
MULTICLASS_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "qwk",
    "macro_auc",
)
MULTILABEL_METRICS = (
    "macro_auc",
    "subset_accuracy",
    "hamming_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
)

#: Score threshold that turns multilabel scores into 0/1 predictions (probabilities assumed).
MULTILABEL_THRESHOLD = 0.5


# --------------------------------------------------------------------------- validation


def _as_labels(y: Any, name: str = "y_true") -> np.ndarray:
    """Return ``y`` as a 1-D int64 array of non-negative class indices, or raise ValueError.

    Integer-valued float arrays are accepted (labels read from CSV often arrive as floats).
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: metrics need at least one sample")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{name} holds negative class index {int(arr.min())}")
    return arr


def _as_label_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (y_true, y_pred) pair of 1-D label arrays of equal length."""
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} samples but y_pred has {p.size}")
    return t, p


def _as_scores(probs: Any, n: int) -> np.ndarray:
    """Return ``probs`` as a finite float64 (N, C) array with N == n, or raise ValueError."""
    arr = np.asarray(probs)
    if arr.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, C), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"probs must be numeric, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValueError(f"probs has {arr.shape[0]} rows but y_true has {n} samples")
    if arr.shape[1] < 1:
        raise ValueError("probs has no class columns")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("probs contains NaN or infinite values")
    return arr


def _as_multilabel(y: Any) -> np.ndarray:
    """Return a multilabel target as an (N, C) int64 array of 0/1, or raise ValueError."""
    arr = np.asarray(y)
    if arr.ndim != 2:
        raise ValueError(f"multilabel y_true must be 2-D (N, C), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("multilabel y_true is empty: metrics need at least one sample")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"multilabel y_true must be numeric 0/1, got dtype {arr.dtype}")
    if not np.all((arr == 0) | (arr == 1)):
        raise ValueError("multilabel y_true must hold only 0 and 1")
    return arr.astype(np.int64)


def _check_n_classes(n_classes: int, *arrays: np.ndarray) -> None:
    """Raise ValueError if n_classes is not positive or a label is out of range."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    for arr in arrays:
        if arr.max() >= n_classes:
            raise ValueError(f"class index {int(arr.max())} out of range for {n_classes} classes")


# --------------------------------------------------------------------------- label metrics


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples whose predicted label equals the true label."""
    t, p = _as_label_pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts; row = true class, column = predicted class (sklearn's layout)."""
    t, p = _as_label_pair(y_true, y_pred)
    _check_n_classes(n_classes, t, p)
    flat = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _present_labels(t: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Sorted labels seen in y_true or y_pred: sklearn's default label set."""
    return np.union1d(t, p)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix (zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    pred_pos = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = _safe_div(tp, pred_pos)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, pred_pos + support)  # == 2PR/(P+R), defined as 0 when tp == 0
    return precision, recall, f1, support


def balanced_accuracy(y_true: Any, y_pred: Any) -> float:
    """Mean recall over the classes present in y_true (sklearn's balanced_accuracy_score).

    Classes that appear only in y_pred have no recall and are left out, as in sklearn.
    """
    t, p = _as_label_pair(y_true, y_pred)
    n = int(max(t.max(), p.max())) + 1
    cm = confusion_matrix(t, p, n)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))


def macro_precision_recall_f1(
    y_true: Any, y_pred: Any, n_classes: int | None = None
) -> tuple[float, float, float]:
    """Unweighted means of per-class precision, recall and F1, with zero_division=0.

    With ``n_classes=None`` the average runs over the labels present in y_true or y_pred
    (sklearn's default ``labels=None``): a class absent from both has no defined score and
    would otherwise drag every macro average towards 0. With ``n_classes`` given it runs over
    all of ``0..n_classes-1`` (sklearn's ``labels=range(n_classes)``).
    """
    t, p = _as_label_pair(y_true, y_pred)
    n = int(max(t.max(), p.max())) + 1 if n_classes is None else n_classes
    precision, recall, f1, _ = _per_class_prf(confusion_matrix(t, p, n))
    labels = _present_labels(t, p) if n_classes is None else np.arange(n)
    return (
        float(precision[labels].mean()),
        float(recall[labels].mean()),
        float(f1[labels].mean()),
    )


def per_class_report(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> list[dict]:
    """One dict per class name: name, precision, recall, f1 (zero_division=0) and support."""
    names = list(class_names)
    t, p = _as_label_pair(y_true, y_pred)
    cm = confusion_matrix(t, p, len(names))
    return _report_rows(names, *_per_class_prf(cm))


def _report_rows(
    names: list[str],
    precision: np.ndarray,
    recall: np.ndarray,
    f1: np.ndarray,
    support: np.ndarray,
) -> list[dict]:
    """Zip per-class arrays into JSON-ready dicts."""
    return [
        {
            "name": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    ]


def quadratic_weighted_kappa(y_true: Any, y_pred: Any, n_classes: int | None = None) -> float:
    """Cohen's kappa with quadratic weights (i - j)^2: the Kaggle 2015 DR competition metric.

    Weights use the class *values* over ``0..n_classes-1`` (``n_classes`` defaults to the
    largest label seen + 1), like Kaggle's reference implementation and like sklearn's
    ``cohen_kappa_score(weights="quadratic", labels=range(n_classes))``. (sklearn's default
    ``labels=None`` weights by position among the labels *present*, which differs when a
    grade is missing.) Returns nan when chance disagreement is zero (e.g. a single class in
    both arrays), as sklearn does.
    """
    t, p = _as_label_pair(y_true, y_pred)
    n = int(max(t.max(), p.max())) + 1 if n_classes is None else n_classes
    observed = confusion_matrix(t, p, n).astype(np.float64)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    idx = np.arange(n, dtype=np.float64)
    weights = (idx[:, None] - idx[None, :]) ** 2
    denominator = float(np.sum(weights * expected))
    if denominator == 0.0:
        return float("nan")
    return 1.0 - float(np.sum(weights * observed)) / denominator


# --------------------------------------------------------------------------- ranking metrics


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x with ties given their average rank (scipy's rankdata 'average')."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # rank of the first member of each tie group
    return (first_rank + (counts - 1) / 2.0)[inverse.reshape(-1)]


def binary_roc_auc(y_true: Any, scores: Any) -> float:
    """ROC AUC of 0/1 targets from the Mann-Whitney rank statistic; nan if one class only.

    Tied scores count half, which equals sklearn's trapezoidal ROC AUC exactly.
    """
    y = np.asarray(y_true).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} samples but scores has {s.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = float(_average_ranks(s)[y].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _nanmean_or_nan(values: np.ndarray) -> float:
    """Mean of the non-nan values, nan if there are none (without numpy's warning)."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def ovr_roc_auc_per_class(y_true: Any, probs: Any) -> np.ndarray:
    """One-vs-rest ROC AUC of each class column; nan for a class without positives/negatives."""
    t = _as_labels(y_true)
    s = _as_scores(probs, t.size)
    _check_n_classes(s.shape[1], t)
    return np.array([binary_roc_auc(t == c, s[:, c]) for c in range(s.shape[1])])


def macro_ovr_roc_auc(y_true: Any, probs: Any) -> float:
    """Unweighted mean of one-vs-rest ROC AUCs over the classes that can be scored.

    A class absent from y_true (no positives) - or the only class present (no negatives) -
    has no ROC curve; it is **skipped**, not counted as 0 or 0.5. This differs from sklearn's
    ``roc_auc_score(multi_class="ovr", labels=...)``, which returns nan in that case, and
    matches averaging sklearn's binary AUCs over the scoreable classes. Scores need not sum
    to 1 (sklearn requires that; only per-column ranking matters here). Returns nan if no
    class can be scored.
    """
    return _nanmean_or_nan(ovr_roc_auc_per_class(y_true, probs))


def multilabel_auc_per_label(y_true_multi: Any, probs: Any) -> np.ndarray:
    """ROC AUC of each label column; nan where a column is all 0 or all 1."""
    t = _as_multilabel(y_true_multi)
    s = _as_scores(probs, t.shape[0])
    if s.shape[1] != t.shape[1]:
        raise ValueError(f"y_true has {t.shape[1]} label columns but probs has {s.shape[1]}")
    return np.array([binary_roc_auc(t[:, c], s[:, c]) for c in range(t.shape[1])])


def multilabel_auc(y_true_multi: Any, probs: Any) -> float:
    """Macro ROC AUC over labels (sklearn's ``roc_auc_score(Y, S, average="macro")``).

    Labels whose column is all 0 or all 1 are skipped (sklearn returns nan for them);
    returns nan if no label can be scored.
    """
    return _nanmean_or_nan(multilabel_auc_per_label(y_true_multi, probs))


# --------------------------------------------------------------------------- evaluate


def _json_float(x: float) -> float | None:
    """float(x), or None where the metric is undefined (nan), so the result is strict JSON."""
    x = float(x)
    return None if math.isnan(x) else x


def _check_class_names(class_names: Sequence[str], n_columns: int) -> list[str]:
    """Return class_names as a list, checking it matches the score columns."""
    names = [str(n) for n in class_names]
    if len(names) != n_columns:
        raise ValueError(f"{len(names)} class_names given but probs has {n_columns} columns")
    return names


def _evaluate_multiclass(y_true: Any, probs: Any, class_names: Sequence[str]) -> dict:
    """All multiclass metrics from integer labels (N,) and scores (N, C)."""
    t = _as_labels(y_true)
    s = _as_scores(probs, t.size)
    names = _check_class_names(class_names, s.shape[1])
    _check_n_classes(len(names), t)
    pred = s.argmax(axis=1)
    n = len(names)
    precision, recall, f1 = macro_precision_recall_f1(t, pred)
    aucs = ovr_roc_auc_per_class(t, s)
    return {
        "n": int(t.size),
        "accuracy": accuracy(t, pred),
        "balanced_accuracy": balanced_accuracy(t, pred),
        "macro_precision": precision,
        "macro_recall": recall,
        "macro_f1": f1,
        "qwk": _json_float(quadratic_weighted_kappa(t, pred, n)),
        "macro_auc": _json_float(_nanmean_or_nan(aucs)),
        "auc_per_class": {name: _json_float(a) for name, a in zip(names, aucs, strict=True)},
        "auc_skipped_classes": [name for name, a in zip(names, aucs, strict=True) if np.isnan(a)],
        "confusion_matrix": confusion_matrix(t, pred, n).tolist(),
        "per_class": per_class_report(t, pred, names),
    }


def _as_thresholds(thresholds: Any, n_columns: int) -> np.ndarray:
    """Per-label thresholds as a float64 (C,) array in [0, 1]; None means 0.5 everywhere."""
    if thresholds is None:
        return np.full(n_columns, MULTILABEL_THRESHOLD)
    arr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if arr.size != n_columns:
        raise ValueError(f"{arr.size} thresholds given but probs has {n_columns} columns")
    if not np.all((arr >= 0) & (arr <= 1)):
        raise ValueError("thresholds must lie in [0, 1]")
    return arr


def best_f1_threshold(y_true: Any, scores: Any) -> float:
    """The threshold in [0, 1] that maximises F1 of ``scores >= threshold`` on 0/1 targets.

    Candidates are the midpoints between consecutive distinct scores (and just above the top
    and below the bottom one): a midpoint generalises to unseen scores better than a score
    itself. Of equal F1s the highest threshold wins (fewer false positives). A label without
    positives has F1 0 at every threshold; it keeps :data:`MULTILABEL_THRESHOLD`.
    """
    y = np.asarray(y_true).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} samples but scores has {s.size}")
    n_pos = int(y.sum())
    if n_pos == 0:
        return MULTILABEL_THRESHOLD
    order = np.argsort(-s, kind="stable")
    ranked, hits = s[order], np.cumsum(y[order])
    last = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))  # end of each tie group
    distinct = ranked[last]  # descending
    f1 = 2 * hits[last] / (last + 1 + n_pos)  # predicted positives at threshold v: last + 1
    best = int(np.argmax(f1))  # first maximum = highest threshold
    below = distinct[best + 1] if best + 1 < distinct.size else max(distinct[best] - 1e-6, 0.0)
    return float(np.clip((distinct[best] + below) / 2.0, 0.0, 1.0))


def choose_thresholds(y_true_multi: Any, probs: Any) -> np.ndarray:
    """Per-label F1-maximising thresholds (:func:`best_f1_threshold`), chosen on a
    validation split and then applied unchanged to the test split and in serving."""
    t = _as_multilabel(y_true_multi)
    s = _as_scores(probs, t.shape[0])
    if s.shape[1] != t.shape[1]:
        raise ValueError(f"y_true has {t.shape[1]} label columns but probs has {s.shape[1]}")
    return np.array([best_f1_threshold(t[:, c], s[:, c]) for c in range(t.shape[1])])


def _evaluate_multilabel(y_true: Any, probs: Any, class_names: Sequence[str],
                         thresholds: Any = None) -> dict:
    """All multilabel metrics from 0/1 targets (N, C), scores (N, C) and per-label
    thresholds (C,) (default 0.5 each)."""
    t = _as_multilabel(y_true)
    s = _as_scores(probs, t.shape[0])
    names = _check_class_names(class_names, s.shape[1])
    cut = _as_thresholds(thresholds, s.shape[1])
    aucs = multilabel_auc_per_label(t, s)
    pred = (s >= cut).astype(np.int64)
    tp = (pred & t).sum(axis=0)
    pred_pos, support = pred.sum(axis=0), t.sum(axis=0)
    precision, recall = _safe_div(tp, pred_pos), _safe_div(tp, support)
    f1 = _safe_div(2 * tp, pred_pos + support)
    rows = _report_rows(names, precision, recall, f1, support)
    for row, threshold, auc in zip(rows, cut, aucs, strict=True):
        row["threshold"], row["auc"] = float(threshold), _json_float(auc)
    return {
        "n": int(t.shape[0]),
        "thresholds": {name: float(c) for name, c in zip(names, cut, strict=True)},
        "macro_auc": _json_float(_nanmean_or_nan(aucs)),
        "auc_per_class": {name: _json_float(a) for name, a in zip(names, aucs, strict=True)},
        "auc_skipped_classes": [name for name, a in zip(names, aucs, strict=True) if np.isnan(a)],
        "subset_accuracy": float(np.mean(np.all(pred == t, axis=1))),
        "hamming_accuracy": float(np.mean(pred == t)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "per_class": rows,
    }


def evaluate(task: str, y_true: Any, probs: Any, class_names: Sequence[str],
             thresholds: Any = None) -> dict[str, Any]:
    """Every metric that applies to ``task``, as plain JSON-serialisable Python types.

    multiclass: y_true (N,) class indices, probs (N, C); predictions are the argmax. Keys:
      n, the scalars in MULTICLASS_METRICS, auc_per_class {name: auc|None},
      auc_skipped_classes, confusion_matrix (C x C, rows = true), per_class (list of dicts).
      ``qwk`` treats class indices as ordinal grades: meaningful for DR, not for blood cells.
    multilabel: y_true (N, C) of 0/1, probs (N, C) probabilities, a label predicted where
      its probability >= its threshold (``thresholds`` (C,), e.g. from
      :func:`choose_thresholds` on validation; default 0.5 each). Keys: n, thresholds
      {name: t}, the scalars in MULTILABEL_METRICS (``subset_accuracy`` = exact match),
      auc_per_class, auc_skipped_classes, per_class (with each label's threshold and AUC).
    Undefined values (an AUC without positives, kappa of a constant) are None, never NaN.
    """
    if task == "multiclass":
        return _evaluate_multiclass(y_true, probs, class_names)
    if task == "multilabel":
        return _evaluate_multilabel(y_true, probs, class_names, thresholds)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
