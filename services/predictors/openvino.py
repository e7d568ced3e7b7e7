"""OpenVINO predictor: the exported ``model.onnx`` (NHWC input, dynamic batch axis) read by
``ov.Core`` and compiled for the CPU with ``threads`` inference threads and the latency hint.

On a CPU with AMX or AVX512-BF16, OpenVINO's default inference precision is bf16: this
predictor asks for f32 explicitly, so that it computes what the other runtimes compute (the
parity check holds it to 1e-4), and reports the precision the compiled model really uses.

Variants: ``precision="bf16"`` (openvino-bf16) asks for bf16 instead (OpenVINO falls back to
f32 on a CPU without bf16 support; ``precision`` then says so); ``precision="int8"``
(openvino-int8) serves the NNCF-quantised QDQ graph, which OpenVINO's low-precision
transformations compile to int8 kernels, the remaining layers at f32. ``precision`` reads
both back from the compiled model: "int8" only if its runtime graph has int8 convolutions.
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
HINTS = {"fp32": ov.Type.f32, "bf16": ov.Type.bf16, "fp16": ov.Type.f16, "int8": ov.Type.f32}
"""The inference precision asked for by each row precision (int8: f32 for the float layers)."""
PRECISION_NAMES = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
INT8_TYPES = ("i8", "u8")
VERSION = metadata.version("openvino")
"""The installed package's version, read once: ``metadata.version`` scans the installed
distributions (~0.5 ms), and every answer's ``model`` block names the version."""


class OpenVinoPredictor(Predictor):
    """One compiled model; only the batcher thread calls it, through one infer request."""

    framework = "openvino"

    @property
    def version(self) -> str:
        return VERSION

    def load(self, path: Path) -> None:
        config = {hints.performance_mode: hints.PerformanceMode.LATENCY,
                  hints.inference_precision: HINTS[self.runtime.precision]}
        if self.threads:
            config[props.inference_num_threads] = self.threads
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), DEVICE, config)
        self.request = self.compiled.create_infer_request()
        self._precision = self._read_precision()

    @property
    def precision(self) -> str:
        """The precision the compiled model runs at (read back once, at load): "int8" if its
        runtime graph has int8 convolutions, else its inference precision (e.g. "fp32")."""
        return self._precision

    def _read_precision(self) -> str:
        if self.int8_convolutions():
            return "int8"
        hint = self.compiled.get_property(hints.inference_precision).get_type_name()
        return PRECISION_NAMES.get(hint, hint)

    def int8_convolutions(self) -> int:
        """How many convolutions of the compiled (runtime) graph run on int8 data."""
        return sum(1 for op in self.compiled.get_runtime_model().get_ordered_ops()
                   if op.get_rt_info()["layerType"].astype(str) == "Convolution"
                   and op.get_rt_info()["runtimePrecision"].astype(str) in INT8_TYPES)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        return self.request.get_output_tensor(0).data.copy()
