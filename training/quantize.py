"""`python -m training quantize`: post-training int8 quantisation of an ``onnx`` artifact into a
derived artifact, calibrated on training images.

    python -m training quantize --dataset bloodmnist --data data/bloodmnist_64.npz \\
        --model models/bloodmnist/onnx/1 --to openvino-int8 --calibration-images 300 --seed 0

Two derived artifact kinds (:data:`shared.runtimes.ARTIFACTS`), each one self-contained
``model.onnx`` (a QDQ graph: QuantizeLinear/DequantizeLinear around the int8 layers), so the
manifest's sha256 covers the whole model:

- ``onnx-int8``: ``onnxruntime.quantization.quantize_static``, QDQ format, per-channel int8
  weights, uint8 activations (U8S8), MinMax calibration; served by the ``onnx-int8`` runtime
  (ONNX Runtime fuses QDQ into int8 kernels). U8S8, not ORT's default S8S8: on x86 its MLAS
  kernels run U8S8 natively (VPMADDUBSW, or VNNI's VPDPBUSD, which does not saturate) and
  S8S8 about 3x slower here (ResNet-50 on an AVX512-VNNI EPYC, 2 threads: S8S8 ran at fp32's
  speed). On a CPU without VNNI, U8S8 can saturate (see ORT's quantization docs).
- ``openvino-int8``: NNCF ``nncf.quantize`` on the ONNX graph (its ONNX backend, preset
  MIXED: symmetric weights, asymmetric activations; CPU target); served by the
  ``openvino-int8`` runtime (OpenVINO compiles the QDQ graph to int8 kernels). MIXED, not
  PERFORMANCE: on the demo's trained BloodMNIST model (400 test images, fp32 top-1 0.805)
  PERFORMANCE kept 0.790 (98.1 %, failing the 99 % gate) and MIXED 0.800 (99.4 %), with
  300 or 1000 calibration images alike; ResNet-50 at 224 px ran at the same speed with
  either (25.1 vs 24.7 img/s, 2 threads, batch 8).

Calibration images are a seeded subset of the dataset's **training** split, read like training
reads it (``shared.datasets.load_dataset`` at the model's input size) and normalised by the
same ``shared.imaging.normalize`` the services apply. The manifest's ``provenance`` names the
parent artifact (path, sha256, version), the tool and its version, and the calibration set
(dataset, split, images, seed); its ``test_metrics`` stay empty: the served accuracy gate
measures the quantised model, nothing is copied from the parent.

Output: ``<out>/<dataset>/<kind>/<version>/`` (default: next to the parent, same version).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shared.datasets import DATASET_NAMES, DatasetError, load_dataset
from shared.imaging import PreprocessSpec, normalize
from shared.manifest import (
    InputSpec,
    Manifest,
    ManifestError,
    read_manifest,
    verify_model_file,
    write_manifest,
)
from shared.runtimes import ARTIFACTS, RuntimeTableError, get_artifact

PROG = "python -m training quantize"
KINDS = tuple(name for name, a in ARTIFACTS.items() if a.derived_from)
DEFAULT_CALIBRATION_IMAGES = 300
CALIBRATION_BATCH = 8
SPLIT = "train"


class QuantizeError(ValueError):
    """A bad command line, parent artifact or calibration set: one line, exit code 2."""


# --------------------------------------------------------------------------- the two tools


def _onnxruntime_int8(source: Path, target: Path, images: np.ndarray) -> dict[str, Any]:
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"]
                                        ).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(np.array_split(images, max(1, len(images) // CALIBRATION_BATCH)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    settings = {"quant_format": "QDQ", "per_channel": True, "activation_type": "QUInt8",
                "weight_type": "QInt8", "calibrate_method": "MinMax", "pre_process": True}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return {"name": "onnxruntime.quantization", "version": onnxruntime.__version__,
            "method": "quantize_static", **settings}


def _nncf_int8(source: Path, target: Path, images: np.ndarray) -> dict[str, Any]:
    import nncf
    import onnx

    model = onnx.load(str(source))
    name = model.graph.input[0].name
    dataset = nncf.Dataset(list(images[:, None]), lambda image: {name: image})
    quantized = nncf.quantize(model, dataset, subset_size=len(images),
                              preset=nncf.QuantizationPreset.MIXED,
                              target_device=nncf.TargetDevice.CPU)
    onnx.save(quantized, str(target))
    return {"name": "nncf", "version": nncf.__version__, "method": "nncf.quantize",
            "backend": "onnx", "preset": "mixed", "target_device": "CPU",
            "onnx": onnx.__version__}


TOOLS = {"onnx-int8": _onnxruntime_int8, "openvino-int8": _nncf_int8}


# --------------------------------------------------------------------------- the artifact


def quantize_artifact(parent_dir: Path, out_dir: Path, kind: str, images: np.ndarray,
                      calibration: dict[str, Any]) -> Manifest:
    """Quantise the (sha256-verified) parent artifact in ``parent_dir`` into ``out_dir`` as
    ``kind``, calibrated on ``images`` (preprocessed float32 NHWC), and write its manifest;
    ``calibration`` describes the images (dataset, split, images, seed) for provenance."""
    artifact = get_artifact(kind)
    if kind not in TOOLS:
        raise QuantizeError(f"--to {kind}: not a quantised artifact kind; choose one of "
                            f"{', '.join(TOOLS)}")
    parent = read_manifest(parent_dir)
    if parent.framework != artifact.derived_from:
        raise QuantizeError(f"--model {parent_dir}: {kind} is made from an "
                            f"{artifact.derived_from!r} artifact, this one is "
                            f"{parent.framework!r}")
    source = verify_model_file(parent_dir, parent)
    size = parent.input.size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or not len(images):
        raise QuantizeError(f"calibration images must be (N, {size}, {size}, 3), got "
                            f"{images.shape}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise QuantizeError(f"{out_dir} already exists; pick another --version")
    out_dir.mkdir(parents=True, exist_ok=True)
    tool = TOOLS[kind](source, out_dir / artifact.file_name,
                       np.ascontiguousarray(images, np.float32))
    fields = {name: getattr(parent, name) for name in
              ("dataset", "task", "class_names", "architecture", "parameter_count", "training",
               "thresholds")}
    manifest = Manifest.for_model_file(
        out_dir, artifact.file_name, framework=kind, framework_version=tool["version"],
        input=InputSpec(**parent.input.to_dict()),
        provenance={
            "derived_from": {"artifact": parent.framework, "path": str(source),
                             "sha256": parent.sha256, "version": Path(parent_dir).name},
            "tool": tool,
            "calibration": calibration,
            "test_metrics": "not measured here: the served accuracy gate measures this model",
        },
        **fields,
    )
    write_manifest(out_dir, manifest)
    return manifest


def calibration_images(dataset: str, data: Path, spec: PreprocessSpec, count: int, seed: int
                       ) -> tuple[np.ndarray, dict[str, Any]]:
    """``count`` training images (a seeded subset, dataset order) preprocessed for the model,
    and their description for the manifest."""
    train = load_dataset(dataset, data, spec.size)[SPLIT]
    chosen = np.sort(np.random.default_rng(seed).permutation(len(train))[:count])
    images = normalize(train.images[chosen], spec)
    return images, {"dataset": dataset, "data": str(data), "split": SPLIT,
                    "images": len(chosen), "seed": seed,
                    "preprocessing": "shared.imaging.normalize"}


# --------------------------------------------------------------------------- command line


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--dataset", required=True, choices=DATASET_NAMES, help="dataset name (required)")
    add("--data", required=True, type=Path,
        help="dataset path whose training split calibrates (required)")
    add("--model", required=True, type=Path,
        help="the parent artifact: models/<dataset>/onnx/<version> (required)")
    add("--to", required=True, choices=KINDS, help="derived artifact kind (required)")
    add("--calibration-images", type=_positive, default=DEFAULT_CALIBRATION_IMAGES,
        help="training images to calibrate on, a seeded subset (default: "
        f"{DEFAULT_CALIBRATION_IMAGES}; fewer if the split is smaller)")
    add("--seed", type=int, default=0, help="seed of the calibration subset (default: 0)")
    add("--out", type=Path, default=None,
        help="artifact root: <out>/<dataset>/<kind>/<version>/ (default: the parent's root)")
    add("--version", default=None, help="version directory (default: the parent's version)")
    return parser


def run(args: argparse.Namespace) -> Path:
    parent = read_manifest(args.model)
    if parent.dataset != args.dataset:
        raise QuantizeError(f"--model {args.model} is a {parent.dataset} model, not "
                            f"{args.dataset}")
    if not args.data.exists():
        raise QuantizeError(f"--data {args.data}: no such file or directory")
    spec = PreprocessSpec.from_manifest_input(parent.input.to_dict())
    images, calibration = calibration_images(args.dataset, args.data, spec,
                                             args.calibration_images, args.seed)
    root = args.out if args.out is not None else args.model.resolve().parents[2]
    out_dir = root / args.dataset / args.to / (args.version or args.model.resolve().name)
    manifest = quantize_artifact(args.model, out_dir, args.to, images, calibration)
    print(f"{args.to}: wrote {out_dir} (sha256 {manifest.sha256[:12]}, "
          f"{manifest.size_bytes / 1e6:.1f} MB, calibrated on {len(images)} {SPLIT} images)",
          file=sys.stderr)
    return out_dir


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        run(args)
    except (QuantizeError, ManifestError, DatasetError, RuntimeTableError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"{PROG}: error: {first_line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
