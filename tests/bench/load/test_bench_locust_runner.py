"""bench.load.locust_runner and bench.load.locust_plugin: raw samples in, stable windows out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.load.locust_runner import (
    PLUGIN,
    LocustSetup,
    locust_command,
    measured_part,
    read_samples,
    utilisation,
)
from bench.stats import Sample, windows


def test_read_samples_keeps_complete_inference_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.tsv"
    path.write_text("100.5\t12.0\t1\t200\tPOST\tonnx /predict\n"
                    "100.6\t3.0\t1\t200\tGET\tonnx /model\n"
                    "100.7\t0.4\t0\t0\tPOST\tonnx /predict\n"
                    "100.8\t11.0\t1\t2")  # still being written
    samples, offset = read_samples(path, 0)
    assert samples == [Sample(100.5, 12.0, True, 200), Sample(100.7, 0.4, False, 0)]
    with open(path, "a") as f:
        f.write("00\tPOST\tonnx /predict\n")
    more, _ = read_samples(path, offset)
    assert more == [Sample(100.8, 11.0, True, 200)]
    assert read_samples(tmp_path / "missing.tsv", 0) == ([], 0)


def test_measured_part_uses_only_the_last_windows() -> None:
    ramp = [Sample(0.1 + i * 0.1, 100.0, True, 200) for i in range(9)]  # slow start
    steady = [Sample(1.0 + i * 0.05, 10.0, True, 200) for i in range(60)]  # 20/s for 3 s
    failures = [Sample(2.5, 0.1, False, 0)]
    samples = ramp + steady + failures
    series = windows(samples, 0.0, 1.0, 4.0)
    part = measured_part(samples, series, 3)
    assert part is not None
    assert part["start"] == 1.0 and part["end"] == 4.0
    assert part["ok"] == 60 and part["failed"] == 1
    assert part["throughput_rps"] == 20.0  # failures never count
    assert part["latency_ms"]["p99"] == 10.0  # the slow ramp is not in the percentiles
    assert part["codes"] == {"200": 60, "0": 1}


def test_locust_command_selects_one_framework_and_adds_the_plugin(tmp_path: Path) -> None:
    setup = LocustSetup(locustfile="loadtest", selection=lambda fw: ["--tags", fw], env={},
                        url_variable=lambda fw: f"VERSUS_{fw.upper()}_URL")
    command = locust_command(setup, "onnx", 8, 75.4, tmp_path / "r0-u8")
    assert command[:3] == [sys.executable, "-m", "locust"]
    assert command[command.index("-f") + 1] == f"loadtest,{PLUGIN}"
    assert command[command.index("-u") + 1] == "8" and command[command.index("-r") + 1] == "8"
    assert command[command.index("-t") + 1] == "75s"
    assert "--csv-full-history" in command and command[-2:] == ["--tags", "onnx"]
    assert "--host" not in command  # it would overwrite every user class's own host


def test_utilisation_covers_only_the_measured_span() -> None:
    # 0.2 cores while Locust starts (t < 3), then 0.9 cores
    trace = [(float(t), 0.2 * min(t, 3) + 0.9 * max(0, t - 3)) for t in range(11)]
    assert utilisation(trace, 4.0, 10.0) == pytest.approx(0.9)
    assert utilisation(trace, 0.0, 3.0) == pytest.approx(0.2)
    assert utilisation(trace[:1], 0.0, 10.0) is None
