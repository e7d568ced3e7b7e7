"""``loadtest/_slo.py``: the SLO every request name and the aggregate must meet."""

from __future__ import annotations

import pytest
from _config import ConfigError
from _slo import Row, Slo, violations

SLO = Slo(max_error_ratio=0.01, p95_ms=500)


def total(*rows: Row) -> Row:
    return Row("Aggregated", sum(r.requests for r in rows), sum(r.failures for r in rows),
               max(r.p95_ms for r in rows))


def test_a_run_within_the_slo_passes() -> None:
    rows = [Row("torch /model", 1, 0, 5), Row("torch /predict", 1000, 10, 500)]
    assert violations(rows, total(*rows), SLO) == []


def test_each_row_is_checked_not_only_the_aggregate() -> None:
    slow = Row("jax /predict", 100, 0, 900)
    fine = [Row(f"{fw} /predict", 10_000, 0, 50) for fw in ("torch", "tensorflow", "onnx")]
    aggregate = Row("Aggregated", 30_100, 2, 60)
    assert violations([slow, *fine], aggregate, SLO) == ["jax /predict: p95 900 ms > 500 ms"]


def test_error_ratio_violation_names_the_counts() -> None:
    rows = [Row("onnx /predict", 100, 2, 10)]
    problems = violations(rows, total(*rows), SLO)
    assert problems == ["onnx /predict: error ratio 0.0200 (2/100) > 0.01",
                        "Aggregated: error ratio 0.0200 (2/100) > 0.01"]


def test_no_requests_and_exceptions_fail() -> None:
    assert "no requests were made" in violations([], Row("Aggregated", 0, 0, 0), SLO)[0]
    rows = [Row("onnx /predict", 10, 0, 10)]
    assert violations(rows, total(*rows), SLO, exceptions=2) == [
        "2 unhandled exception(s) in user code (see the exceptions report)"]


def test_slo_from_env() -> None:
    assert Slo.from_env({}) == Slo(0.01, 2000.0)
    assert Slo.from_env({"VERSUS_SLO_MAX_ERROR_RATIO": "0", "VERSUS_SLO_P95_MS": "250"}
                        ) == Slo(0.0, 250.0)
    with pytest.raises(ConfigError, match="VERSUS_SLO_P95_MS"):
        Slo.from_env({"VERSUS_SLO_P95_MS": "-1"})
