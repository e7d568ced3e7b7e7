"""bench.robustness.worker_kill for real: a tiny ONNX service behind a real nginx, one worker
SIGKILLed under light load (needs nginx: skipped without it, .ci/run installs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.robustness.proxy import nginx_binary
from bench.robustness.worker_kill import KillRun, Outcome, main, summarize


def test_summarize_counts_what_the_kill_cost() -> None:
    """In flight = started before the kill and ended after it; the first success counts
    only requests sent after the kill; the longest gap spans consecutive 200s."""
    outcomes = [Outcome(0.0, 0.5, "ok"), Outcome(0.8, 1.2, "503"), Outcome(0.9, 1.1, "lost"),
                Outcome(1.3, 3.0, "ok"), Outcome(0.4, 1.05, "ok")]
    run = summarize(KillRun("onnx", "proxy", 1, 123), outcomes, killed_at=1.0)
    assert run.sent == 5
    assert run.outcomes == {"ok": 3, "503": 1, "lost": 1}
    assert run.in_flight_at_kill == 3
    assert run.in_flight_outcomes == {"503": 1, "lost": 1, "ok": 1}
    assert run.first_success_after_kill_s == pytest.approx(2.0)
    assert run.longest_gap_without_success_s == pytest.approx(1.95)
    assert run.slowest_error_answer_s == pytest.approx(0.4)


@pytest.mark.skipif(nginx_binary() is None,
                    reason="nginx not installed (Debian: apt-get install nginx; .ci/run does)")
def test_a_killed_worker_behind_the_proxy_loses_nothing(tiny_models: Path, tmp_path: Path
                                                        ) -> None:
    """Behind nginx no request goes unanswered when the only worker is SIGKILLed: what it
    held, and what arrives while the new worker loads its model, gets a prompt 503 +
    Retry-After; then requests succeed again."""
    out = tmp_path / "runs.json"
    code = main(["--model", f"onnx={tiny_models / 'bloodmnist' / 'onnx' / '1'}",
                 "--workers", "1", "--modes", "proxy", "--clients", "2", "--warm-s", "1.5",
                 "--settle-s", "1", "--recovery-timeout-s", "60",
                 "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert code == 0
    [run] = json.loads(out.read_text())
    assert run["respawned"]
    assert run["outcomes"].get("lost", 0) == 0
    assert set(run["outcomes"]) <= {"ok", "503"}
    assert run["first_success_after_kill_s"] is not None
    assert run["first_success_after_kill_s"] < 60
    assert run["slowest_error_answer_s"] is None or run["slowest_error_answer_s"] < 5
