"""Stand-alone measurements that explain a figure of the comparison rather than produce
one, each a ``python -m bench.studies.<name>`` entry: the serving overhead over the bare
runtime, the request path's own CPU by part, and the JPEG decode micro-benchmark.

The studies that serve a model share its random-init artifacts (cached in ``--workdir``) and
their two output flags, here."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shared.processes import REPO

DATASET = "dr"


def add_output_args(p: argparse.ArgumentParser, report: str) -> None:
    """``--workdir`` (artifacts and logs, reused) and ``--out`` (where ``<report>.{json,md}``
    go)."""
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "versus-bench",
                   help="artifacts and logs, reused between runs (default: $TMPDIR/versus-bench)")
    p.add_argument("--out", type=Path, default=REPO / "reports",
                   help=f"where {report}.{{json,md}} go (default: reports/)")


def study_artifacts(workdir: Path, stage_sizes: str, image_size: int,
                    runtimes: Sequence[str]) -> dict[str, Path]:
    """{runtime: model_dir} of one seeded random-init ResNet (``stage_sizes``: '3,4,6,3' or
    an architecture name) at ``image_size`` px, written into ``workdir`` where missing."""
    from shared.models import parse_stage_sizes
    from training.fixtures import runtime_model_dir, write_artifacts

    root = workdir / f"models-{stage_sizes}-{image_size}"
    dirs = {rt: runtime_model_dir(root, DATASET, rt, "1") for rt in runtimes}
    missing = [rt for rt, path in dirs.items() if not (path / "manifest.json").exists()]
    if missing:
        root.mkdir(parents=True, exist_ok=True)
        write_artifacts(root, dataset=DATASET, stage_sizes=parse_stage_sizes(stage_sizes),
                        image_size=image_size, runtimes=missing)
    return dirs
