"""Every setting of a bench run in one frozen dataclass, and the two profiles.

``full`` is the real comparison (concurrency 1..32, three repeats, 5 s windows, ResNet-50
sizes 28..224 px); ``demo`` fits a 2-core laptop in a few minutes (what ``make demo`` runs
after training tiny models). A command-line flag overrides its profile's value; the values
a run used are written to results.json.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load.payloads import PayloadOptions
from bench.services import LocalServiceSettings
from shared.runtimes import base_runtimes, runtime_names

FRAMEWORKS = tuple(base_runtimes())
"""The deployed runtimes, the default of a run (variants, e.g. torch-bf16, are run with
--frameworks)."""
RUNTIMES = runtime_names()
"""Everything --frameworks accepts: the base rows and their variants."""
DEFAULT_LOCUSTFILE = "loadtest"
OPEN_LOOP_FRACTION = 0.7
"""Auto open-loop rate: this fraction of the *lowest* peak closed-loop throughput, so that
every service is compared at one rate that all of them can sustain."""


@dataclass(frozen=True)
class BenchConfig:
    """What ``python -m bench`` does (see ``bench/cli.py`` for the flag of each field)."""

    profile: str = "full"
    frameworks: tuple[str, ...] = FRAMEWORKS
    models: Path = Path("models")
    dataset: str | None = None
    version: str | None = None
    urls: dict[str, str] = field(default_factory=dict)
    out: Path = Path("reports")
    run_id: str | None = None
    # closed loop
    levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    repeats: int = 3
    window_s: float = 5.0
    stable_windows: int = 3
    tolerance: float = 0.10
    level_warmup_s: float = 3.0
    level_max_s: float = 50.0
    service_warmup_s: float = 10.0
    warmup_users: int = 4
    # open loop
    open_loop: bool = True
    open_loop_rate: float | None = None
    open_loop_fraction: float = OPEN_LOOP_FRACTION
    open_loop_duration_s: float = 60.0
    open_loop_warmup_s: float = 5.0
    open_loop_connections: int = 64
    # in-process
    inprocess: bool = True
    inprocess_batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    inprocess_repeats: int = 3
    inprocess_min_time_s: float = 2.0
    image_sizes: tuple[int, ...] = (28, 64, 128, 224)
    size_batch: int = 8
    cache: Path | None = None
    # accuracy gate and verdicts
    accuracy_gate: bool = True
    eval_data: Path | None = None
    """Labelled dataset whose test split the gate sends through every service (None: the
    payload source when that is a dataset)."""
    eval_max_images: int | None = None
    """Seeded subset of the test split (None: all of it)."""
    eval_concurrency: int = 4
    slo_p99_ms: float = 100.0
    usd_per_hour: float | None = None
    """Instance price for the cost column (None: the price of the EC2 instance type the run
    detects, else no cost)."""
    # services and machine
    service: LocalServiceSettings = field(default_factory=LocalServiceSettings)
    ready_timeout_s: float = 900.0
    loadgen_cpus: tuple[int, ...] | None = None
    payload: PayloadOptions = field(default_factory=PayloadOptions)
    locustfile: str = DEFAULT_LOCUSTFILE
    training_table: Path | None = None
    parity: Path | None = None
    seed: int = 0

    def replace(self, **changes: Any) -> BenchConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """JSON-able copy (paths as strings) for results.json."""
        def convert(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [convert(v) for v in value]
            return value

        return convert(dataclasses.asdict(self))


RUN_PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "demo": {
        # 1 and 4 users (not 1, 2, 4): room for seven services (five runtimes, a bf16 and an
        # int8 variant) in the demo's minutes.
        "levels": (1, 4),
        "repeats": 2,
        "window_s": 2.0,
        "stable_windows": 3,
        "level_warmup_s": 1.0,
        "level_max_s": 12.0,
        "service_warmup_s": 2.0,
        "warmup_users": 2,
        "open_loop_duration_s": 10.0,
        "open_loop_warmup_s": 2.0,
        "open_loop_connections": 16,
        "inprocess_batch_sizes": (1, 2, 4, 8),
        "inprocess_repeats": 2,
        "inprocess_min_time_s": 0.5,
        "size_batch": 4,
        # up to 128 px (the full profile goes on to 224): the size sweep took 2:00 of a demo
        # measured at 12:00 on 2 quiet cores, at the limit of its 12 minutes, and its 224 px
        # point is the costliest to build (a fresh clone's cache is empty) and to time
        "image_sizes": (28, 64, 128),
        "ready_timeout_s": 300.0,
        "service": LocalServiceSettings(intra_op_threads=1, http_threads=16, max_batch_size=8,
                                   queue_size=32),
        "payload": PayloadOptions(profile="small", count=8),
    },
}


def profile_config(name: str, **overrides: Any) -> BenchConfig:
    """The profile's settings with ``overrides`` (None values are ignored) on top."""
    if name not in RUN_PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(RUN_PROFILES)}")
    values = {**RUN_PROFILES[name], **{k: v for k, v in overrides.items() if v is not None}}
    return BenchConfig(profile=name, **values)
