"""ONNX Runtime predictor: ``model.onnx`` (exported from torch with a dynamic batch axis) in an
``InferenceSession`` with all graph optimisations, sequential execution, ``threads`` intra-op
threads and one inter-op thread, on CUDA with onnxruntime-gpu (a warning if it ends up on the
CPU), else on the CPU.

onnxruntime-gpu takes CUDA and cuDNN from the nvidia-* wheels uv.lock pins, which are not on
the loader's path: ``preload_dlls()`` loads them before the first session, or the CUDA
provider would find the base image's libraries (another CUDA major) or none.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.predictors.base import Predictor

log = logging.getLogger(__name__)


class OnnxPredictor(Predictor):
    """One ONNX Runtime session; ``run`` is thread-safe and releases the GIL."""

    framework = "onnx"

    @property
    def version(self) -> str:
        return ort.__version__

    def load(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if self.threads:
            options.intra_op_num_threads = self.threads
        providers = ["CPUExecutionProvider"]
        cuda = bool(getattr(ort, "cuda_version", ""))  # "" in the CPU package
        if cuda:
            ort.preload_dlls()
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
            log.warning("onnxruntime-gpu runs on the CPU: no usable GPU or CUDA libraries")
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
