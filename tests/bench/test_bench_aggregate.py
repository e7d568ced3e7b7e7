"""bench.aggregate: repeats to spreads, and the rules that keep broken runs from looking
good (failures are not throughput, a died level has no numbers, died services' peaks)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.aggregate import (
    efficiency,
    level_status,
    summarise_closed_loop,
    summarise_level,
    summarise_service,
)


def run(users: int, rps: float | None, status: str = "ok", p99: float = 50.0,
        batch: float = 1.0) -> dict[str, Any]:
    measured = None if rps is None else {
        "throughput_rps": rps, "error_rate": 0.0,
        "latency_ms": {"p50": p99 / 2, "p90": p99 * 0.8, "p95": p99 * 0.9, "p99": p99}}
    return {"users": users, "status": status, "measured": measured,
            "server": {"stages_ms": {"compute": 10.0, "queue": 1.0}, "avg_batch_size": batch,
                       "request_ms": {"mean": 12.0}},
            "loadgen": {"cpu_utilisation": 0.2, "saturated": False},
            "service_cpu": {"utilisation": 1.5}}


def test_level_status_rules() -> None:
    assert level_status([run(1, 10), run(1, 11)]) == "ok"
    assert level_status([run(1, 10), run(1, 11, "unstable")]) == "unstable"
    assert level_status([run(1, None, "failed")]) == "failed"
    assert level_status([run(1, 10), run(1, None, "died")]) == "died"


def test_level_summary_spreads_over_repeats() -> None:
    summary = summarise_level(4, [run(4, 10, p99=40), run(4, 12, p99=60), run(4, 11, p99=50)])
    assert summary["throughput_rps"] == {"min": 10, "median": 11, "max": 12, "n": 3,
                                         "values": [10, 12, 11]}
    assert summary["latency_ms"]["p99"]["median"] == 50
    assert summary["stages_ms"]["compute"]["median"] == 10.0
    assert summary["stages_ms"]["decode"] is None
    assert summary["avg_batch_size"]["median"] == 1.0
    assert summary["measured_repeats"] == 3


def test_a_level_the_service_died_at_has_no_numbers() -> None:
    summary = summarise_level(8, [run(8, 500.0), run(8, None, "died")])
    assert summary["status"] == "died"
    assert summary["throughput_rps"] is None and summary["latency_ms"]["p99"] is None


def test_peak_skips_died_and_failed_levels() -> None:
    runs = [run(1, 10), run(2, 20), run(4, 900, "died"), run(8, 30, "unstable"),
            run(16, None, "failed")]
    closed = summarise_closed_loop(runs, [1, 2, 4, 8, 16])
    assert [lv["status"] for lv in closed["levels"]] == ["ok", "ok", "died", "unstable",
                                                          "failed"]
    assert closed["peak"]["users"] == 8 and closed["peak"]["throughput_rps"]["median"] == 30


def test_efficiency_is_served_over_in_process() -> None:
    peak = {"throughput_rps": {"median": 45.0}}
    assert efficiency(peak, {"best_images_per_s": {"median": 50.0}}) == pytest.approx(0.9)
    assert efficiency(None, {"best_images_per_s": {"median": 50.0}}) is None
    assert efficiency(peak, {"skipped": "external"}) is None


def test_service_summary_marks_death() -> None:
    record = {"runs": [run(1, 10)], "death": {"exit_code": -9}, "status": "ok",
              "in_process": {"best_images_per_s": {"median": 20.0}}}
    summarise_service(record, [1])
    assert record["status"] == "died"
    assert record["efficiency"] == pytest.approx(0.5)
