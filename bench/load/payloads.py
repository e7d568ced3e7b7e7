"""The images every measurement uses: the load test's own payload pool.

Locust's users, the open-loop generator and the in-process baseline must send/compute the
*same* images, so the bench does not build its own pool: it loads ``loadtest/_payloads.py``
with the same ``VERSUS_PAYLOAD_*`` settings it passes to Locust. (The locustfile helpers
import each other as top-level modules, the way Locust loads them, so ``loadtest/`` goes on
``sys.path`` for the import; they import only the standard library, numpy, Pillow and
``shared``.)
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.processes import REPO

LOADTEST = REPO / "loadtest"


@dataclass(frozen=True)
class PayloadOptions:
    """What ``--payload-*`` chose; becomes ``VERSUS_PAYLOAD_*`` for Locust."""

    source: Path | None = None
    profile: str = "camera"
    size: int = 224
    count: int = 16
    seed: int = 0
    upload: str = "multipart"

    def env(self) -> dict[str, str]:
        env = {"VERSUS_PAYLOAD_PROFILE": self.profile, "VERSUS_PAYLOAD_SIZE": str(self.size),
               "VERSUS_PAYLOAD_COUNT": str(self.count), "VERSUS_PAYLOAD_SEED": str(self.seed),
               "VERSUS_UPLOAD": self.upload}
        if self.source is not None:
            env["VERSUS_PAYLOAD_DIR"] = str(Path(self.source).resolve())
        return env


@dataclass(frozen=True)
class ServiceRequests:
    """What one service is sent: ``path`` and the (body, headers) of each pool image."""

    path: str
    """``/predict`` (``?input=dataset`` for dataset images) or the OIP inference route."""
    payloads: tuple[tuple[bytes, Mapping[str, str]], ...]


@dataclass(frozen=True)
class Payloads:
    """The loaded pool: encoded images and the requests the locustfile sends."""

    images: tuple[bytes, ...]
    description: str
    pool: Any
    """The load test's ``PayloadPool`` (``loadtest/_payloads.py``)."""
    upload: str = "multipart"

    @property
    def requests(self) -> tuple[tuple[bytes, str], ...]:
        """(body, Content-Type) of ``POST /predict`` in the upload mode (multipart for the
        OIP modes, which are not /predict uploads)."""
        mode = "raw" if self.upload == "raw" else "multipart"
        return tuple(p.upload(mode) for p in self.pool.payloads)

    def for_service(self, framework: str, manifest: Mapping[str, Any]) -> ServiceRequests:
        """Exactly the requests the locustfile's users send ``framework``'s service (whose
        manifest, ``GET /model``, says its dataset and, for oip-binary, its model input)."""
        model = _loadtest_module("_checks").ModelInfo.from_manifest(manifest, framework)
        built = [p.request(self.upload, model) for p in self.pool.payloads]
        return ServiceRequests(built[0].path, tuple((r.body, r.headers) for r in built))


def _loadtest_module(name: str) -> Any:
    if str(LOADTEST) not in sys.path:
        sys.path.insert(0, str(LOADTEST))
    return __import__(name)


_LOADTEST_CONFIG = _loadtest_module("_config")
PAYLOAD_PROFILES: tuple[str, ...] = _LOADTEST_CONFIG.PAYLOAD_PROFILES
"""``--payload-profile`` choices: the load test's own (``VERSUS_PAYLOAD_PROFILE``)."""
UPLOADS: tuple[str, ...] = _LOADTEST_CONFIG.UPLOADS
"""``--upload`` choices: the load test's own (``VERSUS_UPLOAD``)."""
LOADTEST_URL_VARIABLE = _LOADTEST_CONFIG.url_variable
"""framework -> the variable the locustfile reads its service's URL from."""


def load_payloads(options: PayloadOptions) -> Payloads:
    """Load (or, without a source, generate once) the pool the locustfile will use."""
    config = _LOADTEST_CONFIG
    pool_module = _loadtest_module("_payloads")
    settings = config.PayloadSettings.from_env(options.env())
    pool = pool_module.load_pool(settings)
    return Payloads(images=tuple(p.data for p in pool.payloads), description=pool.describe(),
                    pool=pool, upload=settings.upload)
