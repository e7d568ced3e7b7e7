"""bench.report.render on a recorded results.json: tables with spreads, embedded plots, a dead
service shown as died (never as fast), and the HTML rendering in headless Chromium."""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.report import plots
from bench.report.render import load_results, summary_text, write_report
from bench.report.tables import all_tables, fmt_spread

SPREAD = re.compile(r"^[\d,]+\.\d+ \[[\d,]+\.\d+–[\d,]+\.\d+\]$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rows_of(table: Any, framework: str) -> list[list[str]]:
    return [row for row in table.rows if row[0] == framework]


@pytest.fixture(scope="module")
def report_dir(recorded_results_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded run's report, rendered once for the module (plots take seconds)."""
    return tmp_path_factory.mktemp("report")


@pytest.fixture(scope="module")
def written(recorded_results_path: Path, report_dir: Path) -> tuple[Path, Path]:
    return write_report(load_results(recorded_results_path), report_dir)


def test_fmt_spread_shows_median_and_range() -> None:
    assert fmt_spread({"min": 1.0, "median": 2.0, "max": 3.5, "n": 3}) == "2.0 [1.0–3.5]"
    assert fmt_spread({"min": 2.0, "median": 2.0, "max": 2.0, "n": 1}) == "2.0"
    assert fmt_spread(None) == "—"


def test_summary_has_peak_with_spread_and_efficiency(recorded_results: dict[str, Any]) -> None:
    summary = all_tables(recorded_results)["summary"]
    assert [row[0] for row in summary.rows] == ["torch", "tensorflow", "jax", "onnx"]
    onnx = rows_of(summary, "onnx")[0]
    peak = recorded_results["services"]["onnx"]["closed_loop"]["peak"]
    assert onnx[1] == "ok"
    assert SPREAD.match(onnx[2]) and onnx[2].startswith(f"{peak['throughput_rps']['median']:.1f}")
    assert onnx[3] == str(peak["users"])
    assert float(onnx[7]) == pytest.approx(recorded_results["services"]["onnx"]["efficiency"],
                                           abs=0.005)


def test_a_service_whose_every_level_failed_is_not_ok(recorded_results: dict[str, Any]
                                                       ) -> None:
    """A live service whose every response failed the load test's checks (no good answer at
    any level) is reported as failed, not as ``ok`` with empty figures."""
    results = copy.deepcopy(recorded_results)
    onnx = results["services"]["onnx"]
    for run in onnx["runs"]:
        run["status"] = "failed"
    onnx["closed_loop"]["peak"] = None
    row = rows_of(all_tables(results)["summary"], "onnx")[0]
    assert row[1].startswith("FAILED") and row[2] == "—"
    assert rows_of(all_tables(recorded_results)["summary"], "onnx")[0][1] == "ok"


def test_every_measured_level_carries_its_spread(recorded_results: dict[str, Any]) -> None:
    table = all_tables(recorded_results)["closed_loop"]
    headers = table.headers
    torch_rows = rows_of(table, "torch")
    assert [row[1] for row in torch_rows] == ["1", "2", "4", "8", "16"]
    for row in torch_rows:
        for column in ("req/s", "p50 ms", "p90 ms", "p95 ms", "p99 ms"):
            assert SPREAD.match(row[headers.index(column)]), (column, row)
    jax_16 = rows_of(table, "jax")[-1]
    assert jax_16[2] == "unstable"
    assert table.row_classes[table.rows.index(jax_16)] == "warn"


def test_a_dead_service_reads_as_died_not_as_fast(recorded_results: dict[str, Any],
                                                  written: tuple[Path, Path]) -> None:
    tables = all_tables(recorded_results)
    tf = rows_of(tables["summary"], "tensorflow")[0]
    assert tf[1].startswith("DIED (exit code -9")
    assert "users 8" in tf[1]
    assert tf[2] == "died" and tf[4] == "died" and tf[7] == "died"
    assert not any(SPREAD.match(cell) for cell in tf[2:5])
    level_8 = [row for row in rows_of(tables["closed_loop"], "tensorflow") if row[1] == "8"][0]
    assert level_8[2] == "DIED" and level_8[3] == "died"
    assert tables["closed_loop"].row_classes[tables["closed_loop"].rows.index(level_8)] == "died"
    md_path, html_path = written
    page = html_path.read_text()
    assert "The tensorflow service DIED during the run" in page
    assert "Perhaps out of memory?" in page  # the service's log tail
    assert re.search(r'<tr class="died"><td class="l">tensorflow</td><td class="l">DIED', page)
    assert "DIED (exit code -9" in md_path.read_text()


def test_a_dead_service_is_left_out_of_the_peak(recorded_results: dict[str, Any]) -> None:
    tf = recorded_results["services"]["tensorflow"]
    died_level = [lv for lv in tf["closed_loop"]["levels"] if lv["users"] == 8][0]
    assert died_level["status"] == "died" and died_level["throughput_rps"] is None
    assert tf["closed_loop"]["peak"]["users"] != 8


def test_html_is_self_contained_with_every_plot_embedded(written: tuple[Path, Path],
                                                         report_dir: Path) -> None:
    _, html_path = written
    page = html_path.read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == len(plots.PLOTS)
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_SIGNATURE)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from outside
    assert "<script" not in page
    assert sorted(p.name for p in (report_dir / "plots").iterdir()) == sorted(
        f"{name}.png" for name in plots.PLOTS)


def test_markdown_has_every_section_and_links_the_plots(written: tuple[Path, Path]) -> None:
    md = written[0].read_text()
    for heading in ("## Summary", "## Closed loop", "## Where the server's time goes",
                    "## Open loop", "## In-process baseline", "## Image size", "## Training",
                    "## Parity", "## Environment", "## Locust CSVs"):
        assert heading in md
    for name in plots.PLOTS:
        assert f"(plots/{name}.png)" in md
    assert "(locust/torch/r0-u1_stats.csv)" in md


def test_stage_breakdown_open_loop_and_image_sizes(recorded_results: dict[str, Any]) -> None:
    tables = all_tables(recorded_results)
    stages = tables["stages"]
    assert stages.headers[2:7] == ["decode", "preprocess", "queue", "compute", "postprocess"]
    assert all(SPREAD.match(cell) for cell in rows_of(stages, "onnx")[0][2:7])
    open_loop = tables["open_loop"]
    assert "42.33 req/s (70 % of the lowest peak)" in open_loop.note
    assert [row[0] for row in open_loop.rows] == ["torch", "jax", "onnx"]  # tf died before
    for name in ("image_sizes", "image_sizes_throughput"):
        sizes = tables[name]
        assert sizes.headers[1:] == [f"{s} px" for s in (28, 64, 128, 224)]
        assert len(sizes.rows) == 4 and all(SPREAD.match(c) for c in sizes.rows[0][1:])
    assert "ms per image at batch 1" in tables["image_sizes"].title
    assert "images/s at batch 8" in tables["image_sizes_throughput"].title


def test_training_and_parity_tables(recorded_results: dict[str, Any]) -> None:
    tables = all_tables(recorded_results)
    training = tables["training"]
    assert training.headers[3] == "qwk"
    torch_row = rows_of(training, "torch")[0]
    assert torch_row[1] == "0.8123" and torch_row[6] == "23,518,277" and torch_row[7] == "94.4"
    assert rows_of(training, "sklearn-rf")[0][6] == "—"
    assert "1.2 points" in training.note
    parity = tables["parity"]
    verdicts = {row[0]: row[4] for row in parity.rows}
    assert verdicts["onnx-torch"] == "PASS"
    assert verdicts["jax-torch"] == "trained separately"
    assert "onnx exported from torch" in parity.note and "matches" in parity.note


def test_multilabel_training_shows_exact_match_mean_auc_and_per_finding_auc(
        recorded_results: dict[str, Any], tmp_path: Path) -> None:
    results = copy.deepcopy(recorded_results)
    rows = [{"framework": name, "accuracy": 0.4, "macro_f1": 0.3, "score": mean,
             "auc_per_class": {"Effusion": mean + 0.05, "Hernia": None, "Mass": mean - 0.05}}
            for name, mean in (("torch", 0.71), ("jax", 0.69), ("sklearn-rf", 0.6))]
    results["training"] = {"source": "manifests", "score_metric": "macro_auc",
                           "accuracy_metric": "subset_accuracy", "accuracy_spread": 0.0,
                           "score_spread": 0.02, "rows": rows}
    tables = all_tables(results)
    assert tables["training"].headers[1:4] == ["exact match", "macro-F1", "macro_auc"]
    assert "macro_auc spread: 0.0200" in tables["training"].note
    findings = tables["training_findings"]
    assert findings.headers == ["finding", "torch", "jax", "sklearn-rf"]
    assert findings.rows == [["Effusion", "0.7600", "0.7400", "0.6500"],
                             ["Hernia", "—", "—", "—"],
                             ["Mass", "0.6600", "0.6400", "0.5500"],
                             ["mean AUC", "0.7100", "0.6900", "0.6000"]]
    assert "training_findings" not in all_tables(recorded_results)  # multiclass: no such table
    markdown = write_report(results, tmp_path)[0].read_text()
    assert "### Per-finding test ROC AUC" in markdown and "| Effusion | 0.7600 |" in markdown


def test_environment_names_cpu_threads_versions_and_commit(
        recorded_results: dict[str, Any]) -> None:
    env = {row[0]: row[1] for row in all_tables(recorded_results)["environment"].rows}
    assert env["CPU"].startswith("Intel(R) Xeon(R) Platinum")
    assert env["cores"].startswith("16 usable of 32")
    assert "intra_op_threads_per_worker 16" in env["threads"]
    assert "torch 2.15.0" in env["packages"] and "locust 2.47.0" in env["packages"]
    assert env["git"].startswith("527825ac")


def test_summary_text_and_report_subcommand(recorded_results_path: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "results.json").write_bytes(recorded_results_path.read_bytes())
    assert main(["report", str(target)]) == 0
    out = capsys.readouterr().out
    assert (target / "index.html").is_file() and (target / "report.md").is_file()
    assert f"report: {target / 'index.html'}" in out
    assert "DIED" in out and "onnx" in out
    headline, blank, header, *_ = summary_text(load_results(target)).splitlines()
    assert headline.startswith("Fastest: onnx (plain fp32) at 76.3 served img/s")
    assert blank == "" and header.split()[:2] == ["framework", "status"]


def test_an_empty_or_interrupted_run_still_renders(tmp_path: Path) -> None:
    results = {"run_id": "x", "interrupted": "KeyboardInterrupt", "services": {},
               "errors": ["pass --dataset: models holds ['dr', 'bloodmnist']"]}
    _, html_path = write_report(results, tmp_path)
    page = html_path.read_text()
    assert "interrupted" in page and "pass --dataset" in page
    assert "<img" not in page


@pytest.mark.slow
def test_recorded_report_renders_in_chromium(
        written: tuple[Path, Path], tmp_path: Path, screenshot: Callable[..., Path],
        loaded_image_widths: Callable[[Path], list[int]],
        looks_rendered: Callable[[Path], bool]) -> None:
    _, html_path = written
    png = screenshot(html_path, tmp_path / "report.png", tmp_path / "chromium")
    assert looks_rendered(png)
    widths = loaded_image_widths(html_path)
    assert len(widths) == len(plots.PLOTS) and all(w > 0 for w in widths)
