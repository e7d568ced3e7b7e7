"""``python -m bench.studies.field_of_view`` end to end on a tiny BloodMNIST model: a real
service, generated captures scored three ways, and the usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.studies.field_of_view import main

pytestmark = pytest.mark.slow


def test_scores_captures_three_ways(tiny_models: Path, tmp_path: Path, capsys) -> None:
    model = tiny_models / "bloodmnist" / "onnx" / "1"
    out = tmp_path / "fov.json"
    assert main(["--model", f"onnx={model}", "--count", "8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["count"] == 8 and set(result["correct"]) == {
        "raw", "raw, whole image", "dataset image"}
    assert all(0 <= c <= 8 for c in result["correct"].values())
    # the same tensor reaches the model, so the same answer, whatever the weights
    assert result["raw_agrees_with_dataset_image"] == 8
    assert result["correct"]["raw"] == result["correct"]["dataset image"]
    assert result["raw_capture"]["centre_crop"] == pytest.approx(200 / 360)
    printed = capsys.readouterr().out
    assert "raw and dataset image give the same answer for 8 / 8" in printed


def test_usage_errors(tiny_models: Path, capsys) -> None:
    model = tiny_models / "bloodmnist" / "onnx" / "1"
    assert main(["--model", str(model)]) == 2
    assert main(["--model", f"onnx={model}", "--count", "0"]) == 2
    assert "error:" in capsys.readouterr().err
