"""`python -m training`: train ResNet models in torch, TensorFlow and/or JAX with one neutral
loop, write their artifacts, and (for `--framework all`) the comparison table.

    python -m training --framework all --dataset bloodmnist --data data/bloodmnist_64.npz \\
        --image-size 64 --epochs 15 --init random --seed 0
    python -m training --framework torch --dataset dr --data data/dr-synth \\
        --init imagenet=weights/resnet50-11ad3fa6.pth --precision bf16
    python -m training parity ...      (delegates to training.parity)
    python -m training divergence ...  (delegates to training.divergence)
    python -m training quantize ...    (int8 artifacts from an onnx one: training.quantize)

Every framework starts from the same weights: `--init random` draws torchvision's init once in
torch under `--seed` and ports it; `--init imagenet=PATH` ports torchvision's ImageNet state
dict with a fresh seeded head; `--resume DIR` starts from a saved model of any framework.

Image size: at least 32 and a multiple of 32. ResNet downsamples by 32, so smaller inputs
collapse to nothing, and multiples of 32 keep every stride-2 layer on an even input, where
torch, Keras and Flax padding agree exactly.

Bad input (unknown dataset/framework, missing data, unsupported size, corrupt or mismatched
init file, resume into another architecture) prints one `error:` line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.datasets import (
    DATASET_NAMES,
    DatasetError,
    DatasetSpec,
    ImageSet,
    class_weights,
    dataset_spec_for,
    load_dataset,
)
from shared.imaging import PreprocessSpec
from shared.manifest import InputSpec, Manifest, ManifestError, read_manifest, verify_model_file
from shared.models import RESNET50, architecture_dict, parse_stage_sizes
from shared.processes import usable_cpu_count

from .backends.base import (
    ADAM_BETAS,
    ADAM_EPSILON,
    BACKENDS,
    PRECISIONS,
    Backend,
    ModelConfig,
    StateDict,
    get_backend,
    limit_cpus,
)
from .loop import (
    DEFAULT_MIN_LR,
    DEFAULT_PLATEAU_FACTOR,
    FitConfig,
    evaluate_split,
    fit,
    positive_weights,
    validation_thresholds,
)
from .model_dirs import (
    HistoryWriter,
    ModelDirError,
    create_model_dir,
    next_version,
    write_model_artifact,
    write_onnx_artifact,
)
from .porting import PortingError
from .report import manifest_row, markdown_table, write_comparison

PROG = "python -m training"
FRAMEWORKS = tuple(BACKENDS)
ALL = "all"
MIN_IMAGE_SIZE = 32
IMAGE_SIZE_MULTIPLE = 32
RANDOM_INIT = "random"
IMAGENET_PREFIX = "imagenet="
CLASS_WEIGHTS = ("none", "balanced")
POS_WEIGHTS = ("none", "balanced")
TF_LOG_LEVEL = "2"
"""TensorFlow's C++ log level for the CLI: errors only (no oneDNN/CPU-feature notices)."""
SUBCOMMANDS = {"parity": "training.parity", "divergence": "training.divergence",
               "quantize": "training.quantize"}
"""`python -m training <name> ...` hands the remaining arguments to `<module>.main`."""


class UsageError(ValueError):
    """A bad command line or input file: reported as one line, exit code 2."""


USER_ERRORS = (UsageError, DatasetError, ManifestError, PortingError, ModelDirError)


# --------------------------------------------------------------------------- arguments


def _stage_sizes(text: str) -> tuple[int, ...]:
    try:
        return parse_stage_sizes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _number(kind: type, *, above: float = 0, below: float | None = None,
            inclusive: bool = False) -> Any:
    """argparse type: a `kind` value > `above` (>= with `inclusive`) and < `below`."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value < above or (value == above and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {above}, "
                                             f"got {text}")
        if below is not None and value >= below:
            raise argparse.ArgumentTypeError(f"must be < {below}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _positive(kind: type) -> Any:
    return _number(kind)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train the same ResNet in PyTorch, TensorFlow and JAX with one neutral loop "
        f"(subcommand: {', '.join(SUBCOMMANDS)}).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--framework", required=True, choices=[*FRAMEWORKS, ALL],
        help="framework to train; 'all' trains each in turn plus the RandomForest baseline and "
        "writes a comparison table (required)")
    add("--dataset", required=True, choices=DATASET_NAMES, help="dataset name (required)")
    add("--data", required=True, type=Path,
        help="dataset path: DR directory or BloodMNIST .npz/directory (required)")
    add("--image-size", type=int, default=224,
        help=f"square input side, >= {MIN_IMAGE_SIZE} and a multiple of {IMAGE_SIZE_MULTIPLE} "
        "(default: 224)")
    add("--epochs", type=_positive(int), default=15, help="maximum epochs (default: 15)")
    add("--batch-size", type=_positive(int), default=32, help="batch size (default: 32)")
    add("--lr", type=_positive(float), default=1e-4, help="Adam learning rate (default: 1e-4)")
    add("--init", default=RANDOM_INIT,
        help="'random' (torchvision init drawn once in torch under --seed, ported to every "
        "framework) or 'imagenet=PATH' (torchvision ResNet-50 state dict) (default: random)")
    add("--resume", type=Path, default=None,
        help="start from the weights of a saved model directory (any framework) instead of "
        "--init (default: none)")
    add("--seed", type=_number(int, inclusive=True), default=0,
        help="seed for init, data order and augmentation (default: 0)")
    add("--stage-sizes", type=_stage_sizes, default=RESNET50,
        help="blocks per stage, '3,4,6,3' = ResNet-50, or 'tiny' = 1,1,1,1 (default: 3,4,6,3)")
    add("--patience", type=_number(int, inclusive=True), default=5,
        help="early stopping: epochs without val-loss improvement; 0 disables (default: 5)")
    add("--plateau-patience", type=_positive(int), default=2,
        help="ReduceLROnPlateau: epochs without improvement before the LR drops (default: 2)")
    add("--plateau-factor", type=_number(float, below=1.0), default=DEFAULT_PLATEAU_FACTOR,
        help=f"ReduceLROnPlateau LR multiplier (default: {DEFAULT_PLATEAU_FACTOR})")
    add("--min-lr", type=_number(float, inclusive=True), default=DEFAULT_MIN_LR,
        help=f"lowest learning rate the plateau schedule goes to (default: {DEFAULT_MIN_LR})")
    add("--class-weights", choices=CLASS_WEIGHTS, default="none",
        help="'balanced' weights the loss by inverse class frequency, for imbalanced DR "
        "(default: none)")
    add("--pos-weight", choices=POS_WEIGHTS, default="none",
        help="multilabel: 'balanced' weighs each finding's positives in the BCE loss by its "
        "negatives/positives ratio in the training split, for rare findings (default: none)")
    add("--no-augment", dest="augment", action="store_false",
        help="train without augmentation (default: augment)")
    add("--precision", choices=PRECISIONS, default="fp32",
        help="fp32, or bf16 mixed precision (float32 weights, bfloat16 compute) (default: fp32)")
    add("--threads", type=_positive(int), default=None,
        help="intra-op threads of every framework; fewer than the usable CPUs also pins the "
        "process to that many CPUs (default: the usable CPUs)")
    add("--max-images", type=_positive(int), default=None,
        help="use at most this many images per split, a seeded subset, for quick runs "
        "(default: all)")
    add("--version", default=None,
        help="artifact version directory (default: the next free integer)")
    add("--out", type=Path, default=Path("models"),
        help="artifact root: <out>/<dataset>/<framework>/<version>/ (default: models)")
    add("--export-onnx", action=argparse.BooleanOptionalAction, default=True,
        help="export the trained torch model to <out>/<dataset>/onnx/<version>/ "
        "(default: on whenever torch is trained)")
    add("--baseline", action=argparse.BooleanOptionalAction, default=True,
        help="with --framework all, add the RandomForest baseline to the table (default: on)")
    add("--print-freq", type=_positive(int), default=10,
        help="progress line every N steps when not on a terminal (default: 10)")
    add("--quiet", action="store_true", help="no progress output (default: off)")
    return parser


# --------------------------------------------------------------------------- checks


def check_image_size(size: int) -> None:
    if size < MIN_IMAGE_SIZE or size % IMAGE_SIZE_MULTIPLE:
        raise UsageError(f"--image-size {size}: must be >= {MIN_IMAGE_SIZE} and a multiple of "
                         f"{IMAGE_SIZE_MULTIPLE} (e.g. 32, 64, 128, 224)")


def check_version(version: str | None) -> None:
    if version is not None and not (version.isdigit() and int(version) > 0):
        raise UsageError(f"--version {version!r}: must be a positive integer")


def frameworks_of(args: argparse.Namespace) -> tuple[str, ...]:
    return FRAMEWORKS if args.framework == ALL else (args.framework,)


# --------------------------------------------------------------------------- data and init


def subset(image_set: ImageSet, limit: int | None, seed: int) -> ImageSet:
    """At most `limit` examples, a seeded random subset kept in dataset order."""
    if limit is None or len(image_set) <= limit:
        return image_set
    chosen = np.sort(np.random.default_rng(seed).permutation(len(image_set))[:limit])
    return image_set.subset(chosen)


def load_data(args: argparse.Namespace) -> dict[str, ImageSet]:
    if not args.data.exists():
        raise UsageError(f"--data {args.data}: no such file or directory")
    sets = load_dataset(args.dataset, args.data, args.image_size)
    return {name: subset(image_set, args.max_images, args.seed)
            for name, image_set in sets.items()}


def _manifest_stage_sizes(manifest: Manifest, directory: Path) -> tuple[int, ...]:
    sizes = manifest.architecture.get("stage_sizes")
    if sizes is None:
        raise UsageError(f"--resume {directory}: manifest has no architecture.stage_sizes")
    return parse_stage_sizes(sizes)


def resume_state(directory: Path, args: argparse.Namespace, dataset: DatasetSpec) -> StateDict:
    """Weights of a saved model, checked to fit this run (dataset, classes, architecture)
    before anything is built, then read by its own framework and ported."""
    manifest = read_manifest(directory)
    where = f"--resume {directory}"
    if manifest.framework not in FRAMEWORKS:
        raise UsageError(f"{where}: cannot train from a {manifest.framework} model; "
                         f"use one of {', '.join(FRAMEWORKS)}")
    if manifest.class_names != list(dataset.class_names):
        raise UsageError(f"{where}: model classes {manifest.class_names} differ from "
                         f"{dataset.name}'s {list(dataset.class_names)}")
    sizes = _manifest_stage_sizes(manifest, directory)
    if sizes != tuple(args.stage_sizes):
        raise UsageError(f"{where}: the model has stage sizes {list(sizes)} but --stage-sizes "
                         f"is {list(args.stage_sizes)}; a different architecture")
    path = verify_model_file(directory, manifest)
    source = get_backend(manifest.framework)(ModelConfig(
        num_classes=manifest.num_classes, image_size=manifest.input.size, stage_sizes=sizes,
        task=manifest.task))
    source.build(None, args.lr)
    try:
        source.load(path)
    except (ValueError, OSError) as error:
        raise UsageError(f"{where}: cannot load {path.name}: {error}") from None
    return source.get_state()


def initial_state(args: argparse.Namespace, dataset: DatasetSpec) -> tuple[StateDict, str]:
    """(the numpy state dict every framework starts from, its description for manifests)."""
    if args.resume is not None:
        state = resume_state(args.resume, args, dataset)
        return state, f"resume:{read_manifest(args.resume).sha256}"
    if args.init == RANDOM_INIT:
        from .backends.torch import initial_state as torch_initial_state

        state = torch_initial_state(dataset.n_classes, tuple(args.stage_sizes), args.seed)
        return state, f"random(torch, seed={args.seed})"
    if args.init.startswith(IMAGENET_PREFIX):
        path = Path(args.init.removeprefix(IMAGENET_PREFIX))
        if tuple(args.stage_sizes) != RESNET50:
            raise UsageError(f"--init {args.init}: ImageNet weights are ResNet-50 "
                             f"(stage sizes 3,4,6,3), not {list(args.stage_sizes)}")
        from .porting import load_torchvision_imagenet

        state = load_torchvision_imagenet(path, dataset.n_classes, seed=args.seed)
        return state, f"imagenet:{path.name}"
    raise UsageError(f"--init {args.init!r}: expected 'random' or 'imagenet=PATH'")


# --------------------------------------------------------------------------- one framework


@dataclass
class Run:
    """Everything shared by the frameworks of one invocation."""

    args: argparse.Namespace
    dataset: DatasetSpec
    sets: dict[str, ImageSet]
    preprocess: PreprocessSpec
    init: StateDict
    init_description: str
    version: str
    threads: int
    weights: np.ndarray | None
    pos_weight: tuple[float, ...] | None = None


def _versions(backend: Backend) -> dict[str, str]:
    return {**backend.versions(), "python": platform.python_version(), "numpy": np.__version__}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def training_summary(run: Run, backend: Backend, result: Any) -> dict[str, Any]:
    """The manifest's `training` field."""
    args = run.args
    best = next((r for r in result.history if r.epoch == result.best_epoch), None)
    return {
        "epochs": result.epochs,
        "epochs_requested": args.epochs,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "best_val_loss": _finite(result.best_val_loss),
        "best_val_metric": {result.val_metric_name: best.val_metric if best else None},
        "seconds_per_epoch": result.seconds_per_epoch,
        "images_per_second": result.images_per_second,
        "compile_seconds": result.compile_seconds,
        "seed": args.seed,
        "init": run.init_description,
        "batch_size": min(args.batch_size, len(run.sets["train"])),
        "lr": args.lr,
        "final_lr": result.final_lr,
        "optimizer": {"name": "adam", "betas": list(ADAM_BETAS), "eps": ADAM_EPSILON},
        "loss": "cross_entropy" if run.dataset.task == "multiclass" else "bce_with_logits",
        "class_weights": None if run.weights is None else [float(w) for w in run.weights],
        "pos_weight": None if run.pos_weight is None else list(run.pos_weight),
        "schedule": {"name": "reduce_lr_on_plateau", "patience": args.plateau_patience,
                     "factor": args.plateau_factor, "min_lr": args.min_lr},
        "early_stopping": {"monitor": "val_loss", "patience": args.patience,
                           "restore_best": True},
        "augment": args.augment,
        "precision": args.precision,
        "device": backend.device(),
        "threads": run.threads,
        "data": {"path": str(args.data), **{k: len(v) for k, v in run.sets.items()}},
        "versions": _versions(backend),
    }


def train_framework(run: Run, framework: str) -> Manifest:
    """Build, fit, test, save one framework's model; returns its manifest."""
    args, dataset = run.args, run.dataset
    config = ModelConfig(num_classes=dataset.n_classes, image_size=args.image_size,
                         stage_sizes=tuple(args.stage_sizes), task=dataset.task,
                         precision=args.precision, threads=run.threads, seed=args.seed,
                         pos_weight=run.pos_weight)
    directory = create_model_dir(args.out, dataset.name, framework, run.version)
    backend = get_backend(framework)(config)
    backend.build(run.init, args.lr)
    history = HistoryWriter(directory)
    fit_config = FitConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        patience=args.patience, plateau_patience=args.plateau_patience,
        plateau_factor=args.plateau_factor, min_lr=args.min_lr, augment=args.augment,
        class_weights=run.weights, pos_weight=run.pos_weight, print_freq=args.print_freq,
        progress=not args.quiet,
    )
    result = fit(backend, run.sets["train"], run.sets["val"], dataset=dataset,
                 preprocess=run.preprocess, config=fit_config, on_epoch=history)
    thresholds = (validation_thresholds(backend, run.sets["val"], dataset, run.preprocess,
                                        fit_config.batch_size)
                  if dataset.task == "multilabel" else [])
    test_metrics = evaluate_split(backend, run.sets["test"], dataset, run.preprocess,
                                  fit_config.batch_size, run.weights, pos_weight=run.pos_weight,
                                  thresholds=thresholds or None)
    file_name = backend.save(directory)
    manifest = write_model_artifact(
        directory, file_name, history=history.records,
        title=f"{dataset.name} / {framework} v{run.version}",
        dataset=dataset.name, task=dataset.task, class_names=list(dataset.class_names),
        framework=framework, framework_version=backend.framework_version(),
        architecture={**architecture_dict(args.stage_sizes), "num_classes": dataset.n_classes},
        input=InputSpec(size=args.image_size, mean=list(run.preprocess.mean),
                        std=list(run.preprocess.std), raw_capture=dataset.raw_capture),
        parameter_count=backend.parameter_count(),
        training=training_summary(run, backend, result),
        test_metrics={**test_metrics, "loss": _finite(test_metrics["loss"])},
        thresholds=thresholds,
    )
    _say(args, f"{framework}: wrote {directory}")
    if framework == "torch" and args.export_onnx:
        onnx_manifest = write_onnx_artifact(args.out, run.version, backend.model.cpu(), manifest,
                                            directory)
        _say(args, f"onnx: wrote {args.out / dataset.name / 'onnx' / run.version} "
                   f"(sha256 {onnx_manifest.sha256[:12]})")
    return manifest


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- main


def prepare(args: argparse.Namespace) -> Run:
    """Validate everything cheap first, then load data and the initial weights once."""
    check_image_size(args.image_size)
    check_version(args.version)
    dataset = dataset_spec_for(args.dataset, args.data)  # imagefolder: classes from the data
    if args.class_weights == "balanced" and dataset.task != "multiclass":
        raise UsageError("--class-weights balanced: only for multiclass datasets (use "
                         "--pos-weight balanced for a multilabel one)")
    if args.pos_weight == "balanced" and dataset.task != "multilabel":
        raise UsageError("--pos-weight balanced: only for multilabel datasets (use "
                         "--class-weights balanced for a multiclass one)")
    frameworks = frameworks_of(args)
    version = args.version or next_version(args.out, dataset.name, frameworks)
    threads = args.threads or usable_cpu_count()
    sets = load_data(args)
    weights = (class_weights(sets["train"].labels, dataset.n_classes)
               if args.class_weights == "balanced" else None)
    pos_weight = (positive_weights(sets["train"].labels)
                  if args.pos_weight == "balanced" else None)
    init, description = initial_state(args, dataset)
    return Run(args=args, dataset=dataset, sets=sets, preprocess=PreprocessSpec(args.image_size),
               init=init, init_description=description, version=version, threads=threads,
               weights=weights, pos_weight=pos_weight)


def run_training(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train the requested frameworks; for 'all' also the baseline and the table. Returns
    the table rows."""
    run = prepare(args)
    rows = [manifest_row(train_framework(run, framework), run.dataset)
            for framework in frameworks_of(args)]
    if args.framework == ALL:
        if args.baseline:
            from .baseline import train_baseline

            _say(args, "baseline: RandomForest on downscaled pixels")
            rows.append(train_baseline(run.sets, run.dataset, seed=args.seed,
                                       threads=run.threads, class_weights=args.class_weights))
        settings = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                    "image_size": args.image_size, "stage_sizes": list(args.stage_sizes),
                    "init": run.init_description, "precision": args.precision,
                    **({"pos_weight": args.pos_weight} if run.dataset.task == "multilabel"
                       else {}),
                    "threads": run.threads, "seed": args.seed}
        json_path, md_path = write_comparison(rows, args.out, run.dataset, run.version,
                                              settings)
        _say(args, f"comparison: wrote {json_path} and {md_path}")
    print(markdown_table(rows, run.dataset))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    args = get_args_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)  # read once, at TF's import
    if args.threads:
        limit_cpus(args.threads)  # a process-wide choice: only the command line makes it
    try:
        run_training(args)
    except USER_ERRORS as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        print(f"{PROG}: error: {first_line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: a line, not a traceback; the history stays on disk
        print(f"{PROG}: interrupted; finished models and each started model's history.jsonl "
              f"are kept under {args.out}", file=sys.stderr)
        return 130
    return 0

