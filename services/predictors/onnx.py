"""ONNX Runtime predictor: ``model.onnx`` (exported from torch with a dynamic batch axis) in an
``InferenceSession`` with all graph optimisations, sequential execution, ``threads`` intra-op
threads and one inter-op thread, on CUDA with onnxruntime-gpu (a warning if it ends up on the
CPU), else on the CPU.

onnxruntime-gpu takes CUDA and cuDNN from the nvidia-* wheels uv.lock pins, which are not on
the loader's path: ``preload_dlls()`` loads them before the first session, or the CUDA
provider would find the base image's libraries (another CUDA major) or none.

The ``onnx-int8`` artifact (a static QDQ graph, ``python -m training quantize``) is served by
the same code: ONNX Runtime fuses QuantizeLinear/DequantizeLinear pairs around convolutions
into int8 kernels (QLinearConv, ...). ``precision`` is read back from the graph the session
really runs: for an int8 artifact the optimised graph is written out once at load and
inspected; "int8" only if int8 kernels are in it (an unfused QDQ graph computes in fp32).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.predictors.base import Predictor

log = logging.getLogger(__name__)
INT8_KERNELS = frozenset({"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger",
                          "QGemm", "MatMulIntegerToFloat", "DynamicQuantizeMatMul"})


def optimised_op_types(path: Path, options: ort.SessionOptions, providers: list[str]
                       ) -> set[str]:
    """The operator types of the graph ONNX Runtime runs for ``path`` (after its graph
    optimisations), from the optimised model it writes out."""
    import onnx

    severity = options.log_severity_level
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimised.onnx")
        options.log_severity_level = 3  # not the "hardware specific optimisations" warning
        ort.InferenceSession(str(path), options, providers=providers)
        graph = onnx.load(options.optimized_model_filepath).graph
        options.optimized_model_filepath = ""
        options.log_severity_level = severity
    return {node.op_type for node in graph.node}


class OnnxPredictor(Predictor):
    """One ONNX Runtime session; ``run`` is thread-safe and releases the GIL."""

    framework = "onnx"

    @property
    def version(self) -> str:
        return ort.__version__

    @property
    def precision(self) -> str:
        return self._precision

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
        self._precision = "fp32"
        if self.runtime.precision == "int8":
            int8 = optimised_op_types(path, options, providers) & INT8_KERNELS
            self._precision = "int8" if int8 else "fp32"
            if not int8:
                log.warning("%s: no int8 kernel in ONNX Runtime's optimised graph: it computes "
                            "in fp32", path)
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
            log.warning("onnxruntime-gpu runs on the CPU: no usable GPU or CUDA libraries")
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]
