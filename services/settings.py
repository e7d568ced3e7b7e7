"""Every knob of a service, read from ``VERSUS_*`` environment variables in one place.

Two groups, because they live in different processes:

- :class:`ServiceSettings` is what the Flask app in one worker needs (model, batching, limits).
  ``create_app(config)`` takes the same names without the ``VERSUS_`` prefix
  (``{"MAX_BATCH_SIZE": 8}``), so tests and the environment share one parser.
- :class:`ServerSettings` is what the gunicorn master needs (bind, process model, timeouts);
  ``deploy/gunicorn.conf.py`` reads it.

Thread defaults avoid oversubscription, the classic 100x slowdown of CPU inference:
``workers * intra_op_threads <= cores``. The default is one worker that owns every core (one
model copy, and with a GPU one process per device), and batching, not processes, supplies
the parallelism.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shared.imaging import DEFAULT_LIMITS, ImageLimits
from shared.processes import usable_cpu_count
from shared.runtimes import runtime_names

ENV_PREFIX = "VERSUS_"


def env_mapping(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``VERSUS_X=...`` variables as ``{"X": ...}``."""
    environ = os.environ if environ is None else environ
    return {k.removeprefix(ENV_PREFIX): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}


def _coerce(name: str, kind: Any, value: Any) -> Any:
    """Convert a string (env) or a typed value (test config) to the field's type."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        if kind in ("int", "int | None"):
            return int(value)
        if kind in ("float", "float | None"):
            return float(value)
        if kind == "Path | None":
            return Path(value)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    except (TypeError, ValueError):
        raise ValueError(f"{ENV_PREFIX}{name}: expected {kind}, got {value!r}") from None
    return str(value)


class _FromMapping:
    """Build a frozen dataclass from upper-case keys (``MAX_BATCH_SIZE``), ignoring others."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Any:
        kwargs = {}
        for f in fields(cls):  # type: ignore[arg-type]
            key = f.name.upper()
            if key in values:
                coerced = _coerce(key, f.type, values[key])
                if coerced is not None:
                    kwargs[f.name] = coerced
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Any:
        return cls.from_mapping(env_mapping(environ))


@dataclass(frozen=True)
class ServiceSettings(_FromMapping):
    """Per-worker settings (env ``VERSUS_<NAME>``; defaults in brackets in the field docs)."""

    framework: str = ""
    """Runtime name, a row of :mod:`shared.runtimes` (required)."""
    model_dir: Path | None = None
    """``models/<dataset>/<framework>/<version>/`` holding manifest.json (required)."""
    max_batch_size: int = 16
    """Largest batch size the runtime is warmed up for (Triton's max_batch_size)."""
    preferred_batch_size: int | None = None
    """Largest batch the batcher forms (Triton's preferred_batch_size) [measured at warm-up:
    the smallest batch size within 1% of the best images/s, see services.batching]."""
    max_queue_delay_ms: float = 5.0
    """How long a batch may wait for more requests, and only while some are on their way."""
    queue_size: int = 64
    """Images the batch queue holds; beyond that requests get 503 + Retry-After."""
    queue_wait_ms: float = 100.0
    """How long a request may wait for room in a full queue, before its body is read."""
    intra_op_threads: int | None = None
    """Threads of the framework's math pool [cores // workers]."""
    workers: int = 1
    """gunicorn workers; only used here to derive the intra-op default."""
    max_body_bytes: int = 64 * 2**20
    """Largest request body; JSON tensors are bigger than the image they came from."""
    max_image_bytes: int = DEFAULT_LIMITS.max_bytes
    """Largest encoded image."""
    max_image_pixels: int = DEFAULT_LIMITS.max_pixels
    """Largest decoded image (width x height), checked from the header (decompression bombs)."""
    retry_after_s: int = 1
    """Retry-After sent with 503s."""
    decode_memory_bytes: int = 2**30
    """Memory one worker's concurrent decodes (images, JSON tensors) may hold; see
    services.admission."""
    decode_wait_s: float = 2.0
    """How long a request waits for decode memory before 503 + Retry-After."""

    def __post_init__(self) -> None:
        """Refuse values that would make the batcher or limits meaningless."""
        for name in ("max_batch_size", "queue_size", "workers", "max_body_bytes", "retry_after_s",
                     "decode_memory_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be >= 1")
        for name in ("max_queue_delay_ms", "queue_wait_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be >= 0")
        if self.queue_size < self.max_batch_size:
            raise ValueError(f"{ENV_PREFIX}QUEUE_SIZE must be >= MAX_BATCH_SIZE")
        if self.preferred_batch_size is not None and not (
                1 <= self.preferred_batch_size <= self.max_batch_size):
            raise ValueError(f"{ENV_PREFIX}PREFERRED_BATCH_SIZE must be in 1..MAX_BATCH_SIZE")

    @property
    def threads(self) -> int:
        """Intra-op threads per worker: explicit, or this worker's share of the cores."""
        return self.intra_op_threads or max(1, usable_cpu_count() // self.workers)

    @property
    def image_limits(self) -> ImageLimits:
        """Limits passed to :func:`shared.imaging.decode_image`."""
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def require_model(self) -> tuple[str, Path]:
        """Framework and model directory, or a clear error naming the missing variable."""
        if not self.framework:
            raise ValueError(f"set {ENV_PREFIX}FRAMEWORK ({', '.join(runtime_names())})")
        if self.model_dir is None:
            raise ValueError(f"set {ENV_PREFIX}MODEL_DIR (models/<dataset>/<artifact>/<version>)")
        return self.framework, self.model_dir


@dataclass(frozen=True)
class ServerSettings(_FromMapping):
    """gunicorn master settings (env ``VERSUS_<NAME>``)."""

    host: str = "0.0.0.0"
    port: int = 8000
    workers: int = 1
    """Processes, each with its own model copy; 1 per GPU, or 1 owning every CPU core."""
    threads: int = 32
    """gthread request threads per worker: >= max_batch_size so a batch can fill."""
    timeout: int = 300
    """Heartbeat timeout; must exceed model load + warm-up (JAX compiles every bucket), which
    runs in the worker before it serves. gthread workers heartbeat from their event loop,
    so a long value does not hide stuck requests (none are killed by it anyway)."""
    graceful_timeout: int = 30
    """Seconds a worker has after SIGTERM to finish in-flight requests."""
    keepalive: int = 5
    access_log: bool = False
    log_level: str = "info"

    @property
    def bind(self) -> str:
        return f"{self.host}:{self.port}"
