"""``loadtest/_checks.py``: which responses count as successful predictions."""

from __future__ import annotations

import pytest
from _checks import ModelInfo, check_oip, check_predict

CLASSES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]
MODEL = ModelInfo("onnx", "dr", tuple(CLASSES))


def test_model_info_from_the_manifest() -> None:
    manifest = {"framework": "onnx", "dataset": "dr", "class_names": CLASSES, "sha256": "x"}
    assert ModelInfo.from_manifest(manifest, "onnx") == MODEL
    assert MODEL.oip_name == "dr-onnx"
    # OpenVINO serves the same ONNX artifact; its answers must name openvino.
    openvino = ModelInfo.from_manifest(manifest, "openvino")
    assert openvino.framework == "openvino" and openvino.oip_name == "dr-openvino"


@pytest.mark.parametrize(("body", "message"), [
    ([], "did not return a JSON object"),
    ({"framework": "onnx", "dataset": "dr"}, "class_names"),
    ({"framework": "torch", "dataset": "dr", "class_names": CLASSES},
     "serves a 'torch' model, not the 'onnx' artifact of 'onnx'"),
])
def test_model_info_refuses_a_wrong_manifest(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelInfo.from_manifest(body, "onnx")


def test_check_predict() -> None:
    good = {"label": "Mild", "class_index": 1, "model": {"framework": "onnx"}}
    assert check_predict(good, MODEL) is None
    assert check_predict(["Mild"], MODEL) == "the response is not a JSON object"
    assert check_predict({"model": {"framework": "onnx"}}, MODEL) == "the response has no label"
    assert "not among" in check_predict({**good, "label": "cat"}, MODEL)
    assert "from the onnx model" in check_predict({**good, "model": {"framework": "jax"}}, MODEL)


def test_check_oip() -> None:
    good = {"model_name": "dr-onnx", "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 5], "data": [0.2] * 5},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["Severe"]}]}
    assert check_oip(good, MODEL) is None
    assert "model_name" in check_oip({**good, "model_name": "dr-jax"}, MODEL)
    assert "no label output" in check_oip({**good, "outputs": good["outputs"][:1]}, MODEL)
    assert "no label output" in check_oip({**good, "outputs": {"label": 1}}, MODEL)
    bad_label = [{"name": "label", "data": ["Grade 9"]}]
    assert "not among" in check_oip({**good, "outputs": bad_label}, MODEL)


FINDINGS = ["Effusion", "Mass", "Nodule"]
MULTILABEL = {"framework": "onnx", "dataset": "chestxray14", "class_names": FINDINGS,
              "task": "multilabel", "thresholds": [0.3, 0.5, 0.9]}


def test_model_info_of_a_multilabel_manifest() -> None:
    model = ModelInfo.from_manifest(MULTILABEL, "onnx")
    assert model.task == "multilabel" and model.thresholds == (0.3, 0.5, 0.9)
    untuned = ModelInfo.from_manifest({**MULTILABEL, "thresholds": []}, "onnx")
    assert untuned.thresholds == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="thresholds"):
        ModelInfo.from_manifest({**MULTILABEL, "thresholds": [0.5]}, "onnx")


def test_check_predict_multilabel_findings_follow_the_thresholds() -> None:
    model = ModelInfo.from_manifest(MULTILABEL, "onnx")
    probs = {"Effusion": 0.4, "Mass": 0.5, "Nodule": 0.8}
    good = {"label": "Nodule", "model": {"framework": "onnx"}, "probabilities": probs,
            "findings": ["Mass", "Effusion"]}
    assert check_predict(good, model) is None
    assert "above their thresholds" in check_predict({**good, "findings": ["Mass"]}, model)
    assert "above their thresholds" in check_predict(
        {**good, "findings": ["Mass", "Effusion", "Nodule"]}, model)
    assert "above their thresholds" in check_predict(
        {**good, "findings": ["Mass", "Mass", "Effusion"]}, model)
    assert "no list of findings" in check_predict({**good, "findings": None}, model)
    assert "every finding" in check_predict(
        {**good, "probabilities": {"Effusion": 0.4, "Mass": 0.5}}, model)
    assert "[0, 1]" in check_predict(
        {**good, "probabilities": {**probs, "Nodule": 1.5}}, model)
    assert "[0, 1]" in check_predict(
        {**good, "probabilities": {**probs, "Nodule": "high"}}, model)
    # The same body is a good multiclass answer: the findings are multilabel's business.
    assert check_predict({**good, "findings": None}, MODEL.__class__(
        "onnx", "chestxray14", tuple(FINDINGS))) is None


def test_check_oip_multilabel_needs_the_probability_vector() -> None:
    model = ModelInfo.from_manifest(MULTILABEL, "onnx")
    label = {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["Mass"]}
    probs = {"name": "probabilities", "datatype": "FP32", "shape": [1, 3],
             "data": [0.9, 0.7, 0.8]}  # independent sigmoids: need not sum to 1
    good = {"model_name": "chestxray14-onnx", "outputs": [probs, label]}
    assert check_oip(good, model) is None
    assert "every finding" in check_oip({**good, "outputs": [label]}, model)
    assert "every finding" in check_oip(
        {**good, "outputs": [{**probs, "data": [0.9, 1.7, 0.8]}, label]}, model)
