"""bench.studies.variants: every row side by side in process, and the served columns from a
comparison run's results.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.studies import variants as study


def test_passes_alternate_order_and_rows_take_the_median() -> None:
    assert study.pass_orders(["a", "b", "c"], 3) == [["a", "b", "c"], ["c", "b", "a"],
                                                     ["a", "b", "c"]]
    row = study.combine([{"images_per_s": 10.0, "precision": "int8"},
                         {"error": "boom"}, {"images_per_s": 14.0, "precision": "int8"}])
    assert row == {"images_per_s": 12.0, "passes": [10.0, 14.0], "precision": "int8"}
    assert study.combine([{"error": "boom"}]) == {"error": "boom"}


def test_ratio_to_the_fp32_parent() -> None:
    rows = study.with_parent_ratio({
        "openvino": {"images_per_s": 40.0}, "openvino-int8": {"images_per_s": 160.0},
        "onnx-int8": {"images_per_s": 100.0}, "torch": {"error": "x"}})
    assert rows["openvino"]["x_parent"] == 1.0 and rows["openvino-int8"]["x_parent"] == 4.0
    assert rows["onnx-int8"]["x_parent"] is None  # its parent onnx was not measured
    assert rows["torch"]["x_parent"] is None


def test_table_adds_the_served_columns_of_a_run(recorded_results: dict[str, Any],
                                               add_variant: Callable[..., None]) -> None:
    add_variant(recorded_results, "onnx-int8", "onnx", 3.0, 0.8101, "pass")
    rows = study.with_parent_ratio({"onnx": {"images_per_s": 40.0, "precision": "fp32"},
                                    "onnx-int8": {"images_per_s": 120.0,
                                                  "precision": "int8"}})
    table = study.format_table(rows, 8, 2, recorded_results).splitlines()
    assert table[0].startswith("| runtime | precision | in-process img/s (batch 8, 2 threads)")
    int8 = table[3].split(" | ")
    assert int8[:4] == ["| onnx-int8", "int8", "120.0", "x3.00"]
    assert int8[4] == "229.0" and int8[8] == "pass" and int8[10] == "97.0 % |"
    plain = study.format_table(rows, 8, 2).splitlines()
    assert len(plain[0].split("|")) == 6


@pytest.mark.parametrize("args", [["--runtimes", "onnx-int4"], ["--batch", "0"],
                                  ["--stage-sizes", "x"]])
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        study.main(args)
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_real_run_prints_every_row(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = study.main(["--runtimes", "onnx,openvino,openvino-bf16", "--stage-sizes", "tiny",
                       "--size", "32", "--batch", "2", "--threads", "1", "--passes", "2",
                       "--repeats", "1", "--min-time-s", "0.05", "--cache", str(tmp_path)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines[2:]}
    assert list(rows) == ["onnx", "openvino", "openvino-bf16"]
    assert rows["openvino"][1] == "fp32" and rows["openvino"][3].strip(" |") == "x1.00"
    assert float(rows["openvino-bf16"][2].replace(",", "")) > 0
