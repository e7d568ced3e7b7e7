"""Seeded model-artifact fixtures: one torch initialisation
(``training.parity.random_state_dict``) ported to Keras and Flax and exported to ONNX, each
in the real layout ``<root>/<dataset>/<artifact>/<version>/`` with a valid manifest.

Random weights time exactly like trained ones in fp32, so the bench's in-process baselines
and serving-overhead study measure ResNet-50 with them, and the tests of services, bench and
loadtest serve tiny ones. They live in training because writing them is training's work
(porting, ONNX export, manifests).
A derived (int8) artifact is quantised from the ``onnx`` one by ``training.quantize``,
calibrated on seeded random images: good for timing and tests, not for accuracy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from shared.datasets import get_dataset_spec
from shared.imaging import IMAGENET_MEAN, IMAGENET_STD
from shared.manifest import InputSpec, Manifest, write_manifest
from shared.models import RESNET50, architecture_dict, parse_stage_sizes
from shared.runtimes import get_artifact, get_runtime, runtime_names

RUNTIMES = runtime_names()
CALIBRATION_IMAGES = 16


State = dict[str, np.ndarray]
Written = tuple[str, str, int]
"""(file name, framework version, trainable parameter count)."""
Writer = Callable[[State, Path, tuple[int, ...], int, int, int], Written]
"""(numpy state dict, model_dir, stage_sizes, num_classes, image_size, seed) -> Written."""


def _write_torch(state: State, model_dir: Path, stages: tuple[int, ...], classes: int,
                 size: int, seed: int) -> Written:
    import torch

    from shared.models.torch_resnet import build_torch_resnet, torch_parameter_count
    from training.porting import state_dict_to_torch

    model = build_torch_resnet(classes, stages)
    state_dict_to_torch(state, model)
    torch.save(model.state_dict(), model_dir / "model.pt")
    return "model.pt", torch.__version__, torch_parameter_count(model)


def _write_tensorflow(state: State, model_dir: Path, stages: tuple[int, ...], classes: int,
                      size: int, seed: int) -> Written:
    import tensorflow as tf

    from shared.models.keras_resnet import build_keras_resnet, keras_parameter_count
    from training.porting import state_dict_to_keras

    model = build_keras_resnet(classes, size, stages)
    state_dict_to_keras(state, model)
    model.save(model_dir / "model.keras")
    return "model.keras", tf.__version__, keras_parameter_count(model)


def _write_jax(state: State, model_dir: Path, stages: tuple[int, ...], classes: int,
               size: int, seed: int) -> Written:
    import jax

    from shared.models.flax_resnet import (
        build_flax_resnet,
        flax_parameter_count,
        init_variables,
        save_flax_variables,
    )
    from training.porting import state_dict_to_flax

    model = build_flax_resnet(classes, stages)
    variables = state_dict_to_flax(state, init_variables(model, size, seed))
    save_flax_variables(model_dir / "params.msgpack", variables)
    return "params.msgpack", jax.__version__, flax_parameter_count(model, size)


def _write_onnx(state: State, model_dir: Path, stages: tuple[int, ...], classes: int,
                size: int, seed: int) -> Written:
    import onnxruntime

    from shared.models.torch_resnet import build_torch_resnet, torch_parameter_count
    from training.onnx_export import export_onnx
    from training.porting import state_dict_to_torch

    model = build_torch_resnet(classes, stages)
    state_dict_to_torch(state, model)
    export_onnx(model, model_dir / "model.onnx", image_size=size)
    return "model.onnx", onnxruntime.__version__, torch_parameter_count(model)


WRITERS: dict[str, Writer] = {  # by artifact kind (shared.runtimes.ARTIFACTS)
    "torch": _write_torch, "tensorflow": _write_tensorflow, "jax": _write_jax,
    "onnx": _write_onnx,
}


def write_artifacts(
    root: Path, *, dataset: str, stage_sizes: Sequence[int] = RESNET50, image_size: int = 224,
    seed: int = 0, version: str = "1", runtimes: Sequence[str] = RUNTIMES,
    thresholds: Sequence[float] = (),
) -> dict[str, Path]:
    """Write the artifact each runtime serves, ``<root>/<dataset>/<artifact>/<version>/``, from
    one seeded torch init, with manifests (each artifact once: ONNX Runtime and OpenVINO
    share one); returns {runtime: model_dir}. ``thresholds``: a multilabel dataset's
    per-class decision thresholds for the manifests (default: none, i.e. 0.5 each)."""
    from training.parity import random_state_dict

    spec = get_dataset_spec(dataset)
    stages = parse_stage_sizes(stage_sizes)
    state = random_state_dict(stages, len(spec.class_names), seed)
    written: dict[str, Path] = {}
    kinds = [get_runtime(r).artifact for r in runtimes]
    parents = [get_artifact(k).derived_from for k in kinds if get_artifact(k).derived_from]
    for artifact in dict.fromkeys([*parents, *kinds]):
        model_dir = artifact_dir(root, dataset, artifact, version)
        if get_artifact(artifact).derived_from:
            written[artifact] = _write_derived(written[get_artifact(artifact).derived_from],
                                               model_dir, artifact, dataset, seed)
            continue
        model_dir.mkdir(parents=True, exist_ok=True)
        file_name, framework_version, params = WRITERS[artifact](
            state, model_dir, stages, len(spec.class_names), image_size, seed)
        manifest = Manifest.for_model_file(
            model_dir, file_name, dataset=dataset, task=spec.task,
            class_names=list(spec.class_names), framework=artifact,
            framework_version=framework_version, architecture=architecture_dict(stages),
            input=InputSpec(size=image_size, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                            raw_capture=spec.raw_capture),
            parameter_count=params,
            training={"epochs": 0, "seed": seed, "init": "random"}, thresholds=list(thresholds),
            provenance={"ported_from": "torch", "source": "training.parity.random_state_dict"},
        )
        write_manifest(model_dir, manifest)
        written[artifact] = model_dir
    return {runtime: written[get_runtime(runtime).artifact] for runtime in runtimes}


def _write_derived(parent_dir: Path, model_dir: Path, artifact: str, dataset: str, seed: int
                   ) -> Path:
    """Quantise ``parent_dir`` into ``model_dir``, calibrated on random uint8 images."""
    from shared.imaging import PreprocessSpec, normalize
    from shared.manifest import read_manifest
    from training.quantize import quantize_artifact

    if model_dir.exists():
        shutil.rmtree(model_dir)
    size = read_manifest(parent_dir).input.size
    pixels = np.random.default_rng(seed).integers(0, 256, (CALIBRATION_IMAGES, size, size, 3),
                                                  np.uint8)
    quantize_artifact(parent_dir, model_dir, artifact, normalize(pixels, PreprocessSpec(size)),
                      {"dataset": dataset, "split": "random uint8 images (bench/test only)",
                       "images": CALIBRATION_IMAGES, "seed": seed})
    return model_dir


def artifact_dir(root: Path, dataset: str, artifact: str, version: str) -> Path:
    return Path(root) / dataset / artifact / version


def runtime_model_dir(root: Path, dataset: str, runtime: str, version: str) -> Path:
    """Where ``runtime``'s model lives: the directory of the artifact it serves."""
    return artifact_dir(root, dataset, get_runtime(runtime).artifact, version)
