"""The service-level objective a load test must meet (a locustfile helper, no locust import).

At the end of a run (``events.quitting``, see ``locustfile.py``) every stats row — each
request name ("torch /predict", "onnx /model", ...) and the aggregate — is checked against

- ``VERSUS_SLO_MAX_ERROR_RATIO`` (default 0.01): failed / all requests, and
- ``VERSUS_SLO_P95_MS`` (default 2000): the 95th percentile response time in ms.

Per row, not only in aggregate: one slow service must not hide behind three fast ones. A run
with no requests at all, or with exceptions in user code, also fails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from _config import env_number


@dataclass(frozen=True)
class Slo:
    max_error_ratio: float = 0.01
    p95_ms: float = 2000.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Slo:
        ratio = env_number(environ, "VERSUS_SLO_MAX_ERROR_RATIO", cls.max_error_ratio,
                           minimum=0.0)
        return cls(
            max_error_ratio=min(ratio, 1.0),
            p95_ms=env_number(environ, "VERSUS_SLO_P95_MS", cls.p95_ms, minimum=0.0),
        )

    def describe(self) -> str:
        return f"error ratio <= {self.max_error_ratio:g}, p95 <= {self.p95_ms:g} ms"


@dataclass(frozen=True)
class Row:
    """What the SLO needs of one Locust stats entry."""

    name: str
    requests: int
    failures: int
    p95_ms: float


def violations(rows: Sequence[Row], total: Row, slo: Slo, *, exceptions: int = 0
               ) -> list[str]:
    """Why the run misses ``slo`` (empty: it meets it)."""
    problems = []
    if total.requests == 0:
        problems.append("no requests were made (no user class selected, or the run was "
                        "stopped before the first request)")
    for row in [*rows, total]:
        if row.requests == 0:
            continue
        ratio = row.failures / row.requests
        if ratio > slo.max_error_ratio:
            problems.append(f"{row.name}: error ratio {ratio:.4f} ({row.failures}/"
                            f"{row.requests}) > {slo.max_error_ratio:g}")
        if row.p95_ms > slo.p95_ms:
            problems.append(f"{row.name}: p95 {row.p95_ms:g} ms > {slo.p95_ms:g} ms")
    if exceptions:
        problems.append(f"{exceptions} unhandled exception(s) in user code (see the "
                        f"exceptions report)")
    return problems
