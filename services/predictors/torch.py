"""PyTorch predictor: torchvision ResNet rebuilt from the manifest, ``model.pt`` state dict.

The state dict is read with ``weights_only=True`` (tensors only, no pickled code), the net
runs in channels-last memory format (what the NHWC input already is after ``NHWCWrapper``'s
permute, and what oneDNN convolutions prefer) under ``torch.inference_mode``, on the GPU when
there is one.

Variants (rows of the runtime table, settings of this one predictor):

- ``precision="bf16"`` (torch-bf16): ``torch.autocast`` to bfloat16 on the CPU (oneDNN's
  bf16 kernels: AVX512-BF16/AMX), and on a GPU to bfloat16 where it has bf16 tensor cores,
  else float16. ``precision`` reports the dtype the net's output really had.
- ``compile=True`` (torch-compile): ``torch.compile`` (inductor, static shapes), so the row
  serves the power-of-two batch buckets; warm-up compiles each, no request ever does.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from services.predictors.base import Predictor
from shared.models.torch_resnet import NHWCWrapper, build_torch_resnet

PRECISION_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class TorchPredictor(Predictor):
    """torchvision ResNet in eval mode."""

    framework = "torch"

    @property
    def version(self) -> str:
        return torch.__version__

    @property
    def precision(self) -> str:
        return PRECISION_NAMES[self.ran_dtype]

    def load(self, path: Path) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        net = build_torch_resnet(self.manifest.num_classes, self.stage_sizes)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model = NHWCWrapper(net).eval().to(self.device, memory_format=torch.channels_last)
        self.model = torch.compile(model, dynamic=False) if self.runtime.compile else model
        self.autocast_dtype = None
        if self.runtime.precision in ("bf16", "fp16"):
            gpu_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            wanted = "bf16" if self.device.type == "cpu" or gpu_bf16 else "fp16"
            self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[wanted]
        self.ran_dtype = self.autocast_dtype or torch.float32

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            images = torch.from_numpy(batch).to(self.device, non_blocking=True)
            out = self.model(images)
        self.ran_dtype = out.dtype
        return out.float().cpu().numpy()
