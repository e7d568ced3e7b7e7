"""Dataset registry: the specs every trainer, service and report relies on."""

import numpy as np
import pytest

from shared import metrics
from shared.datasets import DATASETS, DatasetSpec, ImageSet, get_dataset_spec, load_dataset


def test_dr_spec():
    spec = get_dataset_spec("dr")
    assert spec.task == "multiclass"
    assert spec.class_names == ("No DR", "Mild", "Moderate", "Severe", "Proliferative DR")
    assert spec.n_classes == 5
    assert spec.primary_metric == "qwk"
    assert "qwk" in spec.metrics


def test_bloodmnist_spec_has_official_classes_in_order():
    spec = get_dataset_spec("bloodmnist")
    assert spec.class_names == (
        "basophil",
        "eosinophil",
        "erythroblast",
        "immature granulocytes",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    )
    assert spec.primary_metric == "accuracy"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_metric_names_are_ones_evaluate_returns(name):
    spec = DATASETS[name]
    known = metrics.MULTICLASS_METRICS if spec.task == "multiclass" else metrics.MULTILABEL_METRICS
    assert set(spec.metrics) <= set(known)


def test_unknown_dataset_lists_known_names():
    with pytest.raises(KeyError, match="bloodmnist.*dr"):
        get_dataset_spec("chestmnist")
    with pytest.raises(KeyError, match="known datasets"):
        load_dataset("nope", "/nonexistent", 32)


def test_spec_validation():
    with pytest.raises(ValueError, match="task"):
        DatasetSpec("x", "regression", ("a", "b"), ("accuracy",), "accuracy")
    with pytest.raises(ValueError, match="primary metric"):
        DatasetSpec("x", "multiclass", ("a", "b"), ("accuracy",), "qwk")
    with pytest.raises(ValueError, match="unique"):
        DatasetSpec("x", "multiclass", ("a", "a"), ("accuracy",), "accuracy")
    multilabel = DatasetSpec("x", "multilabel", ("a", "b", "c"), ("macro_auc",), "macro_auc")
    assert multilabel.n_classes == 3


def test_image_set_checks_shapes_and_fills_ids():
    images = np.zeros((3, 8, 8, 3), np.uint8)
    s = ImageSet(images, np.array([0, 1, 1]))
    assert len(s) == 3 and s.image_size == 8 and s.ids == ["0", "1", "2"]
    assert s.class_counts(3).tolist() == [1, 2, 0]
    multi = ImageSet(images, np.array([[1, 0], [1, 1], [0, 0]]))
    assert multi.class_counts(2).tolist() == [2, 1]
    sub = s.subset(range(1, 3))
    assert len(sub) == 2 and sub.ids == ["1", "2"] and sub.labels.tolist() == [1, 1]
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(images.astype(np.float32), np.zeros(3))
    with pytest.raises(ValueError, match="labels"):
        ImageSet(images, np.zeros(2))
    with pytest.raises(ValueError, match="ids"):
        ImageSet(images, np.zeros(3), ["a"])
