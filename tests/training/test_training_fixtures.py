"""training.fixtures: seeded artifacts in the real layout, one per artifact kind, with
manifests a service accepts."""

from __future__ import annotations

from pathlib import Path

from shared.manifest import read_manifest, verify_model_file
from training.fixtures import runtime_model_dir, write_artifacts


def test_runtimes_that_serve_one_artifact_share_its_directory(tmp_path: Path) -> None:
    written = write_artifacts(tmp_path, dataset="dr", stage_sizes=(1, 1, 1, 1), image_size=32,
                              runtimes=["onnx", "openvino"])
    assert written["onnx"] == written["openvino"] == tmp_path / "dr" / "onnx" / "1"
    assert runtime_model_dir(tmp_path, "dr", "openvino", "1") == written["onnx"]
    manifest = read_manifest(written["onnx"])
    assert manifest.dataset == "dr" and manifest.input.size == 32
    assert manifest.training["init"] == "random"
    verify_model_file(written["onnx"], manifest)
