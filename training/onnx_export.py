"""Export the torch ResNet to ONNX, taking the same float32 NHWC batch every service feeds its
runtime, and verify the file before returning it.

Exporter choice (torch 2.15): `torch.onnx.export` defaults to the torch.export-based ("dynamo")
exporter since 2.9, but that path needs the `onnxscript` package, which this project does not
install. The TorchScript exporter (`dynamo=False`) is deprecated (DeprecationWarning) but still
present; it writes one self-contained .onnx file (no external-data side file below 2 GB) and
names the dynamic batch axis through `dynamic_axes`. We use it deliberately and silence its
DeprecationWarnings during the export call only. Switching to `dynamo=True` needs
`onnxscript` in the environment and `dynamic_shapes` instead of `dynamic_axes`.

Checks: `onnx.checker.check_model` on the written file, then onnxruntime vs torch on a seeded
batch whose size differs from the export batch (proving the batch axis is dynamic); the max-abs
logit difference must not exceed `atol` times max(1, largest |logit|). The scaling matters for
barely trained models: with BN running statistics still near 0/1 a ResNet-50's eval-mode logits
reach the hundreds, and fp32 round-off grows with them (torch float32 vs float64 alone then
differs by ~1e-4); for logits within +-1 the bound is plain `atol`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from shared.models.torch_resnet import NHWCWrapper

ONNX_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
EXPORT_BATCH = 2
VERIFY_BATCH = 3
DEFAULT_ATOL = 1e-4


class OnnxExportError(RuntimeError):
    """The exported file failed the checker or disagrees with torch."""


def _nhwc(model: nn.Module) -> nn.Module:
    return model if isinstance(model, NHWCWrapper) else NHWCWrapper(model)


def onnx_session(path: str | Path, threads: int | None = None) -> ort.InferenceSession:
    """CPU onnxruntime session for an exported model (`threads` intra-op threads if given)."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    image_size: int,
    opset: int = ONNX_OPSET,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> Path:
    """Export `model` (the NCHW ResNet or an `NHWCWrapper`) in eval mode to `path` with input
    `images` (batch, image_size, image_size, 3) float32 and output `logits` (batch, classes),
    check it and compare it with torch; returns the path. The model is left in eval mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapped = _nhwc(model).eval()
    generator = torch.Generator().manual_seed(seed)
    example = torch.randn(EXPORT_BATCH, image_size, image_size, 3, generator=generator)
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter warns about itself and its internals; nothing actionable here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapped, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
        )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as error:
        raise OnnxExportError(f"{path}: onnx checker failed: {error}") from error
    batch = torch.randn(VERIFY_BATCH, image_size, image_size, 3, generator=generator)
    with torch.no_grad():
        expected = wrapped(batch).numpy()
    (actual,) = onnx_session(path).run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})
    tolerance = atol * max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(actual - expected).max()) if actual.shape == expected.shape else np.inf
    if not diff <= tolerance:
        raise OnnxExportError(
            f"{path}: onnxruntime disagrees with torch: shape {actual.shape} vs "
            f"{expected.shape}, max-abs {diff:.3g} > {tolerance:.3g}"
        )
    return path
