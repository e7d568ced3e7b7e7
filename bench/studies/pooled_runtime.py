"""A runtime row whose model costs next to nothing, for measuring the request path alone.

``VERSUS_RUNTIME_MODULES=bench.studies.pooled_runtime`` adds the row ``pooled``: it serves
an ONNX artifact (its manifest: classes, input size, preprocessing) but computes, instead of
the network, a fixed random linear map of each image's per-channel mean and standard
deviation over every 4th pixel of every 4th row (numpy, ~0.2 ms for a 224 px image). The
answers depend on the input, so a bench can still check that two ways of sending an image
ask the same question, while the service's CPU is almost all request path: HTTP, parsing,
decode, preprocess, batching.
Used by ``bench.studies.oip_binary --runtime pooled``; never served for real answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.predictors.base import Predictor
from shared.runtimes import Runtime

MODULE = __name__
FEATURES = 6  # mean and standard deviation of each of the 3 channels
STRIDE = 4


class PooledPredictor(Predictor):
    """Per-channel mean and std of a pixel sample -> logits through fixed random weights."""

    framework = "pooled"
    version = "1"
    precision = "fp32"

    def load(self, path: Path) -> None:
        classes = len(self.manifest.class_names)
        self.weights = np.random.default_rng(0).standard_normal((FEATURES, classes))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        sample = batch[:, ::STRIDE, ::STRIDE, :]
        features = np.concatenate([sample.mean(axis=(1, 2)), sample.std(axis=(1, 2))], axis=1)
        return (features @ self.weights).astype(np.float32)


RUNTIMES = [Runtime("pooled", "Pooled features (request-path bench)",
                    f"{MODULE}:PooledPredictor", "onnx", "onnx", "onnx", 8098, "pooled_onnx",
                    (), "#777777")]
