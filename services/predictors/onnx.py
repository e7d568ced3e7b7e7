"""ONNX Runtime predictor: ``model.onnx`` (exported from torch with a dynamic batch axis) in an
``InferenceSession`` with all graph optimisations, sequential execution, ``threads`` intra-op
threads and one inter-op thread, on CUDA when onnxruntime-gpu has it, else on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.predictors.base import Predictor

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


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
        available = ort.get_available_providers()
        providers = [p for p in PREFERRED_PROVIDERS if p in available]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
