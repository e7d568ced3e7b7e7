"""Predictor registry: runtime name -> ``module:Class``, imported only when chosen.

A service process imports exactly one framework (a TensorFlow service never pays for
importing torch), so the registry holds dotted paths, not classes.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from services.predictors.base import Predictor
from shared.manifest import Manifest, read_manifest

PREDICTORS: dict[str, str] = {
    "torch": "services.predictors.torch:TorchPredictor",
    "tensorflow": "services.predictors.tensorflow:TensorFlowPredictor",
    "jax": "services.predictors.jax:JaxPredictor",
    "onnx": "services.predictors.onnx:OnnxPredictor",
}

__all__ = ["PREDICTORS", "Predictor", "load_predictor", "predictor_class"]


def predictor_class(name: str) -> type[Predictor]:
    """Import and return the predictor class registered as ``name``."""
    try:
        module_name, class_name = PREDICTORS[name].split(":")
    except KeyError:
        known = sorted(PREDICTORS)
        raise ValueError(f"unknown framework {name!r}; choose one of {known}") from None
    return getattr(importlib.import_module(module_name), class_name)


def load_predictor(
    name: str, model_dir: Path, manifest: Manifest | None = None, *, threads: int | None = None
) -> Predictor:
    """Build the ``name`` predictor for ``model_dir`` (manifest read from it if not given)."""
    manifest = read_manifest(model_dir) if manifest is None else manifest
    return predictor_class(name)(Path(model_dir), manifest, threads=threads)
