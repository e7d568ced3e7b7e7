"""One architecture, three frameworks: torchvision's ResNet v1.5 (Bottleneck blocks) and its
layer-for-layer Keras and Flax twins.

Every model takes float32 NHWC images (the torch model through `NHWCWrapper`) and returns
logits. Layers carry the same names in every framework (see `training.porting`), so weights
port by name. Trainable parameter counts are equal across frameworks:

    stage sizes          1000 classes   5 classes    8 classes
    RESNET50 (3,4,6,3)   25,557,032     23,518,277   23,524,424
    TINY     (1,1,1,1)   10,064,936      8,026,181    8,032,328

(BatchNorm running statistics are buffers / non-trainable variables / `batch_stats` and are
not counted.)

The framework modules are imported lazily: `shared.models` imports without torch, TF or JAX,
and `from shared.models import build_keras_resnet` imports only Keras.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

StageSizes = tuple[int, ...]

RESNET50: StageSizes = (3, 4, 6, 3)
TINY: StageSizes = (1, 1, 1, 1)
ARCHITECTURES: dict[str, StageSizes] = {"resnet50": RESNET50, "tiny": TINY}

STAGE_WIDTHS = (64, 128, 256, 512)
"""Bottleneck width of each stage; a block's output has `EXPANSION` times as many channels."""
EXPANSION = 4
STEM_WIDTH = 64
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
"""Keras/Flax convention (weight of the old running average); torch's momentum=0.1."""

_LAZY = {
    "build_torch_resnet": "torch_resnet",
    "NHWCWrapper": "torch_resnet",
    "torch_parameter_count": "torch_resnet",
    "build_keras_resnet": "keras_resnet",
    "keras_parameter_count": "keras_resnet",
    "build_flax_resnet": "flax_resnet",
    "init_variables": "flax_resnet",
    "flax_parameter_count": "flax_resnet",
    "variable_shapes": "flax_resnet",
    "save_flax_variables": "flax_resnet",
    "load_flax_variables": "flax_resnet",
}

__all__ = [
    "ARCHITECTURES",
    "RESNET50",
    "TINY",
    "StageSizes",
    "architecture_dict",
    "avoid_llvm_clash",
    "parse_stage_sizes",
    *_LAZY,
]


def parse_stage_sizes(text: str | Sequence[int]) -> StageSizes:
    """'3,4,6,3', an architecture name ('resnet50', 'tiny') or a sequence -> stage sizes."""
    if isinstance(text, str):
        if text in ARCHITECTURES:
            return ARCHITECTURES[text]
        try:
            sizes = tuple(int(part) for part in text.split(","))
        except ValueError:
            raise ValueError(
                f"stage sizes must be comma-separated integers or one of "
                f"{sorted(ARCHITECTURES)}, got {text!r}"
            ) from None
    else:
        sizes = tuple(int(size) for size in text)
    if len(sizes) != len(STAGE_WIDTHS) or min(sizes) < 1:
        raise ValueError(f"need {len(STAGE_WIDTHS)} stage sizes >= 1, got {sizes}")
    return sizes


def architecture_dict(stage_sizes: Sequence[int]) -> dict[str, Any]:
    """The manifest's `architecture` field, e.g. {"name": "resnet50", "stage_sizes": [3,4,6,3]}."""
    sizes = parse_stage_sizes(stage_sizes)
    names = [name for name, known in ARCHITECTURES.items() if known == sizes]
    name = names[0] if names else "resnet-" + "-".join(map(str, sizes))
    return {"name": name, "stage_sizes": list(sizes)}


def avoid_llvm_clash() -> None:
    """Call before importing torchvision (or torch._dynamo) in a process that may hold TensorFlow.

    TensorFlow and Triton each bundle LLVM; loading Triton after TensorFlow aborts the whole
    process ("LLVM ERROR: inconsistency in registered CommandLine options"), and torchvision
    imports Triton through torch._dynamo. Where TensorFlow is already loaded this marks Triton
    as unavailable, so torch runs without it (it only serves torch.compile on GPUs) instead of
    crashing. Triton loaded first, TensorFlow after, is fine and left alone.
    """
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # makes `import triton` raise ImportError


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
