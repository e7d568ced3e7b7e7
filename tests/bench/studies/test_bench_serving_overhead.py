"""The estimators of ``bench.studies.serving_overhead``: bracketing in-process phases, a reference
batch size chosen on medians, medians over rounds."""

from __future__ import annotations

import pytest

from bench.studies.serving_overhead import summarize


def in_process(p50: float, **images_per_s: float) -> dict:
    return {"predict_p50_ms": p50,
            "images_per_s_by_batch": {k.removeprefix("b"): v for k, v in images_per_s.items()}}


def http(images_per_s: float, p50: float = 60.0, per_busy_s: float = 20.0) -> dict:
    return {"http_images_per_s": images_per_s, "http_p50_ms": p50, "paired_overhead_ms": 4.0,
            "runtime_busy": 1.0, "mean_batch": 4.0, "images_per_busy_s": per_busy_s,
            "server_cpu_cores": 1.9, "client_cpu_cores": 0.01}


def test_each_http_phase_is_compared_with_the_mean_of_its_two_neighbours() -> None:
    # the machine slows down steadily: 20, 18, 16 img/s in-process around 19 and 17 served
    phases = [in_process(50, b1=10, b4=20), in_process(55, b1=9, b4=18),
              in_process(60, b1=8, b4=16)]
    result = summarize(phases, [http(19.0, 57.0), http(17.0, 62.0)])
    assert result["reference_batch"] == 4
    assert [r["efficiency"] for r in result["rounds"]] == pytest.approx([1.0, 1.0])
    assert [r["overhead_ms"] for r in result["rounds"]] == pytest.approx([4.5, 4.5])
    assert result["efficiency"] == pytest.approx(1.0)
    assert result["efficiency_range"] == pytest.approx([1.0, 1.0])
    assert result["in_process_images_per_s_by_batch"] == {1: 9, 4: 18}
    assert result["paired_overhead_ms"] == 4.0 and len(result["rounds"]) == 2


def test_the_reference_batch_is_the_best_median_not_one_lucky_phase() -> None:
    # batch 8 spikes once (noise); batch 4 is better in the median
    phases = [in_process(50, b4=20, b8=30), in_process(50, b4=20, b8=15),
              in_process(50, b4=20, b8=16)]
    result = summarize(phases, [http(18.0), http(19.0)])
    assert result["reference_batch"] == 4
    assert result["efficiency"] == pytest.approx(0.925)
    assert result["efficiency_range"] == pytest.approx([0.9, 0.95])


def test_compute_speed_compares_busy_seconds_at_the_served_batch_size() -> None:
    # served at batch 1: its batches ran 15 images per busy second against 20 in process
    phases = [in_process(50, b1=20, b4=30), in_process(50, b1=20, b4=30)]
    assert summarize(phases, [http(14.0, per_busy_s=15.0)], 1)["compute_speed"] == 0.75
    assert summarize(phases, [http(14.0)])["compute_speed"] is None  # preferred unknown
    assert summarize(phases, [http(14.0)], 3)["compute_speed"] is None  # never measured


@pytest.mark.parametrize("phases, rounds", [(1, 1), (3, 1), (1, 0)])
def test_phases_must_bracket_every_round(phases: int, rounds: int) -> None:
    with pytest.raises(ValueError, match="one more in-process phase"):
        summarize([in_process(50, b1=10)] * phases, [http(9.0)] * rounds)


def test_zero_rounds_is_refused_before_anything_starts(capsys) -> None:
    from bench.studies.serving_overhead import main

    with pytest.raises(SystemExit, match="--rounds must be >= 1"):
        main(["--rounds", "0", "--runtimes", "onnx"])
