"""Cross-framework parity: the same weights and the same batch give the same logits in torch,
Keras, Flax and ONNX Runtime (eval mode, fp32): max-abs difference <= 1e-4 for every pair and
identical argmax.

`compare_logits` is the core and does not care where logits come from; `parity_from_state_dict`
ports one numpy state dict (torchvision keys) into every framework and runs them;
`random_state_dict` makes seeded weights whose BatchNorm statistics and affine parameters are
not the defaults 0/1, so BN porting is really exercised.

    python -m training.parity --stage-sizes 1,1,1,1 --num-classes 5 --image-size 64 --batch 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from shared.models import RESNET50, parse_stage_sizes
from training import porting

FRAMEWORKS = ("torch", "keras", "flax", "onnx")
PARITY_ATOL = 1e-4
CALIBRATION_BATCH = 8
CALIBRATION_SIZE = 64
BN_SCALE_RANGE = (0.5, 1.5)
RESIDUAL_BN_SCALE_RANGE = (0.1, 0.5)
BN_SHIFT_SCALE = 0.1


def random_state_dict(stage_sizes: Sequence[int], num_classes: int, seed: int) -> porting.StateDict:
    """Seeded weights whose BatchNorm layers look trained: torchvision init (torch seed `seed`),
    random BN scale/shift, and BN running mean/var measured on a random calibration batch (so
    they are neither 0/1 nor arbitrary). As in trained ResNets, the last BN of each residual
    branch (bn3) gets a small scale; with scales ~1 everywhere a random ResNet-50 amplifies fp32
    round-off ~1.3x per block, and float32 torch alone then differs from float64 torch by
    ~1e-4 (see `fp32_noise` in the parity report)."""
    import torch

    from shared.models.torch_resnet import build_torch_resnet

    torch.manual_seed(seed)
    model = build_torch_resnet(num_classes, stage_sizes)
    rng = np.random.default_rng(seed)
    for name, norm in model.named_modules():
        if not isinstance(norm, torch.nn.BatchNorm2d):
            continue
        size = norm.num_features
        scale_range = RESIDUAL_BN_SCALE_RANGE if name.endswith("bn3") else BN_SCALE_RANGE
        norm.weight.data = torch.from_numpy(rng.uniform(*scale_range, size).astype(np.float32))
        shift = BN_SHIFT_SCALE * rng.standard_normal(size)
        norm.bias.data = torch.from_numpy(shift.astype(np.float32))
        norm.momentum = None  # cumulative average: running stats = the calibration batch's
    calibration = random_batch(CALIBRATION_BATCH, CALIBRATION_SIZE, seed + 1)
    with torch.no_grad():
        model.train()(torch.from_numpy(calibration).permute(0, 3, 1, 2))
    state = porting.to_numpy_state(model.state_dict())
    for key in [key for key in state if key.endswith(porting.NUM_BATCHES_TRACKED)]:
        state[key] = np.zeros((), np.int64)
    return state


def random_batch(batch: int, image_size: int, seed: int) -> np.ndarray:
    """A normalised-image-like float32 NHWC batch (standard normal)."""
    shape = (batch, image_size, image_size, 3)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# --- one runner per framework -------------------------------------------------------------
Runner = Callable[[Mapping[str, np.ndarray], np.ndarray, tuple[int, ...], int, Path],
                  tuple[np.ndarray, int]]
"""(state, batch, stage_sizes, num_classes, workdir) -> (logits, trainable parameter count)."""


def _torch(
    state: Mapping[str, np.ndarray], batch: np.ndarray, stage_sizes: tuple[int, ...],
    num_classes: int, workdir: Path,
) -> tuple[np.ndarray, int]:
    import torch

    from shared.models.torch_resnet import (
        NHWCWrapper,
        build_torch_resnet,
        torch_parameter_count,
    )

    model = build_torch_resnet(num_classes, stage_sizes)
    porting.state_dict_to_torch(state, model)
    with torch.no_grad():
        logits = NHWCWrapper(model).eval()(torch.from_numpy(batch)).numpy()
    return logits, torch_parameter_count(model)


def torch_fp32_noise(
    state: Mapping[str, np.ndarray], batch: np.ndarray, stage_sizes: Sequence[int],
    num_classes: int,
) -> float:
    """Max-abs difference between torch's float32 and float64 logits: the round-off floor
    below which no cross-framework difference can be expected."""
    import torch

    from shared.models.torch_resnet import NHWCWrapper, build_torch_resnet

    model = build_torch_resnet(num_classes, stage_sizes)
    porting.state_dict_to_torch(state, model)
    wrapped = NHWCWrapper(model).eval()
    with torch.no_grad():
        single = wrapped(torch.from_numpy(batch)).double()
        double = wrapped.double()(torch.from_numpy(batch).double())
    return float((single - double).abs().max())


def _keras(
    state: Mapping[str, np.ndarray], batch: np.ndarray, stage_sizes: tuple[int, ...],
    num_classes: int, workdir: Path,
) -> tuple[np.ndarray, int]:
    from shared.models.keras_resnet import build_keras_resnet, keras_parameter_count

    model = build_keras_resnet(num_classes, batch.shape[1], stage_sizes)
    porting.state_dict_to_keras(state, model)
    return np.asarray(model(batch, training=False)), keras_parameter_count(model)


def _flax(
    state: Mapping[str, np.ndarray], batch: np.ndarray, stage_sizes: tuple[int, ...],
    num_classes: int, workdir: Path,
) -> tuple[np.ndarray, int]:
    from shared.models.flax_resnet import build_flax_resnet, flax_parameter_count, variable_shapes

    model = build_flax_resnet(num_classes, stage_sizes)
    variables = porting.state_dict_to_flax(state, variable_shapes(model, batch.shape[1]))
    logits = np.asarray(model.apply(variables, batch, train=False))
    return logits, flax_parameter_count(model, batch.shape[1])


def _onnx(
    state: Mapping[str, np.ndarray], batch: np.ndarray, stage_sizes: tuple[int, ...],
    num_classes: int, workdir: Path,
) -> tuple[np.ndarray, int]:
    from shared.models.torch_resnet import build_torch_resnet, torch_parameter_count
    from training.onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx, onnx_session

    model = build_torch_resnet(num_classes, stage_sizes)
    porting.state_dict_to_torch(state, model)
    path = export_onnx(model, workdir / "model.onnx", image_size=batch.shape[1])
    (logits,) = onnx_session(path).run([OUTPUT_NAME], {INPUT_NAME: batch})
    return logits, torch_parameter_count(model)  # the exported model's (BN is folded in ONNX)


RUNNERS: dict[str, Runner] = {
    "torch": _torch, "keras": _keras, "flax": _flax, "onnx": _onnx,
}


def compare_logits(
    logits: Mapping[str, np.ndarray],
    parameters: Mapping[str, int] | None = None,
    atol: float = PARITY_ATOL,
) -> dict[str, Any]:
    """JSON-able report over every pair of frameworks: max-abs logit difference, argmax
    agreement, parameter counts, and `passed` (all pairs within `atol`, same argmax)."""
    names = list(logits)
    argmax = {name: np.asarray(values).argmax(axis=-1) for name, values in logits.items()}
    pairs = {}
    for first, second in combinations(names, 2):
        diff = float(np.abs(np.asarray(logits[first]) - np.asarray(logits[second])).max())
        same = bool(np.array_equal(argmax[first], argmax[second]))
        pairs[f"{first}-{second}"] = {"max_abs": diff, "argmax_equal": same}
    passed = all(pair["max_abs"] <= atol and pair["argmax_equal"] for pair in pairs.values())
    return {
        "frameworks": names,
        "atol": atol,
        "pairs": pairs,
        "max_abs": max((pair["max_abs"] for pair in pairs.values()), default=0.0),
        "argmax_equal": all(pair["argmax_equal"] for pair in pairs.values()),
        "parameters": dict(parameters or {}),
        "logit_range": [float(min(np.min(v) for v in logits.values())),
                        float(max(np.max(v) for v in logits.values()))],
        "passed": passed,
    }


def parity_from_state_dict(
    state: Mapping[str, np.ndarray],
    batch: np.ndarray,
    *,
    stage_sizes: Sequence[int],
    num_classes: int,
    frameworks: Sequence[str] = FRAMEWORKS,
    atol: float = PARITY_ATOL,
    fp32_noise: bool = True,
) -> dict[str, Any]:
    """Port `state` into each framework, run `batch` (float32 NHWC) in eval mode, compare;
    with `fp32_noise`, also report torch's float32-vs-float64 difference (`torch_fp32_noise`)."""
    unknown = sorted(set(frameworks) - set(RUNNERS))
    if unknown:
        raise ValueError(f"unknown frameworks {unknown}; known: {list(RUNNERS)}")
    stage_sizes = parse_stage_sizes(stage_sizes)
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    logits, parameters = {}, {}
    with tempfile.TemporaryDirectory(prefix="parity-") as workdir:
        for name in frameworks:
            logits[name], parameters[name] = RUNNERS[name](
                state, batch, stage_sizes, num_classes, Path(workdir)
            )
    report = compare_logits(logits, parameters, atol)
    report.update(stage_sizes=list(stage_sizes), num_classes=num_classes,
                  batch_shape=list(batch.shape))
    if fp32_noise:
        report["fp32_noise"] = torch_fp32_noise(state, batch, stage_sizes, num_classes)
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """Plain-text table of a `compare_logits` report."""
    lines = [f"{'pair':<16}{'max-abs':>12}  argmax", "-" * 36]
    for pair, result in report["pairs"].items():
        same = "same" if result["argmax_equal"] else "DIFFERENT"
        lines.append(f"{pair:<16}{result['max_abs']:>12.3g}  {same}")
    lines.append("-" * 36)
    if "fp32_noise" in report:
        lines.append(f"{'torch fp32-fp64':<16}{report['fp32_noise']:>12.3g}  (round-off floor)")
    for name, count in report["parameters"].items():
        lines.append(f"params {name:<9}{count:>14,}")
    verdict = "PASS" if report["passed"] else "FAIL"
    lines.append(f"{verdict} (atol {report['atol']:g})")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.parity",
        description="Same weights, same batch: compare eval-mode logits of torch, Keras, "
        "Flax and ONNX Runtime.",
    )
    parser.add_argument("--stage-sizes", default=",".join(map(str, RESNET50)),
                        help="ResNet stage sizes or 'resnet50'/'tiny' (default: %(default)s)")
    parser.add_argument("--num-classes", type=int, default=5,
                        help="classifier outputs (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=224,
                        help="square input size in pixels (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for weights and batch (default: %(default)s)")
    parser.add_argument("--state-dict", type=Path, default=None,
                        help="torch state-dict file (e.g. model.pt) instead of random weights "
                        "(default: random weights with random BN statistics)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help="comma-separated subset (default: %(default)s)")
    parser.add_argument("--atol", type=float, default=PARITY_ATOL,
                        help="max-abs logit tolerance (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the report to this JSON file (default: none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before anything imports TensorFlow
    args = get_args_parser().parse_args(argv)
    stage_sizes = parse_stage_sizes(args.stage_sizes)
    if args.state_dict is None:
        state = random_state_dict(stage_sizes, args.num_classes, args.seed)
    else:
        import torch

        loaded = torch.load(args.state_dict, map_location="cpu", weights_only=True)
        state = porting.to_numpy_state(loaded)
    report = parity_from_state_dict(
        state, random_batch(args.batch, args.image_size, args.seed),
        stage_sizes=stage_sizes, num_classes=args.num_classes,
        frameworks=args.frameworks.split(","), atol=args.atol,
    )
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
