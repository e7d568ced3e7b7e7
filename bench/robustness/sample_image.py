"""One small random RGB PNG per seed: the good request body of the robustness benchmarks
(``slow_clients``, ``worker_kill``, ``soak`` in ``bench.robustness``), decodable by every service
and cheap to send, so that those measure the serving path rather than the network."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def random_png(seed: int = 0, size: int = 64) -> bytes:
    """A ``size`` x ``size`` PNG of seeded random pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
