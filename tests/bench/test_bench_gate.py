"""The accuracy gate's pure scoring and judging (bench.gate)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import gate

CLASSES = ("a", "b", "c")


def one_hot(answers: list[int], n: int = 3) -> np.ndarray:
    probs = np.full((len(answers), n), 0.1)
    probs[np.arange(len(answers)), answers] = 0.8
    return probs


def test_gate_metric_is_top1_unless_multilabel() -> None:
    assert gate.gate_metric("multiclass", "qwk") == "accuracy"
    assert gate.gate_metric("multilabel", "macro_auc") == "macro_auc"


def test_agreement_counts_same_answers() -> None:
    parent = one_hot([0, 1, 2, 0])
    assert gate.agreement("multiclass", one_hot([0, 1, 2, 0]), parent) == 1.0
    assert gate.agreement("multiclass", one_hot([0, 1, 1, 1]), parent) == 0.5
    multilabel = np.array([[0.9, 0.1], [0.9, 0.9]])
    assert gate.agreement("multilabel", np.array([[0.8, 0.2], [0.8, 0.2]]), multilabel) == 0.5
    with pytest.raises(ValueError, match="shapes"):
        gate.agreement("multiclass", one_hot([0]), one_hot([0, 1]))


def test_score_reads_the_primary_metric_and_auc() -> None:
    labels = np.array([0, 1, 2, 2])
    scores = gate.score("multiclass", labels, one_hot([0, 1, 2, 0]), CLASSES, "qwk")
    assert scores["top1"] == 0.75 and scores["images"] == 4
    assert scores["primary_metric"] == "qwk" and scores["primary"] is not None
    assert 0.0 <= scores["macro_auc"] <= 1.0


def scores(top1: float, **extra: object) -> dict[str, object]:
    return {"top1": top1, "primary": top1, "macro_auc": None, **extra}


def test_judge_all_passes_fails_and_refers() -> None:
    labels = np.zeros(100, dtype=int)
    probs = {"onnx": one_hot([0] * 100), "onnx-int8": one_hot([0] * 99 + [1]),
             "openvino": one_hot([0] * 100), "openvino-int8": one_hot([0] * 98 + [1, 1])}
    table = {name: gate.score("multiclass", labels, p, CLASSES, "accuracy")
             for name, p in probs.items()}
    parents = {"onnx": "", "onnx-int8": "onnx", "openvino": "", "openvino-int8": "openvino"}
    judged = gate.judge_all(table, parents, probs, "multiclass", "accuracy")
    assert judged["onnx"]["verdict"] == "reference"
    assert judged["onnx-int8"]["verdict"] == "pass"          # 0.99 >= 0.99 * 1.00
    assert judged["onnx-int8"]["agreement"] == 0.99
    assert judged["onnx-int8"]["ratio_to_parent"] == pytest.approx(0.99)
    assert judged["openvino-int8"]["verdict"] == "fail"      # 0.98 < 0.99
    assert "< 99%" in judged["openvino-int8"]["reason"]
    assert gate.may_win(judged["onnx"]) and gate.may_win(judged["onnx-int8"])
    assert not gate.may_win(judged["openvino-int8"]) and not gate.may_win(None)


def test_judge_leaves_incomplete_or_orphaned_variants_unjudged() -> None:
    orphan = gate.judge("torch-bf16", scores(0.9), "torch", None, "accuracy", None)
    assert orphan["verdict"] == "unjudged" and "torch was not evaluated" in orphan["reason"]
    dropped = gate.judge("onnx-int8", scores(0.9, failed_images=3, sent_images=10), "onnx",
                         scores(0.9), "accuracy", None)
    assert dropped["verdict"] == "unjudged" and "3 of 10" in dropped["reason"]
    base = gate.judge("onnx", scores(0.9, failed_images=1, sent_images=10), "", None,
                      "accuracy", None)
    assert base["verdict"] == "unjudged"     # a base row that dropped images is no reference
    multilabel = gate.judge("x-int8", {"top1": None, "primary": 0.7}, "x", {"primary": 0.8},
                            "macro_auc", 0.9)
    assert multilabel["verdict"] == "fail" and multilabel["value"] == 0.7
