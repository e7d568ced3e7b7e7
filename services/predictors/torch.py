"""PyTorch predictor: torchvision ResNet rebuilt from the manifest, ``model.pt`` state dict.

The state dict is read with ``weights_only=True`` (tensors only, no pickled code), the net
runs in channels-last memory format (what the NHWC input already is after ``NHWCWrapper``'s
permute, and what oneDNN convolutions prefer) under ``torch.inference_mode``, on the GPU when
there is one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from services.predictors.base import Predictor
from shared.models.torch_resnet import NHWCWrapper, build_torch_resnet


class TorchPredictor(Predictor):
    """torchvision ResNet in eval mode."""

    framework = "torch"

    @property
    def version(self) -> str:
        return torch.__version__

    def load(self, path: Path) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        net = build_torch_resnet(self.manifest.num_classes, self.stage_sizes)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.model = NHWCWrapper(net).eval().to(self.device, memory_format=torch.channels_last)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            images = torch.from_numpy(batch).to(self.device, non_blocking=True)
            return self.model(images).float().cpu().numpy()
