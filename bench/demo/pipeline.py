"""``python -m bench demo``: the whole job end to end on synthetic data, in one command.

    python -m bench demo                     # 2-core laptop, no GPU: about 10 minutes
    python -m bench demo --profile full      # GPU host: ResNet-50, 224 px, full epochs
    python -m bench demo --dataset chestxray14   # multilabel: 14 findings per radiograph

Four phases, each a child process (what ``make demo`` runs):

1. **data**: a synthetic dataset (``python -m shared.datasets synth <dataset>``; BloodMNIST
   by default, or any dataset with a generator: :data:`DEMO_DATASETS`), skipped when
   ``<data>/bloodmnist_<px>.npz`` (``<data>/<dataset>_<px>/`` for a directory layout) already
   holds what this profile would write (a ``.synth.json`` stamp next to it records the
   generator's parameters and the data's sha256). Data without a stamp is someone's own copy
   (e.g. the real MedMNIST download): it is used as it is and never overwritten.
2. **training**: ``python -m training --framework all`` at one new model version: torch,
   TensorFlow and JAX from identical init, the ONNX export, the RandomForest baseline and the
   comparison table.
3. **quantize**: the int8 artifact each int8 variant of the profile serves
   (``python -m training quantize --to openvino-int8``), made from the ONNX model this run
   trained, calibrated on its training images;
4. **bench**: ``python -m bench`` against exactly that version: the five runtimes and the
   profile's variants (bf16, int8) up, in-process baselines, the accuracy gate, Locust sweep,
   open loop, ``reports/<run-id>/index.html``. The test split of the same ``.npz`` is the
   payload pool and the gate's test set, so every upload is an image of the served dataset.

At the end it prints the training table, the serving summary, the wall time of every phase
and the report's path. Children run in their own sessions (process groups) so that the one
place that decides how to stop them is this process: Ctrl-C (or SIGTERM/SIGHUP) sends SIGINT
to the running child's group, which stops the way it would under a terminal's Ctrl-C (the
bench stops its services and writes a partial report), then SIGTERM and SIGKILL if it
lingers; a second Ctrl-C (a second or more after the first) skips the grace.

Exit status: 0 when everything ran; the failing phase's exit status otherwise (the bench's 1
when a service died: the report says which); 2 for usage errors; 130 on Ctrl-C (128 + the
signal for SIGTERM/SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.demo.children import Interrupted, run_child, stop_signals_raise
from shared.runtimes import base_runtimes, get_artifact, get_runtime, runtimes

PROG = "python -m bench demo"
DATASET = "bloodmnist"
DEMO_DATASETS = {"bloodmnist": ".npz", "chestxray14": "", "dr": ""}
"""Datasets ``python -m shared.datasets synth`` generates (``--n --size --seed --out``), by the
suffix of what it writes: a MedMNIST ``.npz`` file, or a directory in the real layout."""
STAMP_SUFFIX = ".synth.json"
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class DemoProfile:
    """What one ``--profile`` trains and measures (every phase's knobs in one place)."""

    name: str
    n_images: int
    """Synthetic images over all three splits (MedMNIST's 70/10/20 proportions)."""
    image_size: int
    stage_sizes: str
    """``--stage-sizes`` of the trainer: 'tiny' (1,1,1,1) or '3,4,6,3' (ResNet-50)."""
    epochs: int | None
    """None: the trainer's default (with its early stopping)."""
    bench_profile: str
    max_images: int | None = None
    """Per-split cap passed to the trainer (None: every image)."""
    seed: int = 0
    training_args: tuple[str, ...] = ()
    bench_args: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    """Variant rows (``shared.runtimes``) served next to the base rows; the derived artifact
    an int8 one serves is made by the quantize phase."""
    calibration_images: int = 300
    """Training images the quantize phase calibrates on."""
    interrupt_grace_s: Mapping[str, float] = field(
        default_factory=lambda: {"data": 5.0, "training": 15.0, "quantize": 15.0,
                                 "bench": 60.0})
    """How long a child may take to stop after SIGINT (the bench writes its report)."""
    budget_s: float | None = None
    """The wall time this profile promises (printed next to the total; None: no promise)."""
    dataset: str = DATASET
    """What every phase works on (``--dataset``): one of :data:`DEMO_DATASETS`."""


DEMO_PROFILES: dict[str, DemoProfile] = {
    # A 2-core machine without GPU: ~11 min quiet, ~17 min with other work on it, 20 min
    # promised. Tiny ResNet (1,1,1,1 bottleneck blocks, 64 px) for 2 epochs on 1400
    # training images: every framework's full path (train, save, port, export, serve) and
    # models well above chance; the numbers are a demo, not a result. Training dominates
    # (torch ~4 min of it on 2 busy cores); the bench's demo sweep is time-bounded. Seven
    # services (the five runtimes, OpenVINO bf16 and int8): the bench took 15 min at load
    # average ~7 with an empty size-sweep cache (docs/measurements.md).
    "demo": DemoProfile(
        name="demo", n_images=2000, image_size=64, stage_sizes="tiny", epochs=2,
        bench_profile="demo", budget_s=20 * 60.0,
        # From random init, Adam at the trainer's 1e-4 (a fine-tuning rate) learns little in
        # 2 epochs: 1e-3 measured 0.82 test accuracy instead of 0.75 (TensorFlow, same data).
        training_args=("--lr", "1e-3"),
        # Payloads at the models' own 64 px: a client that sends dataset-sized images.
        bench_args=("--payload-size", "64"),
        # OpenVINO's bf16 and int8 forms: the cheapest variants to start (no compile step)
        # and the fastest in process; 200 calibration images quantise in seconds.
        variants=("openvino-bf16", "openvino-int8"), calibration_images=200,
    ),
    # A GPU host: ResNet-50 at 224 px, as many images as the real BloodMNIST (17,092), the
    # trainer's default epochs and early stopping, and the bench's full sweep.
    "full": DemoProfile(
        name="full", n_images=17_092, image_size=224, stage_sizes="3,4,6,3", epochs=None,
        bench_profile="full", variants=tuple(n for n, r in runtimes().items() if r.is_variant),
    ),
}


class PhaseFailed(Exception):
    """A phase's child exited non-zero."""

    def __init__(self, phase: str, returncode: int) -> None:
        super().__init__(f"{phase} failed with exit status {returncode}")
        self.phase, self.returncode = phase, returncode


# ---------------------------------------------------------------------- paths and commands


@dataclass(frozen=True)
class Layout:
    """Where a demo run reads and writes (``--data``, ``--models``, ``--reports``)."""

    data: Path = Path("data")
    models: Path = Path("models")
    reports: Path = Path("reports")

    def dataset_file(self, profile: DemoProfile) -> Path:
        """The generated data: a file or a directory (:data:`DEMO_DATASETS`)."""
        suffix = DEMO_DATASETS[profile.dataset]
        return self.data / f"{profile.dataset}_{profile.image_size}{suffix}"


def synth_params(profile: DemoProfile) -> dict[str, Any]:
    """The generator's parameters: what the stamp must match for a file to be reused."""
    return {"generator": f"shared.datasets synth {profile.dataset}", "n": profile.n_images,
            "size": profile.image_size, "seed": profile.seed}


def synth_command(profile: DemoProfile, out: Path) -> list[str]:
    return [sys.executable, "-m", "shared.datasets", "synth", profile.dataset,
            "--n", str(profile.n_images), "--size", str(profile.image_size),
            "--seed", str(profile.seed), "--out", str(out)]


def training_command(profile: DemoProfile, layout: Layout, version: str) -> list[str]:
    command = [sys.executable, "-m", "training", "--framework", "all", "--dataset",
               profile.dataset,
               "--data", str(layout.dataset_file(profile)),
               "--image-size", str(profile.image_size), "--stage-sizes", profile.stage_sizes,
               "--seed", str(profile.seed), "--out", str(layout.models), "--version", version]
    if profile.epochs is not None:
        command += ["--epochs", str(profile.epochs)]
    if profile.max_images is not None:
        command += ["--max-images", str(profile.max_images)]
    return command + list(profile.training_args)


def served_runtimes(profile: DemoProfile) -> tuple[str, ...]:
    """Every base row, then the profile's variants."""
    return (*base_runtimes(), *profile.variants)


def derived_artifacts(profile: DemoProfile) -> tuple[str, ...]:
    """The derived artifact kinds (int8) the profile's variants serve, each once."""
    kinds = (get_runtime(name).artifact for name in profile.variants)
    return tuple(dict.fromkeys(k for k in kinds if get_artifact(k).derived_from))


def quantize_command(profile: DemoProfile, layout: Layout, kind: str, parent_dir: Path
                     ) -> list[str]:
    """``python -m training quantize``: ``kind`` from ``parent_dir``, written beside it at the
    same version, calibrated on the demo dataset's training split."""
    return [sys.executable, "-m", "training", "quantize", "--dataset", profile.dataset,
            "--data", str(layout.dataset_file(profile)), "--model", str(parent_dir),
            "--to", kind, "--calibration-images", str(profile.calibration_images),
            "--seed", str(profile.seed)]


def bench_command(profile: DemoProfile, layout: Layout, version: str | None,
                  run_id: str) -> list[str]:
    """``version`` None: each framework's latest (``--skip-training`` reuses old models)."""
    command = [sys.executable, "-m", "bench", "--profile", profile.bench_profile,
               "--frameworks", ",".join(served_runtimes(profile)),
               "--models", str(layout.models), "--dataset", profile.dataset,
               "--out", str(layout.reports), "--run-id", run_id,
               "--payload-dir", str(layout.dataset_file(profile)),
               "--seed", str(profile.seed)]
    if version is not None:
        command += ["--version", version]
    return command + list(profile.bench_args)


def next_model_version(models: Path, dataset: str = DATASET) -> str:
    """The version the training phase will write (one number for every framework), chosen
    here so that the bench serves exactly the models this run trained."""
    from training.backends.base import BACKENDS
    from training.model_dirs import next_version

    return next_version(models, dataset, tuple(BACKENDS))


# ---------------------------------------------------------------------- data phase


def stamp_path(dataset_file: Path) -> Path:
    return dataset_file.with_name(dataset_file.name + STAMP_SUFFIX)


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in _files(path))


def _sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents)."""
    import hashlib

    from shared.manifest import sha256_file

    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in _files(path):
        digest.update(f"{file.relative_to(path)}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def data_status(dataset_file: Path, params: Mapping[str, Any]) -> str:
    """'missing', 'current' (stamp matches params and data), 'stale' (ours, other params or
    changed since), or 'foreign' (data without a stamp: not ours to overwrite). The data is
    a file or a directory."""
    if not dataset_file.exists():
        return "missing"
    stamp = stamp_path(dataset_file)
    if not stamp.is_file():
        return "foreign"
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return "stale"
    if recorded.get("params") != dict(params):
        return "stale"
    if recorded.get("size_bytes") != _size(dataset_file):
        return "stale"
    return "current" if recorded.get("sha256") == _sha256(dataset_file) else "stale"


def write_stamp(dataset_file: Path, params: Mapping[str, Any]) -> Path:
    """Record what generated ``dataset_file`` (after the generator succeeded)."""
    stamp = stamp_path(dataset_file)
    stamp.write_text(json.dumps({"params": dict(params), "sha256": _sha256(dataset_file),
                                 "size_bytes": _size(dataset_file)}, indent=2) + "\n")
    return stamp


# ---------------------------------------------------------------------- phases


@dataclass
class PhaseTime:
    name: str
    seconds: float = 0.0
    note: str = ""


@dataclass
class Demo:
    """One demo run: phases in order, their wall times, what they produced."""

    profile: DemoProfile
    layout: Layout
    run_id: str
    skip_training: bool = False
    log: Callable[[str], None] = field(
        default=lambda text: print(f"[demo] {text}", file=sys.stderr, flush=True))
    times: list[PhaseTime] = field(default_factory=list)
    version: str | None = None
    report_dir: Path | None = None
    bench_status: int | None = None

    @contextlib.contextmanager
    def phase(self, name: str, note: str = "") -> Iterator[PhaseTime]:
        record = PhaseTime(name, note=note)
        self.times.append(record)
        self.log(f"=== {name} {'(' + note + ') ' if note else ''}===")
        started = time.monotonic()
        try:
            yield record
        finally:
            record.seconds = time.monotonic() - started

    def run(self, name: str, command: Sequence[str], stdout: int | IO[bytes] | None = None
            ) -> int:
        self.log("$ " + " ".join(_shell_word(part) for part in command))
        return run_child(command, grace_s=self.profile.interrupt_grace_s[name], log=self.log,
                         stdout=stdout)

    def data(self) -> None:
        target = self.layout.dataset_file(self.profile)
        params = synth_params(self.profile)
        with self.phase("data") as record:
            status = data_status(target, params)
            if status == "current":
                record.note = f"reused {target}"
                self.log(f"{target} already holds these images: skipped")
                return
            if status == "foreign":
                record.note = f"used {target} as found"
                self.log(f"{target} exists without {stamp_path(target).name}: using it as "
                         f"it is (not generated here; delete it to generate one)")
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            stamp_path(target).unlink(missing_ok=True)  # stale or half-written: not trusted
            if target.is_dir():  # ours (it had a stamp): the generator writes a fresh one
                shutil.rmtree(target)
            code = self.run("data", synth_command(self.profile, target))
            if code:
                raise PhaseFailed("data", code)
            write_stamp(target, params)
            record.note = f"generated {target}"

    def training(self) -> None:
        if self.skip_training:
            with self.phase("training", "skipped (--skip-training): the latest models"):
                return
        self.version = next_model_version(self.layout.models, self.profile.dataset)
        with self.phase("training", f"version {self.version}") as record:
            code = self.run("training", training_command(self.profile, self.layout,
                                                         self.version))
            if code:
                raise PhaseFailed("training", code)
            record.note = f"{self.layout.models}/{self.profile.dataset}/*/{self.version}"

    def parent_dir(self, kind: str) -> Path:
        """The model directory a derived ``kind`` is made from: the trained version, or
        (``--skip-training``) the latest one."""
        from bench.services import ServiceError, latest_model_dirs

        parent_kind = get_artifact(kind).derived_from
        runtime = next(r.name for r in base_runtimes().values() if r.artifact == parent_kind)
        try:
            return latest_model_dirs(self.layout.models, self.profile.dataset, [runtime],
                                     self.version)[runtime]
        except ServiceError as exc:
            self.log(str(exc))
            raise PhaseFailed("quantize", 2) from exc

    def quantize(self) -> None:
        kinds = derived_artifacts(self.profile)
        if not kinds:
            return
        with self.phase("quantize", ", ".join(kinds)) as record:
            made = []
            for kind in kinds:
                parent = self.parent_dir(kind)
                target = parent.parents[1] / kind / parent.name
                if self.skip_training and (target / "manifest.json").is_file():
                    self.log(f"{target} exists: reused (--skip-training)")
                    continue
                code = self.run("quantize", quantize_command(self.profile, self.layout, kind,
                                                             parent))
                if code:
                    raise PhaseFailed("quantize", code)
                made.append(str(target))
            record.note = ", ".join(made) or "reused"

    def bench(self) -> None:
        self.report_dir = self.layout.reports / self.run_id
        with self.phase("bench") as record:
            # The bench's stdout is only its summary, which the demo prints at the end.
            code = self.run("bench", bench_command(self.profile, self.layout, self.version,
                                                   self.run_id), stdout=subprocess.DEVNULL)
            self.bench_status = code
            record.note = str(self.report_dir)
            if code and not (self.report_dir / "results.json").is_file():
                raise PhaseFailed("bench", code)

    def summary(self) -> str:
        """Training table, serving summary, phase times, report path (what is printed)."""
        parts, html_path = [], None
        if self.version is not None:
            table = self.layout.models / self.profile.dataset / f"comparison-{self.version}.md"
            if table.is_file():
                parts += ["Training (test split):", _without_heading(table.read_text()), ""]
        if self.report_dir is not None and (self.report_dir / "results.json").is_file():
            from bench.report.render import HTML_FILE, load_results, summary_text  # matplotlib

            parts += ["Serving:", summary_text(load_results(self.report_dir)), ""]
            html_path = self.report_dir / HTML_FILE
        parts += [phase_table(self.times, self.profile.budget_s)]
        if html_path is not None and html_path.is_file():
            parts += ["", f"report: {html_path.resolve()}"]
        return "\n".join(parts)


def _without_heading(markdown: str) -> str:
    lines = markdown.strip().splitlines()
    return "\n".join(lines[1:] if lines and lines[0].startswith("#") else lines).strip()


def _shell_word(text: str) -> str:
    return text if text and all(c.isalnum() or c in "-_./=:," for c in text) else repr(text)


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}"


def phase_table(times: Sequence[PhaseTime], budget_s: float | None = None) -> str:
    """Wall time per phase and the total, as aligned text."""
    width = max([len("total"), *(len(t.name) for t in times)])
    lines = ["Wall time:"]
    lines += [f"  {t.name.ljust(width)}  {format_seconds(t.seconds):>6}  {t.note}".rstrip()
              for t in times]
    total = sum(t.seconds for t in times)
    budget = f"  (budget {format_seconds(budget_s)})" if budget_s else ""
    lines.append(f"  {'total'.ljust(width)}  {format_seconds(total):>6}{budget}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- command line


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="The whole job end to end on "
                                "synthetic data: data -> training -> bench -> report.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Ctrl-C stops every child cleanly (exit 130).")
    p.add_argument("--profile", choices=sorted(DEMO_PROFILES), default="demo",
                   help="demo: tiny ResNet at 64 px on 2 CPU cores, about 10 min; full: "
                        "ResNet-50 at 224 px, default epochs, the full sweep, for GPU hosts "
                        "(default: demo)")
    p.add_argument("--dataset", choices=sorted(DEMO_DATASETS), default=DATASET,
                   help="synthetic dataset to generate, train on and serve: bloodmnist (8 "
                        "blood cell types), chestxray14 (14 findings per chest radiograph, "
                        f"multilabel) or dr (5 retinopathy grades) (default: {DATASET})")
    p.add_argument("--data", type=Path, default=Layout.data,
                   help="dataset directory (default: data)")
    p.add_argument("--models", type=Path, default=Layout.models,
                   help="model artifact root (default: models)")
    p.add_argument("--reports", type=Path, default=Layout.reports,
                   help="reports root (default: reports)")
    p.add_argument("--run-id", help="report directory name (default: demo-<UTC timestamp>)")
    p.add_argument("--skip-training", action="store_true",
                   help="serve the latest models already under --models instead of training "
                        "(default: train a new version)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from bench.runner import new_run_id

    profile = dataclasses.replace(DEMO_PROFILES[args.profile], dataset=args.dataset)
    demo = Demo(profile, Layout(args.data, args.models, args.reports),
                run_id=args.run_id or f"demo-{new_run_id()}", skip_training=args.skip_training)
    demo.log(f"profile {args.profile}, dataset {args.dataset}: data in {args.data}, models in "
             f"{args.models}, report in {args.reports / demo.run_id}")
    status = 0
    with stop_signals_raise():
        try:
            demo.data()
            demo.training()
            demo.quantize()
            demo.bench()
            status = demo.bench_status or 0
        except Interrupted as exc:
            demo.log(f"interrupted ({exc}): children stopped")
            status = EXIT_INTERRUPTED if exc.signum == signal.SIGINT else 128 + exc.signum
        except PhaseFailed as exc:
            demo.log(str(exc))
            status = exc.returncode if exc.returncode > 0 else 1
    print(demo.summary(), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
