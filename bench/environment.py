"""The machine and software a bench run measured, recorded next to every number.

A throughput means nothing without the CPU, the cores it could use, the threads each worker
ran and the framework versions, so all of it goes into results.json. Framework versions come
from package metadata (``importlib.metadata``): importing torch, TensorFlow and JAX just to
read ``__version__`` would cost seconds and gigabytes in the load generator's parent.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.pricing import instance_type
from shared.processes import REPO, usable_cpu_ids
from shared.runtimes import runtimes

PACKAGES = (
    *dict.fromkeys(p for r in runtimes().values() for p in r.packages),
    "numpy", "pillow", "flask", "gunicorn", "prometheus-client", "locust",
)
"""Distributions whose versions are recorded (absent ones are recorded as None): every
runtime's, then the serving and load-test stack's."""
THREAD_VARIABLES = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS", "XLA_FLAGS", "JAX_PLATFORMS",
)
GIT_TIMEOUT_S = 5.0


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo, else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float] | None:
    """1/5/15-minute load: a busy shared machine explains a noisy run."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: Path = REPO) -> dict[str, Any]:
    """HEAD's sha and whether the working tree has uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                                  text=True, timeout=GIT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status)}


def collect_environment(threads: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything results.json records about where and with what the run happened."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "instance_type": instance_type(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cpu_ids(),
        "memory_total_bytes": memory_total_bytes(),
        "load_average_at_start": load_average(),
        "thread_environment": {k: os.environ.get(k) for k in THREAD_VARIABLES
                               if os.environ.get(k) is not None},
        "threads": threads or {},
        "packages": package_versions(),
        "git": git_commit(),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
