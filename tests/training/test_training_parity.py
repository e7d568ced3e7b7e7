"""Same weights, same batch: torch, Keras, Flax and ONNX Runtime logits agree to 1e-4."""

import json

import numpy as np
import pytest

from shared.models import RESNET50, TINY
from training.parity import (
    FRAMEWORKS,
    compare_logits,
    format_report,
    main,
    parity_from_state_dict,
    random_batch,
    random_state_dict,
)

for module in ("torch", "keras", "flax", "onnxruntime"):
    pytest.importorskip(module)

ATOL = 1e-4


def assert_parity(report, parameters):
    assert report["frameworks"] == list(FRAMEWORKS)
    assert len(report["pairs"]) == 6
    for pair, result in report["pairs"].items():
        assert result["max_abs"] <= ATOL, (pair, result)
        assert result["argmax_equal"], pair
    assert report["passed"]
    assert set(report["parameters"].values()) == {parameters}
    json.dumps(report)  # JSON-able


def test_compare_logits_flags_differences():
    logits = np.array([[0.0, 1.0], [2.0, 0.5]], np.float32)
    report = compare_logits({"a": logits, "b": logits + 5e-5}, {"a": 10, "b": 10})
    assert report["passed"] and report["pairs"]["a-b"]["max_abs"] == pytest.approx(5e-5, rel=1e-2)
    assert not compare_logits({"a": logits, "b": logits + 2e-4})["passed"]
    swapped = compare_logits({"a": logits, "b": logits[:, ::-1]}, atol=10.0)
    assert not swapped["argmax_equal"] and not swapped["passed"]
    assert "FAIL" in format_report(swapped)


def test_random_state_has_nontrivial_bn_statistics(tiny_state):
    assert tiny_state["bn1.num_batches_tracked"] == 0
    for name in ("bn1", "layer2.0.bn3", "layer4.0.downsample.1"):
        assert not np.allclose(tiny_state[f"{name}.running_mean"], 0)
        assert not np.allclose(tiny_state[f"{name}.running_var"], 1)
        assert not np.allclose(tiny_state[f"{name}.weight"], 1)


def test_tiny_parity_across_four_runtimes(tiny_state):
    report = parity_from_state_dict(
        tiny_state, random_batch(4, 64, seed=0), stage_sizes=TINY, num_classes=5
    )
    assert_parity(report, 8_026_181)
    assert report["fp32_noise"] <= ATOL


@pytest.mark.slow  # 30-60 s on the shared 2-core machine
def test_resnet50_parity_across_four_runtimes():
    state = random_state_dict(RESNET50, 8, seed=0)
    report = parity_from_state_dict(
        state, random_batch(2, 64, seed=0), stage_sizes=RESNET50, num_classes=8
    )
    assert_parity(report, 23_524_424)


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "parity.json"
    argv = ["--stage-sizes", "1,1,1,1", "--num-classes", "5", "--image-size", "32",
            "--batch", "2", "--frameworks", "torch,flax", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["frameworks"] == ["torch", "flax"] and report["passed"]
    assert "torch-flax" in capsys.readouterr().out
