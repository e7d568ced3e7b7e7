"""A real gunicorn service of a tiny seeded model, for the robustness benches
(``upload_memory``, ``admission_goodput`` in ``bench.robustness``): what they measure is the serving
path (admission, decode, batching), so the model is the smallest ResNet the artifacts
writer makes (stage sizes 1,1,1,1 at 32 px, ONNX Runtime), written once into the workdir.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from bench.proctree import children
from bench.services import LocalServiceSettings, Service, ServicePool, start_service
from training.fixtures import runtime_model_dir, write_artifacts

DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "versus-bench-tiny"
FRAMEWORK = "onnx"
DATASET = "dr"
IMAGE_SIZE = 32
STAGE_SIZES = (1, 1, 1, 1)
READY_DEADLINE_S = 120.0


def tiny_model(workdir: Path) -> Path:
    """``<workdir>/models/dr/onnx/1``, written on first use."""
    model_dir = runtime_model_dir(workdir / "models", DATASET, FRAMEWORK, "1")
    if not (model_dir / "manifest.json").is_file():
        write_artifacts(workdir / "models", dataset=DATASET, stage_sizes=STAGE_SIZES,
                        image_size=IMAGE_SIZE, runtimes=[FRAMEWORK])
    return model_dir


def tiny_settings(queue_size: int) -> LocalServiceSettings:
    """One worker, 32 request threads, one intra-op thread, batches of up to 8."""
    return LocalServiceSettings(workers=1, http_threads=32, intra_op_threads=1,
                                max_batch_size=8, queue_size=queue_size)


@contextmanager
def tiny_service(workdir: Path, settings: LocalServiceSettings,
                 env: Mapping[str, str] | None = None) -> Iterator[Service]:
    """A ready service of the tiny model, stopped on exit; ``env`` (``VERSUS_*`` settings or
    e.g. ``MALLOC_ARENA_MAX``) is added to the environment it starts with."""
    model_dir = tiny_model(workdir)
    with ServicePool() as pool:
        service = pool.add(start_service(FRAMEWORK, model_dir, workdir / "logs", settings,
                                         env=env))
        pool.wait_ready(READY_DEADLINE_S)
        yield service


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """``--env KEY=VALUE`` (repeatable: extra environment of the service) and ``--workdir``."""
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda item: tuple(item.split("=", 1)),
                        help="extra environment of the service, e.g. VERSUS_QUEUE_WAIT_MS=0 "
                             "or MALLOC_ARENA_MAX=2 (repeatable)")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                        help=f"model and logs (default: {DEFAULT_WORKDIR})")


def worker_pids(service: Service) -> list[int]:
    """The gunicorn workers of a local service (children of its master)."""
    assert service.process is not None
    return children(service.process.pid)


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` (resident now) and ``VmHWM`` (resident high-water mark) of ``pid``, MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields
