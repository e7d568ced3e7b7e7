"""shared.metrics against scikit-learn on seeded random data, edge cases and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from shared import metrics as m

SEEDS = [0, 1, 2, 3, 4]
ABS = 1e-12


def _random_case(seed: int, n: int = 200, c: int = 5, imbalance: bool = False, ties: bool = False):
    """Labels, scores (rows sum to 1) and argmax predictions for a seeded random problem."""
    rng = np.random.default_rng(seed)
    p = np.geomspace(1, 30, c)[::-1] if imbalance else np.ones(c)
    y = rng.choice(c, size=n, p=p / p.sum())
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    if ties:  # coarse scores: many exact ties within each column
        logits = np.round(logits)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs, probs.argmax(axis=1)


def _sk(fn, *args, **kwargs):
    """Call a sklearn metric with its undefined-metric warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- label metrics


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("imbalance", [False, True])
def test_label_metrics_match_sklearn(seed: int, imbalance: bool) -> None:
    y, _, pred = _random_case(seed, imbalance=imbalance)
    assert m.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred), abs=ABS)
    assert m.balanced_accuracy(y, pred) == pytest.approx(
        _sk(skm.balanced_accuracy_score, y, pred), abs=ABS
    )
    expected = _sk(skm.precision_recall_fscore_support, y, pred, average="macro", zero_division=0)[
        :3
    ]
    assert m.macro_precision_recall_f1(y, pred) == pytest.approx(expected, abs=ABS)
    assert m.quadratic_weighted_kappa(y, pred, 5) == pytest.approx(
        skm.cohen_kappa_score(y, pred, weights="quadratic", labels=range(5)), abs=ABS
    )
    np.testing.assert_array_equal(
        m.confusion_matrix(y, pred, 5), skm.confusion_matrix(y, pred, labels=range(5))
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_missing_classes_match_sklearn(seed: int) -> None:
    """Class 1 never occurs in y_true and class 3 is never predicted; class 4 occurs nowhere."""
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 2, 3], size=60)
    pred = rng.choice([0, 1, 2], size=60)
    assert m.balanced_accuracy(y, pred) == pytest.approx(
        _sk(skm.balanced_accuracy_score, y, pred), abs=ABS
    )
    default = _sk(skm.precision_recall_fscore_support, y, pred, average="macro", zero_division=0)
    assert m.macro_precision_recall_f1(y, pred) == pytest.approx(default[:3], abs=ABS)
    all_five = _sk(
        skm.precision_recall_fscore_support,
        y,
        pred,
        labels=range(5),
        average="macro",
        zero_division=0,
    )
    assert m.macro_precision_recall_f1(y, pred, n_classes=5) == pytest.approx(all_five[:3], abs=ABS)
    assert m.quadratic_weighted_kappa(y, pred, 5) == pytest.approx(
        skm.cohen_kappa_score(y, pred, weights="quadratic", labels=range(5)), abs=ABS
    )


def test_qwk_uses_grade_values_not_positions() -> None:
    """Grades 2 and 3 missing: Kaggle's QWK weights by value, so sklearn needs labels=range."""
    y, pred = [0, 1, 4, 1, 0, 4], [0, 4, 4, 1, 1, 4]
    by_value = skm.cohen_kappa_score(y, pred, weights="quadratic", labels=range(5))
    assert m.quadratic_weighted_kappa(y, pred) == pytest.approx(by_value, abs=ABS)
    assert m.quadratic_weighted_kappa(y, pred, 5) == pytest.approx(by_value, abs=ABS)
    assert by_value != pytest.approx(skm.cohen_kappa_score(y, pred, weights="quadratic"))


def test_qwk_kaggle_reference_values() -> None:
    """Hand-checked values: perfect agreement 1, exact reversal -1, constant input undefined."""
    assert m.quadratic_weighted_kappa([0, 1, 2, 3, 4], [0, 1, 2, 3, 4]) == 1.0
    assert m.quadratic_weighted_kappa([0, 4], [4, 0]) == pytest.approx(-1.0)
    assert np.isnan(m.quadratic_weighted_kappa([2, 2, 2], [2, 2, 2], 5))


@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_report_matches_sklearn(seed: int) -> None:
    y, _, pred = _random_case(seed, n=50, c=4, imbalance=True)
    names = ["a", "b", "c", "d"]
    rows = m.per_class_report(y, pred, names)
    p, r, f, s = _sk(skm.precision_recall_fscore_support, y, pred, labels=range(4), zero_division=0)
    assert [row["name"] for row in rows] == names
    np.testing.assert_allclose([row["precision"] for row in rows], p, atol=ABS)
    np.testing.assert_allclose([row["recall"] for row in rows], r, atol=ABS)
    np.testing.assert_allclose([row["f1"] for row in rows], f, atol=ABS)
    assert [row["support"] for row in rows] == s.tolist()


def test_perfect_and_worst_label_predictions() -> None:
    y = np.array([0, 1, 2, 3, 4] * 4)
    assert m.accuracy(y, y) == 1.0
    assert m.balanced_accuracy(y, y) == 1.0
    assert m.macro_precision_recall_f1(y, y) == (1.0, 1.0, 1.0)
    assert m.quadratic_weighted_kappa(y, y) == 1.0
    worst = 4 - y
    worst[y == 2] = 0  # the middle grade cannot be reversed; make it wrong too
    assert m.accuracy(y, worst) == 0.0
    assert m.macro_precision_recall_f1(y, worst) == (0.0, 0.0, 0.0)
    assert m.quadratic_weighted_kappa(y, worst) == pytest.approx(
        skm.cohen_kappa_score(y, worst, weights="quadratic"), abs=ABS
    )
    assert m.quadratic_weighted_kappa(y, worst) < -0.5


# --------------------------------------------------------------------------- AUC


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("imbalance", [False, True])
def test_macro_ovr_auc_matches_sklearn(seed: int, ties: bool, imbalance: bool) -> None:
    y, probs, _ = _random_case(seed, ties=ties, imbalance=imbalance)
    if len(np.unique(y)) < 5:
        pytest.skip("seed drew a missing class; covered by the missing-class test")
    expected = skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert m.macro_ovr_roc_auc(y, probs) == pytest.approx(expected, abs=ABS)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_auc_with_heavy_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=300)
    scores = rng.integers(0, 4, size=300) + 0.5 * y * rng.integers(0, 2, size=300)
    assert m.binary_roc_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores), abs=ABS)


@pytest.mark.parametrize("seed", SEEDS)
def test_macro_auc_skips_classes_missing_from_y_true(seed: int) -> None:
    _, probs, _ = _random_case(seed, n=80, c=5)
    y = np.random.default_rng(seed).choice([0, 1, 3], size=80)
    expected = np.mean([skm.roc_auc_score(y == c, probs[:, c]) for c in (0, 1, 3)])
    assert m.macro_ovr_roc_auc(y, probs) == pytest.approx(expected, abs=ABS)
    per_class = m.ovr_roc_auc_per_class(y, probs)
    assert np.isnan(per_class[[2, 4]]).all() and not np.isnan(per_class[[0, 1, 3]]).any()


def test_auc_perfect_worst_constant_and_single_class() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    onehot = np.eye(3)[y]
    assert m.macro_ovr_roc_auc(y, onehot) == 1.0
    assert m.macro_ovr_roc_auc(y, 1.0 - onehot) == 0.0
    assert m.macro_ovr_roc_auc(y, np.full((6, 3), 1 / 3)) == 0.5
    assert np.isnan(m.macro_ovr_roc_auc([1, 1, 1], np.eye(3)[[0, 1, 2]]))


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_auc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random((120, 4)) < [0.5, 0.2, 0.05, 0.7]).astype(int)
    scores = np.round(rng.random((120, 4)) + 0.6 * y, 1)  # rounded: ties
    if (y.sum(axis=0) == 0).any():
        pytest.skip("seed drew an empty label column")
    expected = skm.roc_auc_score(y, scores, average="macro")
    assert m.multilabel_auc(y, scores) == pytest.approx(expected, abs=ABS)


def test_multilabel_auc_skips_constant_columns() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random((50, 3)) < 0.5).astype(int)
    y[:, 1] = 0
    y[:, 2] = 1
    scores = rng.random((50, 3))
    assert m.multilabel_auc(y, scores) == pytest.approx(
        skm.roc_auc_score(y[:, 0], scores[:, 0]), abs=ABS
    )
    assert np.isnan(m.multilabel_auc(y[:, 1:], scores[:, 1:]))


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_evaluate_multiclass(seed: int) -> None:
    y, probs, pred = _random_case(seed, n=100, c=5, imbalance=True)
    y[y == 4] = 3  # class "e" absent from y_true
    names = ["a", "b", "c", "d", "e"]
    out = m.evaluate("multiclass", y, probs, names)
    json.loads(json.dumps(out, allow_nan=False))  # strict JSON
    assert set(m.MULTICLASS_METRICS) <= out.keys()
    assert out["n"] == 100
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=ABS)
    assert out["macro_f1"] == pytest.approx(
        _sk(skm.f1_score, y, pred, average="macro", zero_division=0), abs=ABS
    )
    assert out["qwk"] == pytest.approx(
        skm.cohen_kappa_score(y, pred, weights="quadratic", labels=range(5)), abs=ABS
    )
    assert out["auc_skipped_classes"] == ["e"] and out["auc_per_class"]["e"] is None
    assert out["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(5)).tolist()
    assert [row["name"] for row in out["per_class"]] == names
    assert type(out["accuracy"]) is float and type(out["per_class"][0]["support"]) is int


def test_evaluate_multiclass_undefined_values_are_none() -> None:
    out = m.evaluate("multiclass", [1, 1], np.array([[0.2, 0.8], [0.3, 0.7]]), ["x", "y"])
    assert out["qwk"] is None and out["macro_auc"] is None
    assert out["accuracy"] == 1.0
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_evaluate_multilabel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random((90, 3)) < [0.5, 0.3, 0.6]).astype(int)
    probs = np.clip(rng.random((90, 3)) * 0.7 + 0.4 * y, 0, 1)
    out = m.evaluate("multilabel", y, probs, ["p", "q", "r"])
    json.loads(json.dumps(out, allow_nan=False))
    assert set(m.MULTILABEL_METRICS) <= out.keys()
    pred = (probs >= 0.5).astype(int)
    assert out["macro_auc"] == pytest.approx(skm.roc_auc_score(y, probs), abs=ABS)
    assert out["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=ABS)
    assert out["hamming_accuracy"] == pytest.approx(1 - skm.hamming_loss(y, pred), abs=ABS)
    expected = _sk(skm.precision_recall_fscore_support, y, pred, average="macro", zero_division=0)
    assert (out["macro_precision"], out["macro_recall"], out["macro_f1"]) == pytest.approx(
        expected[:3], abs=ABS
    )
    assert [row["support"] for row in out["per_class"]] == y.sum(axis=0).tolist()


def _multilabel_case(seed: int, n: int = 120, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 4)) < [0.5, 0.2, 0.05, 0.7]).astype(int)
    probs = np.clip(rng.random((n, 4)) * 0.7 + 0.35 * y, 0, 1)
    return y, (np.round(probs, 1) if ties else probs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_chosen_thresholds_maximise_sklearn_f1(seed: int, ties: bool) -> None:
    """No threshold does better than the chosen one by scikit-learn's own F1."""
    y, probs = _multilabel_case(seed, ties=ties)
    chosen = m.choose_thresholds(y, probs)
    assert chosen.shape == (4,) and np.all((chosen >= 0) & (chosen <= 1))
    for c in range(4):
        f1 = _sk(skm.f1_score, y[:, c], probs[:, c] >= chosen[c], zero_division=0)
        candidates = np.unique(probs[:, c])
        best = max(_sk(skm.f1_score, y[:, c], probs[:, c] >= v, zero_division=0)
                   for v in candidates)
        assert f1 == pytest.approx(best, abs=ABS)


def test_threshold_of_a_label_without_positives_is_the_default() -> None:
    assert m.best_f1_threshold([0, 0, 0], [0.1, 0.9, 0.4]) == m.MULTILABEL_THRESHOLD
    assert m.best_f1_threshold([0, 1, 1], [0.2, 0.6, 0.8]) == pytest.approx(0.4)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_evaluate_multilabel_at_chosen_thresholds_matches_sklearn(seed: int) -> None:
    """Per-finding precision/recall/F1/AUC, exact match and Hamming accuracy at per-label
    thresholds, each against scikit-learn."""
    y_val, p_val = _multilabel_case(seed)
    y, probs = _multilabel_case(seed + 100)
    names = ["a", "b", "c", "d"]
    cut = m.choose_thresholds(y_val, p_val)
    out = m.evaluate("multilabel", y, probs, names, cut)
    json.loads(json.dumps(out, allow_nan=False))
    pred = (probs >= cut).astype(int)
    precision, recall, f1, support = _sk(skm.precision_recall_fscore_support, y, pred,
                                         average=None, zero_division=0)
    aucs = [skm.roc_auc_score(y[:, c], probs[:, c]) for c in range(4)]
    for i, row in enumerate(out["per_class"]):
        assert row["name"] == names[i] and row["threshold"] == pytest.approx(cut[i])
        assert (row["precision"], row["recall"], row["f1"], row["auc"]) == pytest.approx(
            (precision[i], recall[i], f1[i], aucs[i]), abs=ABS)
        assert row["support"] == support[i]
    assert out["thresholds"] == dict(zip(names, cut.tolist(), strict=True))
    assert out["macro_auc"] == pytest.approx(skm.roc_auc_score(y, probs), abs=ABS)
    assert out["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=ABS)
    assert out["hamming_accuracy"] == pytest.approx(1 - skm.hamming_loss(y, pred), abs=ABS)
    assert out["macro_f1"] == pytest.approx(
        _sk(skm.f1_score, y, pred, average="macro", zero_division=0), abs=ABS)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: m.accuracy([0, 1], [0]), "samples"),
        (lambda: m.accuracy([], []), "empty"),
        (lambda: m.accuracy([[0, 1]], [[0, 1]]), "1-D"),
        (lambda: m.accuracy([0.5, 1.0], [0, 1]), "integer"),
        (lambda: m.accuracy(["a", "b"], [0, 1]), "integer"),
        (lambda: m.accuracy([-1, 0], [0, 0]), "negative"),
        (lambda: m.confusion_matrix([0, 3], [0, 1], 3), "out of range"),
        (lambda: m.confusion_matrix([0, 1], [0, 1], 0), "n_classes"),
        (lambda: m.per_class_report([0, 2], [0, 1], ["a", "b"]), "out of range"),
        (lambda: m.macro_ovr_roc_auc([0, 1], np.ones(2)), "2-D"),
        (lambda: m.macro_ovr_roc_auc([0, 1, 2], np.ones((2, 3))), "rows"),
        (lambda: m.macro_ovr_roc_auc([0, 3], np.ones((2, 3))), "out of range"),
        (lambda: m.macro_ovr_roc_auc([0, 1], np.array([[0.1, np.nan]] * 2)), "NaN"),
        (lambda: m.multilabel_auc([0, 1], np.ones((2, 1))), "2-D"),
        (lambda: m.multilabel_auc([[0, 2]], np.ones((1, 2))), "only 0 and 1"),
        (lambda: m.multilabel_auc([[0, 1]], np.ones((1, 3))), "columns"),
        (lambda: m.evaluate("regression", [0], np.ones((1, 2)), ["a", "b"]), "unknown task"),
        (lambda: m.evaluate("multiclass", [0], np.ones((1, 2)), ["a"]), "class_names"),
        (lambda: m.evaluate("multilabel", [[0, 1]], np.ones((1, 2)), ["a"]), "class_names"),
        (lambda: m.evaluate("multilabel", [[0, 1]], np.ones((1, 2)), ["a", "b"], [0.5]),
         "thresholds"),
        (lambda: m.evaluate("multilabel", [[0, 1]], np.ones((1, 2)), ["a", "b"], [0.5, 1.5]),
         r"\[0, 1\]"),
        (lambda: m.choose_thresholds([[0, 1]], np.ones((1, 3))), "columns"),
    ],
)
def test_bad_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
