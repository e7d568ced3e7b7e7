"""OpenVINO predictor: the exported ``model.onnx`` (NHWC input, dynamic batch axis) read by
``ov.Core`` and compiled for the CPU with ``threads`` inference threads and the latency hint.

On a CPU with AMX or AVX512-BF16, OpenVINO's default inference precision is bf16: this
predictor asks for f32 explicitly, so that it computes what the other runtimes compute (the
parity check holds it to 1e-4), and reports the precision the compiled model really uses.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties as props
import openvino.properties.hint as hints

from services.predictors.base import Predictor

DEVICE = "CPU"


class OpenVinoPredictor(Predictor):
    """One compiled model; only the batcher thread calls it, through one infer request."""

    framework = "openvino"

    @property
    def version(self) -> str:
        return metadata.version("openvino")

    def load(self, path: Path) -> None:
        config = {hints.performance_mode: hints.PerformanceMode.LATENCY,
                  hints.inference_precision: ov.Type.f32}
        if self.threads:
            config[props.inference_num_threads] = self.threads
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), DEVICE, config)
        self.request = self.compiled.create_infer_request()

    @property
    def precision(self) -> str:
        """The inference precision the compiled model runs at (e.g. ``f32``)."""
        return self.compiled.get_property(hints.inference_precision).get_type_name()

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return self.request.get_output_tensor(0).data.copy()
