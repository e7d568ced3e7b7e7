"""``python -m bench soak``: the verdict rules on recorded answers, and a real one-minute
soak of a tiny ONNX service through the nginx proxy (slow; needs nginx)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import main as bench_main
from bench.robustness.proxy import nginx_binary
from bench.robustness.soak import MIX, Answer, summarize

MIB = 2**20


def answers(status: int | None = 200, retry_after: bool = False) -> list[Answer]:
    """Two intervals of 10 s with a good answer each, and one of ``kind`` with ``status``."""
    return [Answer("good", 1.0, 0.01, 200), Answer("good", 11.0, 0.03, 200),
            Answer("undecodable", 12.0, 0.02, status, retry_after)]


def test_every_request_answered_and_flat_memory_passes() -> None:
    summary = summarize(answers(400), [100 * MIB, 102 * MIB], 0.0, 10.0, 0.05)
    assert summary["passed"] is True
    assert summary["lost"] == 0 and summary["bad_answers"] == 0
    assert summary["by_kind"] == {"good": {"200": 2}, "undecodable": {"400": 1}}
    assert [i["sent"] for i in summary["intervals"]] == [1, 2]
    assert summary["intervals"][1]["rss_mib"] == 102.0


@pytest.mark.parametrize(("status", "retry_after", "reason"), [
    (None, False, "lost"),           # no HTTP answer
    (500, False, "bad_answers"),     # a server error for bad input
    (503, False, "bad_answers"),     # busy without saying when to come back
])
def test_a_lost_or_bad_answer_fails(status: int | None, retry_after: bool, reason: str
                                    ) -> None:
    summary = summarize(answers(status, retry_after), [100 * MIB] * 2, 0.0, 10.0, 0.05)
    assert summary["passed"] is False
    assert summary[reason] == 1


def test_a_busy_answer_with_retry_after_is_an_answer() -> None:
    assert summarize(answers(503, True), [100 * MIB] * 2, 0.0, 10.0, 0.05)["passed"] is True


def test_memory_growth_after_the_first_interval_fails() -> None:
    summary = summarize(answers(400), [100 * MIB, 106 * MIB], 0.0, 10.0, 0.05)
    assert summary["rss_growth_after_first_interval"] == pytest.approx(0.06)
    assert summary["passed"] is False


@pytest.mark.slow  # one minute of saturation
@pytest.mark.skipif(nginx_binary() is None,
                    reason="nginx not installed (Debian: apt-get install nginx; .ci/run does)")
def test_one_minute_soak_through_the_proxy(tiny_models: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A minute of mixed good and bad requests: every one answered as expected for its
    kind, and the service's memory flat after the first 20 s."""
    out = tmp_path / "soak.json"
    code = bench_main(["soak", "--model", f"onnx={tiny_models / 'bloodmnist' / 'onnx' / '1'}",
                       "--proxy", "--minutes", "1", "--interval-s", "20", "--concurrency", "4",
                       "--json", str(out)])
    summary = json.loads(out.read_text())
    assert code == 0, summary
    assert summary["lost"] == 0 and summary["bad_answers"] == 0
    assert summary["sent"] == summary["answered"] > 100
    assert set(summary["by_kind"]) == set(MIX)
    expected = {"good": {"200", "503"}, "undecodable": {"400"},
                "wrong-content-type": {"415"}, "oversized": {"413"}, "bad-oip-json": {"400"}}
    for kind, statuses in summary["by_kind"].items():
        assert set(statuses) <= expected[kind], (kind, statuses)
    assert len(summary["intervals"]) == 3
    assert all(i["rss_mib"] > 0 and i["good_p99_ms"] is not None for i in summary["intervals"])
    assert json.loads(capsys.readouterr().out) == summary
