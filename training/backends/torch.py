"""PyTorch backend: eager train step, `torch.autocast` for bf16 (CPU or CUDA), channels-last
memory format (oneDNN's fast path on CPU; the NHWC batch permuted to NCHW already has
channels-last strides, so no copy), fused Adam (one kernel for all parameters instead of a
loop of small ops: several times faster on CPU, same update rule)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from shared.models.torch_resnet import build_torch_resnet, torch_parameter_count
from training.porting import state_dict_to_torch, to_numpy_state

from .base import ADAM_BETAS, ADAM_EPSILON, Backend, StateDict

NHWC_TO_NCHW = (0, 3, 1, 2)


def initial_state(num_classes: int, stage_sizes: tuple[int, ...], seed: int) -> StateDict:
    """torchvision's default initialisation under `seed`, as a numpy state dict: the one
    random init every framework starts from (ported, not re-drawn per framework)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_torch_resnet(num_classes, stage_sizes)
    return to_numpy_state(model.state_dict())


class TorchBackend(Backend):
    name = "torch"
    file_name = "model.pt"

    def build(self, init: StateDict | None, lr: float) -> None:
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if init is None:
            init = initial_state(self.config.num_classes, self.config.stage_sizes,
                                 self.config.seed)
        model = build_torch_resnet(self.config.num_classes, self.config.stage_sizes)
        state_dict_to_torch(init, model)
        self.model = model.to(self._device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=lr, betas=ADAM_BETAS, eps=ADAM_EPSILON, fused=True
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self._device.type, dtype=torch.bfloat16)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self._device)

    def train_step(self, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray]:
        self.model.train()
        with self._autocast():
            logits = self.model(self._tensor(x).permute(*NHWC_TO_NCHW))
        logits = logits.float()
        labels, weights = self._tensor(y), self._tensor(w)
        if self.config.task == "multiclass":
            per_example = F.cross_entropy(logits, labels, reduction="none")
        else:
            pos_weight = (None if self.config.pos_weight is None else
                          self._tensor(np.asarray(self.config.pos_weight, np.float32)))
            per_example = F.binary_cross_entropy_with_logits(
                logits, labels, reduction="none", pos_weight=pos_weight).mean(dim=1)
        loss = (per_example * weights).sum() / weights.sum()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item(), logits.detach().cpu().numpy()

    def eval_step(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with torch.inference_mode(), self._autocast():
            logits = self.model(self._tensor(x).permute(*NHWC_TO_NCHW))
        return logits.float().cpu().numpy()

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def get_state(self) -> StateDict:
        return to_numpy_state(self.model.state_dict())

    def set_state(self, state: StateDict) -> None:
        state_dict_to_torch(state, self.model)

    def save(self, directory: Path) -> str:
        state = {key: value.detach().cpu().contiguous()
                 for key, value in self.model.state_dict().items()}
        torch.save(state, Path(directory) / self.file_name)
        return self.file_name

    def load(self, path: Path) -> None:
        state_dict_to_torch(torch.load(path, map_location="cpu", weights_only=True), self.model)

    def parameter_count(self) -> int:
        return torch_parameter_count(self.model)

    def device(self) -> str:
        return self._device.type

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__, "torchvision": torchvision.__version__}
