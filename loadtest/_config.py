"""Load-test settings from ``VERSUS_*`` environment variables (a helper: the leading ``_``
keeps ``locust -f loadtest/`` from loading it as a locustfile).

Everything a run needs comes from the environment, never from ``--host``: docker-compose and
the terraform load generators pass every runtime's target as ``VERSUS_<FRAMEWORK>_URL``, and every
Locust worker process reads the same values. A bad value fails at start with a message
naming the variable, never silently falls back to a default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shared.runtimes import get_runtime

PAYLOAD_PROFILES = ("camera", "small")
UPLOADS = ("multipart", "raw", "oip-binary", "oip-bytes")
"""How each image is sent: ``POST /predict`` as a form upload or as the raw file, or
``POST /v2/models/<dataset>/infer`` in the binary tensor data extension (tritonclient's
default framing) as a preprocessed FP32 tensor or as the encoded file in a BYTES element."""
OIP_UPLOADS = ("oip-binary", "oip-bytes")
SHAPES = ("", "step")


class ConfigError(ValueError):
    """An environment variable holds a value the load test cannot use."""


def url_variable(framework: str) -> str:
    """``VERSUS_ONNX_URL``, ``VERSUS_ONNX_INT8_URL``: a name a shell can export."""
    return f"VERSUS_{framework.upper().replace('-', '_')}_URL"


def target_url(framework: str, environ: Mapping[str, str] = os.environ) -> str:
    """``VERSUS_<FRAMEWORK>_URL`` without a trailing slash (default http://localhost:<port>)."""
    default = f"http://localhost:{get_runtime(framework).port}"
    url = environ.get(url_variable(framework), "").strip() or default
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{url_variable(framework)} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def env_number(environ: Mapping[str, str], name: str, default: float, *, minimum: float,
               integer: bool = False) -> float:
    """``environ[name]`` as a finite number >= minimum (an int if ``integer``), else default."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} >= {minimum}, got {raw!r}")
    return value


def env_choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """``environ[name]`` (lower-cased) if among ``choices``; the first choice when unset."""
    value = environ.get(name, "").strip().lower()
    if value and value not in choices:
        raise ConfigError(f"{name} must be one of {[c for c in choices if c]}, got {value!r}")
    return value or choices[0]


@dataclass(frozen=True)
class PayloadSettings:
    """Which images the users upload and how (``VERSUS_PAYLOAD_*``, ``VERSUS_UPLOAD``)."""

    source: Path | None = None
    """A directory of images, a DR dataset directory (Kaggle/APTOS layout, split-aware) or a
    MedMNIST ``.npz``; None = a small synthetic fundus set generated once into the temp dir."""
    profile: str = "camera"
    """camera: the files as they are on disk; small: re-encoded at ``size`` px once at start."""
    size: int = 224
    split: str = "test"
    """Dataset split to draw from (train/val/test/all), for dataset directories and .npz."""
    count: int = 64
    """At most this many images (a seeded sample) are held in memory per Locust process."""
    seed: int = 0
    upload: str = "multipart"
    """multipart: form field ``image`` (a browser, ``curl -F``); raw: the body is the image
    (both ``POST /predict``); oip-binary: the image preprocessed by the client into the
    model's FP32 NHWC input tensor; oip-bytes: the image file as a BYTES element (both OIP
    ``/v2/models/<dataset>/infer``, binary framing, binary outputs)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> PayloadSettings:
        source = environ.get("VERSUS_PAYLOAD_DIR", "").strip()
        split = environ.get("VERSUS_PAYLOAD_SPLIT", "").strip() or cls.split
        if split not in ("train", "val", "test", "all"):
            raise ConfigError(f"VERSUS_PAYLOAD_SPLIT must be train, val, test or all, "
                              f"got {split!r}")
        return cls(
            source=Path(source).expanduser() if source else None,
            profile=env_choice(environ, "VERSUS_PAYLOAD_PROFILE", PAYLOAD_PROFILES),
            size=int(env_number(environ, "VERSUS_PAYLOAD_SIZE", cls.size, minimum=8,
                                integer=True)),
            split=split,
            count=int(env_number(environ, "VERSUS_PAYLOAD_COUNT", cls.count, minimum=1,
                                 integer=True)),
            seed=int(env_number(environ, "VERSUS_PAYLOAD_SEED", cls.seed, minimum=0,
                                integer=True)),
            upload=env_choice(environ, "VERSUS_UPLOAD", UPLOADS),
        )


@dataclass(frozen=True)
class StepPlan:
    """Step load: ``step_users`` more users every ``step_seconds`` up to ``max_users``; the
    last step runs its full duration too, then the test stops (``VERSUS_STEP_*``)."""

    step_users: int = 4
    step_seconds: float = 60.0
    max_users: int = 32
    spawn_rate: float = 4.0
    """Users started per second within a step (default: step_users, i.e. ~1 s ramps)."""

    @property
    def steps(self) -> int:
        return math.ceil(self.max_users / self.step_users)

    @property
    def duration_s(self) -> float:
        return self.steps * self.step_seconds

    def users_at(self, run_time_s: float) -> int | None:
        """Target user count at ``run_time_s`` into the test; None once the plan is over."""
        if run_time_s >= self.duration_s:
            return None
        step = int(run_time_s // self.step_seconds)
        return min((step + 1) * self.step_users, self.max_users)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StepPlan:
        step_users = int(env_number(environ, "VERSUS_STEP_USERS", cls.step_users, minimum=1,
                                    integer=True))
        plan = cls(
            step_users=step_users,
            step_seconds=env_number(environ, "VERSUS_STEP_SECONDS", cls.step_seconds,
                                    minimum=0.1),
            max_users=int(env_number(environ, "VERSUS_STEP_MAX_USERS", cls.max_users,
                                     minimum=1, integer=True)),
            spawn_rate=env_number(environ, "VERSUS_STEP_SPAWN_RATE", step_users,
                                  minimum=0.01),
        )
        if plan.max_users < plan.step_users:
            raise ConfigError(f"VERSUS_STEP_MAX_USERS ({plan.max_users}) must be >= "
                              f"VERSUS_STEP_USERS ({plan.step_users})")
        return plan


def load_shape(environ: Mapping[str, str] = os.environ) -> str:
    """``VERSUS_LOAD_SHAPE``: "" (plain ``-u/-r/-t`` run) or "step" (:class:`StepPlan`)."""
    return env_choice(environ, "VERSUS_LOAD_SHAPE", SHAPES)


def wait_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """``VERSUS_WAIT_S``: think time between a user's requests (default 0: every user is one
    closed-loop client sending its next image as soon as the last answer arrives)."""
    return env_number(environ, "VERSUS_WAIT_S", 0.0, minimum=0.0)
