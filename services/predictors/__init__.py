"""Predictors by runtime name, imported only when chosen.

A service process imports exactly one framework (a TensorFlow service never pays for
importing torch): the runtime table (:mod:`shared.runtimes`) holds each predictor as a dotted
path, and :func:`load_predictor` imports the one it is asked for. A runtime serves an artifact
kind, whoever wrote it: the OpenVINO and ONNX Runtime predictors both read ``model.onnx``.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path

from services.predictors.base import Predictor
from shared.manifest import MANIFEST_FILE, Manifest, ManifestError, read_manifest
from shared.runtimes import Runtime, get_runtime

__all__ = ["Predictor", "check_artifact", "load_predictor", "predictor_class"]


def predictor_class(name: str) -> type[Predictor]:
    """Import and return the predictor class of runtime ``name``, bound to its row (a
    variant's class is its base predictor with the variant's settings)."""
    row = get_runtime(name)
    module_name, class_name = row.predictor.split(":")
    return _bound(getattr(importlib.import_module(module_name), class_name), row)


@cache
def _bound(cls: type[Predictor], row: Runtime) -> type[Predictor]:
    return cls.for_runtime(row)


def check_artifact(runtime: Runtime, manifest: Manifest, model_dir: Path) -> None:
    """Refuse a model directory whose artifact kind the runtime does not read."""
    if manifest.framework != runtime.artifact:
        raise ManifestError(
            f"the {runtime.name} runtime serves {runtime.artifact} artifacts; {model_dir} "
            f"holds a {manifest.framework!r} one", field="framework",
            path=Path(model_dir) / MANIFEST_FILE)


def load_predictor(
    name: str, model_dir: Path, manifest: Manifest | None = None, *, threads: int | None = None
) -> Predictor:
    """Build runtime ``name``'s predictor for ``model_dir`` (manifest read from it if not
    given), after checking that the runtime reads that artifact."""
    manifest = read_manifest(model_dir) if manifest is None else manifest
    check_artifact(get_runtime(name), manifest, Path(model_dir))
    return predictor_class(name)(Path(model_dir), manifest, threads=threads)
