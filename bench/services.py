"""The services under test: started here as ``python -m services`` subprocesses, or located
by URL, then watched for death for the whole run.

Started services get explicit thread settings (workers, request threads, intra-op threads),
a loopback port, a fresh Prometheus multi-process directory and a log file; they run in
their own session (so that Ctrl-C in the terminal reaches the bench, which then shuts them
down in order) with a parent-death signal, so that even a bench killed with SIGKILL leaves
no orphaned gunicorn behind. :class:`ServicePool` is a context manager: whatever happens
(an exception, Ctrl-C, SIGTERM) every process it started is terminated, then killed.

A service that dies mid-run must never look fast (a refused connection fails in
microseconds): :meth:`Service.death` reports the exit code and the log's tail, and the
runner marks its remaining levels as "died".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from shared.processes import REPO, child_environment, child_preexec, stop_process_group
from shared.runtimes import get_runtime

LOOPBACK = "127.0.0.1"
PROBE_TIMEOUT_S = 2.0
READY_POLL_S = 0.5
STOP_GRACE_S = 20.0
KILL_WAIT_S = 10.0
LOG_TAIL_CHARS = 2000


class ServiceError(RuntimeError):
    """A service could not be started, died, or never became ready."""


@dataclass(frozen=True)
class LocalServiceSettings:
    """How the bench starts every local service (identical for every framework)."""

    workers: int = 1
    http_threads: int = 32
    intra_op_threads: int | None = None
    """Framework math threads per worker (None: this machine's usable cores // workers, the
    services' own default, resolved by :meth:`resolved` and always passed explicitly)."""
    max_batch_size: int = 16
    max_queue_delay_ms: float = 5.0
    queue_size: int = 64
    cpus: tuple[int, ...] | None = None
    """CPU ids the service is pinned to (None: wherever the kernel schedules it)."""

    def resolved(self, cores: int) -> LocalServiceSettings:
        """These settings with ``intra_op_threads`` filled in for ``cores`` usable cores."""
        if self.intra_op_threads is not None:
            return self
        return dataclasses.replace(self, intra_op_threads=max(1, cores // self.workers))

    def flags(self) -> list[str]:
        threads = self.intra_op_threads or 1
        return ["--workers", str(self.workers), "--threads", str(self.http_threads),
                "--intra-op-threads", str(threads),
                "--max-batch-size", str(self.max_batch_size),
                "--max-queue-delay-ms", str(self.max_queue_delay_ms),
                "--queue-size", str(self.queue_size)]


@dataclass
class Service:
    """One service under test, local (``process`` set) or external (URL only)."""

    framework: str
    url: str
    model_dir: Path | None = None
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    readyz: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.process is not None

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - chars))
            return log.read().decode("utf-8", errors="replace")

    def get_json(self, path: str, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return json.loads(response.read())

    def responds(self) -> bool:
        """True when ``/healthz`` answers 200 (the process is alive and serving HTTP)."""
        try:
            with urllib.request.urlopen(self.url + "/healthz", timeout=PROBE_TIMEOUT_S) as r:
                return r.status == 200
        except (OSError, ValueError):
            return False

    def death(self) -> dict[str, Any] | None:
        """None while alive; else how it died: a local process' exit code and log tail, or
        an external service that stopped answering /healthz."""
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                return None
            return {"exit_code": code, "signal": -code if code < 0 else None,
                    "log_tail": self.log_tail()}
        if self.responds():
            return None
        return {"exit_code": None, "signal": None,
                "log_tail": f"{self.url}/healthz stopped answering"}

    def wait_ready(self, deadline_s: float) -> None:
        """Poll ``/readyz`` until 200, then record it and ``/model``; raise ServiceError with
        the log tail if the process exits or the deadline passes."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(f"{self.framework} service exited with "
                                   f"{self.process.returncode} while starting:\n"
                                   f"{self.log_tail()}")
            try:
                self.readyz = self.get_json("/readyz")
                self.manifest = self.get_json("/model")
                return
            except (OSError, ValueError):
                time.sleep(READY_POLL_S)
        raise ServiceError(f"{self.framework} service at {self.url} not ready after "
                           f"{deadline_s:.0f} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the service's process group (gunicorn drains), SIGKILL it after
        ``grace_s``; returns the exit code (None for an external service)."""
        if self.process is None:
            return None
        # the final SIGKILL of the group also reaps orphaned workers, if any
        return stop_process_group(self.process, ((signal.SIGTERM, grace_s),), KILL_WAIT_S)


def free_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def service_environment(metrics_dir: Path, extra: Mapping[str, str] | None = None
                        ) -> dict[str, str]:
    """Our environment, the repository importable, a private Prometheus directory."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    return child_environment({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **(extra or {})})


def start_service(framework: str, model_dir: Path, workdir: Path,
                  settings: LocalServiceSettings, port: int | None = None,
                  env: Mapping[str, str] | None = None) -> Service:
    """Start ``python -m services`` for one model on loopback (does not wait for ready);
    ``env``: extra environment variables (e.g. ``VERSUS_UNAVAILABLE_FILE``)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"service-{framework}-{port}.log"
    command = [sys.executable, "-m", "services", "--framework", framework,
               "--model", str(model_dir), "--host", LOOPBACK, "--port", str(port),
               *settings.flags()]
    environ = service_environment(workdir / f"prometheus-{framework}-{port}", env)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=child_preexec(settings.cpus),
        )
    return Service(framework, f"http://{LOOPBACK}:{port}", Path(model_dir), process, log_path)


class ServicePool:
    """Every service of a run; a context manager that always stops what it started, also
    on SIGTERM (turned into SystemExit so ``finally`` blocks run) and Ctrl-C."""

    def __init__(self) -> None:
        self.services: dict[str, Service] = {}
        self._previous_sigterm: Any = None

    def __enter__(self) -> ServicePool:
        with contextlib.suppress(ValueError):  # not the main thread: caller handles signals
            self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_system_exit)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        if self._previous_sigterm is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, self._previous_sigterm)

    def add(self, service: Service) -> Service:
        self.services[service.framework] = service
        return service

    def wait_ready(self, deadline_s: float) -> None:
        """Wait for every service (one shared deadline; they load in parallel)."""
        deadline = time.monotonic() + deadline_s
        for service in self.services.values():
            service.wait_ready(max(0.0, deadline - time.monotonic()))

    def stop_all(self) -> dict[str, int | None]:
        return {name: service.stop() for name, service in self.services.items()}

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services.values())


def _raise_system_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def latest_model_dirs(models: Path, dataset: str, frameworks: list[str],
                      version: str | None = None) -> dict[str, Path]:
    """``models/<dataset>/<artifact>/<version>`` per runtime (the artifact it serves, from the
    runtime table): ``version`` if given, else the highest numeric version that holds a
    manifest.json (ServiceError if none)."""
    found = {}
    for framework in frameworks:
        base = Path(models) / dataset / get_runtime(framework).artifact
        if version is not None:
            candidates = [base / version]
        else:
            numeric = [p for p in base.glob("*") if p.name.isdigit()] if base.is_dir() else []
            candidates = sorted(numeric, key=lambda p: int(p.name), reverse=True)
        chosen = next((p for p in candidates if (p / "manifest.json").is_file()), None)
        if chosen is None:
            which = f"version {version}" if version else "any version"
            raise ServiceError(f"no {framework} model ({which}) under {base}: train one with "
                               f"python -m training --framework all --dataset {dataset} ...")
        found[framework] = chosen
    return found


def datasets_under(models: Path) -> list[str]:
    """Dataset names that have at least one framework directory under ``models``."""
    if not Path(models).is_dir():
        return []
    return sorted(p.name for p in Path(models).iterdir() if p.is_dir() and any(p.iterdir()))


__all__ = [
    "Service", "ServiceError", "ServicePool", "LocalServiceSettings", "datasets_under",
    "free_port", "latest_model_dirs", "start_service",
]
