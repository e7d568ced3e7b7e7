"""In-process baselines: what each runtime does with no HTTP, no Flask, no batcher.

Two measurements, each in a **child process per framework** (the bench's own process never
imports torch, TensorFlow or JAX: four frameworks in one process fight over threads and
memory, and TensorFlow + Triton even abort together), with the same intra-op threads as the
services:

- ``baseline``: the served model's predictor on the *same preprocessed batches* the services
  compute (the payload pool through ``shared.imaging``), at each batch size; the best
  images/s is the runtime's ceiling on this machine, and served throughput / ceiling is the
  service's efficiency;
- ``sizes``: the image-size sweep (the BloodMNIST framework paper's question): a randomly
  initialised model of the manifest's architecture at 28, 64, 128 and 224 px, ms per image
  at batch 1 and images/s at a fixed batch. Random weights time exactly like trained ones in
  fp32; the artifacts come from ``training.fixtures.write_artifacts`` (one seeded torch
  init ported to every framework) and are cached between runs.

Timing: warm-up calls excluded, then ``repeats`` repeats of at least ``min_time_s`` (and
``MIN_CALLS`` calls) each; every number is reported as min/median/max over the repeats.

    python -m bench.inprocess baseline --framework onnx --model DIR --inputs X.npy ...
    python -m bench.inprocess build --model DIR --sizes 28,64 --cache DIR --frameworks ...
    python -m bench.inprocess sizes --framework onnx --cache DIR --model DIR --sizes 28,64 ...

Each child hands its result to the parent with ``shared.processes.emit_result``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import spread
from shared.processes import REPO, child_environment, child_preexec, emit_result, last_result
from shared.runtimes import runtime_names

WARMUP_CALLS = 2
MIN_CALLS = 3
CHILD_TIMEOUT_S = 1800.0
SIZE_VERSION = "1"
PARITY_IMAGES = 8
"""Payload images whose probabilities each baseline child returns, for the served-model
agreement check (same inputs through every framework's served artifact)."""


# ---------------------------------------------------------------------- child side


def time_batches(predict: Any, inputs: np.ndarray, batch: int, repeats: int,
                 min_time_s: float) -> dict[str, Any]:
    """images/s and ms per call of ``predict`` on ``batch``-sized slices of ``inputs``
    (cycled), as spreads over ``repeats``."""
    reps = int(np.ceil(batch / len(inputs)))
    pool = np.concatenate([inputs] * max(1, reps)) if reps > 1 else inputs
    batches = [np.ascontiguousarray(pool[i:i + batch])
               for i in range(0, len(pool) - batch + 1, batch)] or [pool[:batch]]
    for i in range(WARMUP_CALLS):
        predict(batches[i % len(batches)])
    throughputs, per_call_ms = [], []
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        times = []
        while calls < MIN_CALLS or time.perf_counter() - started < min_time_s:
            t0 = time.perf_counter()
            predict(batches[calls % len(batches)])
            times.append(time.perf_counter() - t0)
            calls += 1
        elapsed = time.perf_counter() - started
        throughputs.append(calls * batch / elapsed)
        per_call_ms.append(float(np.median(times)) * 1e3)
    return {"batch": batch, "images_per_s": spread(throughputs),
            "ms_per_batch": spread(per_call_ms)}


def baseline(framework: str, model_dir: Path, threads: int, inputs: np.ndarray,
             batch_sizes: Sequence[int], repeats: int, min_time_s: float) -> dict[str, Any]:
    """The served artifact's predictor at each batch size; the best median images/s."""
    from services.predictors import load_predictor

    started = time.perf_counter()
    predictor = load_predictor(framework, model_dir, threads=threads)
    load_s = time.perf_counter() - started
    by_batch = {}
    for batch in batch_sizes:
        by_batch[str(batch)] = time_batches(predictor.predict, inputs, batch, repeats,
                                            min_time_s)
    best = max(by_batch.values(), key=lambda r: r["images_per_s"]["median"])
    probabilities = predictor.predict(np.ascontiguousarray(inputs[:PARITY_IMAGES]))
    return {"framework": framework, "framework_version": predictor.version,
            "precision": predictor.precision,
            "threads": threads, "load_s": load_s, "by_batch": by_batch,
            "best_batch": best["batch"], "best_images_per_s": best["images_per_s"],
            "probabilities": np.asarray(probabilities, dtype=np.float64).tolist()}


def size_root(cache: Path, stage_sizes: Sequence[int], size: int) -> Path:
    """The model root of the cached random ``size`` px artifacts."""
    return Path(cache) / f"resnet-{'-'.join(map(str, stage_sizes))}-{size}px"


def size_dir(cache: Path, stage_sizes: Sequence[int], size: int, dataset: str,
             framework: str) -> Path:
    """Where the random ``size`` px artifact one runtime serves is cached."""
    from training.fixtures import runtime_model_dir

    return runtime_model_dir(size_root(cache, stage_sizes, size), dataset, framework,
                             SIZE_VERSION)


def build_size_artifacts(manifest_dir: Path, sizes: Sequence[int], cache: Path,
                         frameworks: Sequence[str]) -> dict[str, Any]:
    """Random-init artifacts of the manifest's architecture at every size (cached)."""
    from shared.manifest import read_manifest
    from shared.models import parse_stage_sizes

    manifest = read_manifest(manifest_dir)
    arch = manifest.architecture
    return build_random_artifacts(manifest.dataset,
                                  parse_stage_sizes(arch.get("stage_sizes", arch["name"])),
                                  sizes, cache, frameworks)


def build_random_artifacts(dataset: str, stages: Sequence[int], sizes: Sequence[int],
                           cache: Path, frameworks: Sequence[str]) -> dict[str, Any]:
    """Random-init artifacts of ResNet ``stages`` for ``dataset`` at every size, each runtime
    once (cached under ``cache``; int8 ones quantised on random images: speed only)."""
    from training.fixtures import write_artifacts

    stages = tuple(stages)
    built = {}
    for size in sizes:
        missing = [fw for fw in frameworks
                   if not (size_dir(cache, stages, size, dataset, fw)
                           / "manifest.json").is_file()]
        if missing:
            write_artifacts(size_root(cache, stages, size), dataset=dataset,
                            stage_sizes=stages, image_size=size, version=SIZE_VERSION,
                            runtimes=missing)
        built[str(size)] = missing
    return {"stage_sizes": list(stages), "built": built}


def size_sweep(framework: str, manifest_dir: Path, sizes: Sequence[int], cache: Path,
               threads: int, batch: int, repeats: int, min_time_s: float) -> dict[str, Any]:
    """ms per image at batch 1 and images/s at ``batch`` for each input size."""
    from services.predictors import load_predictor
    from shared.manifest import read_manifest
    from shared.models import parse_stage_sizes

    manifest = read_manifest(manifest_dir)
    arch = manifest.architecture
    stages = parse_stage_sizes(arch.get("stage_sizes", arch["name"]))
    rng = np.random.default_rng(0)
    result = {}
    for size in sizes:
        predictor = load_predictor(framework, size_dir(cache, stages, size, manifest.dataset,
                                                       framework), threads=threads)
        inputs = rng.standard_normal((max(batch, 4), size, size, 3)).astype(np.float32)
        single = time_batches(predictor.predict, inputs, 1, repeats, min_time_s)
        batched = time_batches(predictor.predict, inputs, batch, repeats, min_time_s)
        result[str(size)] = {"ms_per_image_batch1": single["ms_per_batch"],
                             "images_per_s": batched["images_per_s"], "batch": batch}
        del predictor
    return {"framework": framework, "threads": threads, "stage_sizes": list(stages),
            "by_size": result}


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.inprocess",
                                description="In-process baselines (a child of python -m bench).")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("baseline", "build", "sizes"):
        s = sub.add_parser(name)
        s.add_argument("--model", type=Path, required=name != "build",
                       help="served artifact directory (build: its architecture and dataset)")
        if name == "build":
            s.add_argument("--dataset", help="without --model: the dataset's classes")
            s.add_argument("--stage-sizes", type=_ints,
                           help="without --model: ResNet stage sizes, e.g. 3,4,6,3")
        s.add_argument("--repeats", type=int, default=3, help="timed repeats (default: 3)")
        s.add_argument("--min-time-s", type=float, default=1.0,
                       help="seconds per repeat at least (default: 1.0)")
        s.add_argument("--threads", type=int, default=1,
                       help="intra-op threads (default: 1)")
        s.add_argument("--framework", help="runtime (baseline, sizes)")
        s.add_argument("--frameworks", default=",".join(runtime_names()),
                       help="runtimes to build (build; default: every runtime)")
        s.add_argument("--inputs", type=Path, help=".npy of preprocessed inputs (baseline)")
        s.add_argument("--batch-sizes", type=_ints, default=[1, 2, 4, 8, 16, 32],
                       help="batch sizes (baseline; default: 1,2,4,8,16,32)")
        s.add_argument("--sizes", type=_ints, default=[28, 64, 128, 224],
                       help="input sizes in px (build, sizes; default: 28,64,128,224)")
        s.add_argument("--batch", type=int, default=8,
                       help="batch for the sizes throughput (default: 8)")
        s.add_argument("--cache", type=Path, help="random artifacts cache (build, sizes)")
    return p


def child_main(argv: Sequence[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.command == "baseline":
        inputs = np.load(args.inputs)
        result = baseline(args.framework, args.model, args.threads, inputs, args.batch_sizes,
                          args.repeats, args.min_time_s)
    elif args.command == "build" and args.model is None:
        result = build_random_artifacts(args.dataset, args.stage_sizes, args.sizes, args.cache,
                                        args.frameworks.split(","))
    elif args.command == "build":
        result = build_size_artifacts(args.model, args.sizes, args.cache,
                                      args.frameworks.split(","))
    else:
        result = size_sweep(args.framework, args.model, args.sizes, args.cache, args.threads,
                            args.batch, args.repeats, args.min_time_s)
    emit_result(result)


# ---------------------------------------------------------------------- parent side


class ChildError(RuntimeError):
    """A measurement child failed; carries its output's tail."""


def run_child(arguments: Sequence[str], log_path: Path, timeout_s: float = CHILD_TIMEOUT_S,
              cpus: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Run ``python -m bench.inprocess <arguments>`` and return its JSON result."""
    env = child_environment(defaults={"TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu"})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.inprocess", *arguments]
    preexec = child_preexec(cpus, die_with_parent=False)
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=log, timeout=timeout_s, check=False,
                                  preexec_fn=preexec)
        except subprocess.TimeoutExpired as exc:
            raise ChildError(f"bench.inprocess {arguments[0]} timed out after "
                             f"{timeout_s:.0f} s (log: {log_path})") from exc
    stdout = done.stdout.decode("utf-8", errors="replace")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(stdout)
    result = last_result(stdout)
    if result is not None:
        return result
    tail = log_path.read_text(errors="replace")[-2000:]
    raise ChildError(f"bench.inprocess {arguments[0]} exited with {done.returncode}:\n{tail}")


def preprocess_payloads(payloads: Sequence[bytes], manifest: dict[str, Any], path: Path
                        ) -> Path:
    """The payload pool through the shared serving preprocessing, saved as one .npy."""
    from shared.imaging import PreprocessSpec, preprocess

    spec = PreprocessSpec.from_manifest_input(manifest["input"])
    batch = np.stack([preprocess(data, spec) for data in payloads]).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, batch)
    return path


if __name__ == "__main__":
    child_main()
