"""PyTorch ResNet: torchvision's own `ResNet(Bottleneck, ...)`, the reference the Keras and Flax
models are written against (stage sizes (3, 4, 6, 3) is exactly `torchvision.models.resnet50`).

The model itself stays NCHW, so its state dict has torchvision's keys and loads torchvision's
ImageNet weights. Serving and ONNX export wrap it in `NHWCWrapper`, which takes the float32
NHWC batch every service feeds its runtime.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.models import RESNET50, avoid_llvm_clash, parse_stage_sizes

avoid_llvm_clash()  # before torchvision: it may pull in Triton, fatal after TensorFlow

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models.resnet import Bottleneck, ResNet  # noqa: E402

NHWC_TO_NCHW = (0, 3, 1, 2)


def build_torch_resnet(num_classes: int, stage_sizes: Sequence[int] = RESNET50) -> ResNet:
    """torchvision ResNet v1.5 with Bottleneck blocks, default torchvision initialisation
    (seed with `torch.manual_seed` before calling for a reproducible init)."""
    return ResNet(Bottleneck, list(parse_stage_sizes(stage_sizes)), num_classes=num_classes)


class NHWCWrapper(nn.Module):
    """Takes float32 NHWC images, permutes them to NCHW and runs the wrapped model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.permute(*NHWC_TO_NCHW))


def torch_parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(parameter.numel() for parameter in model.parameters())
