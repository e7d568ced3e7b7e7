"""The runtime table: every runtime a service can serve a model with, and every artifact kind.

One row per runtime is the whole registration: the services' ``--framework`` choices and
default ports, the predictor that is imported, the OIP platform string, the comparison run's
runtimes, colours and recorded package versions, the Locust user classes, the service image's
pyproject extra and the deployment files all derive from :data:`RUNTIMES` (the YAML and
terraform files, which cannot import Python, are checked against it by tests).

A runtime serves an **artifact**, not the framework that wrote it: the artifact kind names the
directory ``models/<dataset>/<artifact>/<version>/``, the native file, and the manifest's
``framework`` (who wrote it). ONNX Runtime and OpenVINO both serve the ``onnx`` artifact. A
*derived* artifact (``onnx-int8``, ``openvino-int8``: ``python -m training quantize``) is made
from another one, which its manifest's ``provenance`` names.

A **variant** is a row too: a runtime at another precision or compiled (``torch-bf16``,
``openvino-int8``, ``tensorflow-xla``, ...), chosen like any runtime
(``python -m services --framework openvino-int8``). It is a setting of its base runtime's
predictor (``precision``, ``compile``), not another predictor, and ``variant_of`` names the
fp32 row it is compared with (its parent in the accuracy gate; its image is the base's). The
deployment files (compose, Prometheus, terraform) carry the base rows; a variant is served with
its base's image and ``--framework <variant>``.

More rows come from modules named in ``VERSUS_RUNTIME_MODULES`` (comma-separated, each with
a ``RUNTIMES`` sequence of :class:`Runtime`), so a runtime can be added without editing this
file; every process that reads the table (service, bench, Locust) sees the same rows.

This module imports nothing but the standard library: ``python -m shared.runtimes`` runs in a
bare image build (``extra NAME ACCELERATOR`` prints the pyproject extra to install).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache

MODULES_VARIABLE = "VERSUS_RUNTIME_MODULES"
ACCELERATORS = ("cpu", "gpu")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
"""What a row asks its runtime to compute in, and what a predictor reports it really ran:
bf16/fp16 compute on fp32 weights (autocast, an inference precision hint), int8 a quantised
artifact."""


@dataclass(frozen=True)
class Artifact:
    """A kind of model artifact: ``models/<dataset>/<name>/<version>/<file_name>``."""

    name: str
    """Directory name and ``manifest.framework``: who wrote the file."""
    file_name: str
    format: str
    """What the file is, in words."""
    derived_from: str = ""
    """The artifact kind this one is made from (``python -m training quantize``); '' if none."""


@dataclass(frozen=True)
class Runtime:
    """One runtime a service can run: what to import, what it reads, how it is deployed."""

    name: str
    """``--framework`` value, metric label, compose service and Locust tag."""
    display_name: str
    predictor: str
    """``module:Class`` of its predictor, imported only in the process that serves it."""
    artifact: str
    """The :class:`Artifact` it serves."""
    extra: str
    """pyproject extra that installs it on a CPU host."""
    gpu_extra: str
    """... and on a GPU host (the same where one build serves both)."""
    port: int
    """Default port of its service (compose, terraform, Locust, ``python -m services``)."""
    platform: str
    """KServe/Triton platform string reported by ``GET /v2/models/<name>``."""
    packages: tuple[str, ...]
    """Distributions whose versions a comparison run records."""
    color: str
    """Its colour in the report's plots."""
    precision: str = "fp32"
    """The precision asked of the runtime (:data:`PRECISIONS`); int8 rows serve an int8
    artifact. The predictor reports what it really ran (``Predictor.precision``)."""
    compile: bool = False
    """Compile the model ahead of serving (torch.compile, XLA ``jit_compile``): the predictor
    then serves fixed batch buckets, each compiled at warm-up."""
    variant_of: str = ""
    """The base row this variant is a setting of ('' for a base runtime): its fp32 parent in
    the accuracy gate, and the deployment (image, extra) it shares."""

    @property
    def is_variant(self) -> bool:
        return bool(self.variant_of)

    def extra_for(self, accelerator: str) -> str:
        if accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator must be one of {ACCELERATORS}, got {accelerator!r}")
        return self.gpu_extra if accelerator == "gpu" else self.extra


ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (
    Artifact("torch", "model.pt", "torch state dict"),
    Artifact("tensorflow", "model.keras", "Keras v3 archive"),
    Artifact("jax", "params.msgpack", "Flax variables, msgpack"),
    Artifact("onnx", "model.onnx", "ONNX graph exported from torch, dynamic batch axis"),
    Artifact("onnx-int8", "model.onnx", "int8 QDQ ONNX graph: onnxruntime.quantization static, "
             "per-channel U8S8, calibrated on training images", derived_from="onnx"),
    Artifact("openvino-int8", "model.onnx", "int8 QDQ ONNX graph: NNCF post-training "
             "quantisation, calibrated on training images", derived_from="onnx"),
)}

BUILTIN_RUNTIMES: tuple[Runtime, ...] = (
    Runtime("torch", "PyTorch", "services.predictors.torch:TorchPredictor", "torch",
            "torch", "torch", 8001, "pytorch_statedict", ("torch", "torchvision"), "#d62728"),
    Runtime("tensorflow", "TensorFlow/Keras", "services.predictors.tensorflow:TensorFlowPredictor",
            "tensorflow", "tensorflow", "tensorflow", 8002, "tensorflow_keras",
            ("tensorflow", "keras"), "#ff7f0e"),
    Runtime("jax", "JAX/Flax", "services.predictors.jax:JaxPredictor", "jax",
            "jax", "jax-gpu", 8003, "jax_flax", ("jax", "jaxlib", "flax"), "#1f77b4"),
    Runtime("onnx", "ONNX Runtime", "services.predictors.onnx:OnnxPredictor", "onnx",
            "onnx", "onnx-gpu", 8004, "onnxruntime_onnx", ("onnxruntime", "onnx"), "#2ca02c"),
    Runtime("openvino", "OpenVINO", "services.predictors.openvino:OpenVinoPredictor", "onnx",
            "openvino", "openvino", 8005, "openvino_onnx", ("openvino",), "#9467bd"),
)

# Variants: a setting of a base row's predictor. Ports: 80<k><n>, n the base's last digit.
_BASE = {r.name: r for r in BUILTIN_RUNTIMES}


def variant(base: str, suffix: str, display: str, port: int, color: str, *,
            precision: str = "fp32", compile: bool = False, artifact: str = "") -> Runtime:
    """The row ``<base>-<suffix>``: the base row with another precision/compile setting."""
    row = _BASE[base]
    return replace(row, name=f"{base}-{suffix}", display_name=f"{row.display_name} {display}",
                   port=port, color=color, precision=precision, compile=compile,
                   artifact=artifact or row.artifact, variant_of=base)


BUILTIN_VARIANTS: tuple[Runtime, ...] = (
    variant("torch", "bf16", "bf16", 8011, "#ff9896", precision="bf16"),
    variant("torch", "compile", "compiled", 8021, "#8c1a1b", compile=True),
    variant("tensorflow", "xla", "XLA", 8012, "#ffbb78", compile=True),
    variant("jax", "bf16", "bf16", 8013, "#aec7e8", precision="bf16"),
    variant("onnx", "int8", "int8", 8014, "#98df8a", precision="int8", artifact="onnx-int8"),
    variant("openvino", "bf16", "bf16", 8015, "#c5b0d5", precision="bf16"),
    variant("openvino", "int8", "int8", 8025, "#5e3c99", precision="int8",
            artifact="openvino-int8"),
)


class RuntimeTableError(ValueError):
    """An unknown runtime or artifact, or a table that contradicts itself."""


def _plugin_rows(modules: str) -> list[Runtime]:
    rows: list[Runtime] = []
    for name in filter(None, (m.strip() for m in modules.split(","))):
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise RuntimeTableError(f"{MODULES_VARIABLE}: cannot import {name!r}: {exc}"
                                    ) from exc
        rows += list(getattr(module, "RUNTIMES", ()))
    return rows


def _check(rows: Sequence[Runtime]) -> dict[str, Runtime]:
    table: dict[str, Runtime] = {}
    for row in rows:
        if not isinstance(row, Runtime):
            raise RuntimeTableError(f"{MODULES_VARIABLE}: {row!r} is not a "
                                    "shared.runtimes.Runtime")
        clash = next((r.name for r in table.values() if r.port == row.port), None)
        if row.name in table or clash:
            raise RuntimeTableError(f"runtime {row.name!r}: name or port {row.port} already "
                                    f"used by {clash or row.name!r}")
        if row.artifact not in ARTIFACTS:
            raise RuntimeTableError(f"runtime {row.name!r} serves unknown artifact "
                                    f"{row.artifact!r}; known: {sorted(ARTIFACTS)}")
        if row.precision not in PRECISIONS:
            raise RuntimeTableError(f"runtime {row.name!r}: precision {row.precision!r} is not "
                                    f"one of {PRECISIONS}")
        base = table.get(row.variant_of)
        if row.variant_of and (base is None or base.is_variant or (
                base.predictor, base.extra, base.gpu_extra) != (
                row.predictor, row.extra, row.gpu_extra)):
            raise RuntimeTableError(f"variant {row.name!r}: variant_of {row.variant_of!r} must "
                                    "be an earlier base row with the same predictor and extras")
        table[row.name] = row
    return table


@cache
def _table(modules: str) -> dict[str, Runtime]:
    return _check([*BUILTIN_RUNTIMES, *BUILTIN_VARIANTS, *_plugin_rows(modules)])


def runtimes() -> dict[str, Runtime]:
    """Every runtime by name, in table order: the built-in rows, then the plugin modules'."""
    return _table(os.environ.get(MODULES_VARIABLE, ""))


def runtime_names() -> tuple[str, ...]:
    return tuple(runtimes())


def base_runtimes() -> dict[str, Runtime]:
    """The rows that are no variant: what the deployment files (compose, Prometheus,
    terraform) run."""
    return {name: row for name, row in runtimes().items() if not row.is_variant}


def get_runtime(name: str) -> Runtime:
    """The row called ``name``, or an error listing the known ones."""
    try:
        return runtimes()[name]
    except KeyError:
        raise RuntimeTableError(f"unknown runtime {name!r}; choose one of "
                                f"{', '.join(runtime_names())}") from None


def get_artifact(name: str) -> Artifact:
    try:
        return ARTIFACTS[name]
    except KeyError:
        raise RuntimeTableError(f"unknown artifact {name!r}; choose one of "
                                f"{', '.join(ARTIFACTS)}") from None


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.runtimes", description=__doc__
                                     .split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("names", help="print the runtime names, one a line")
    sub.add_parser("json", help="print the table as JSON")
    extra = sub.add_parser("extra", help="print the pyproject extra of a runtime's image")
    extra.add_argument("runtime")
    extra.add_argument("accelerator", choices=ACCELERATORS)
    args = parser.parse_args(argv)
    try:
        if args.command == "names":
            print("\n".join(runtime_names()))
        elif args.command == "json":
            print(json.dumps({"runtimes": [asdict(r) for r in runtimes().values()],
                              "artifacts": [asdict(a) for a in ARTIFACTS.values()]}, indent=2))
        else:
            print(get_runtime(args.runtime).extra_for(args.accelerator))
    except RuntimeTableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
