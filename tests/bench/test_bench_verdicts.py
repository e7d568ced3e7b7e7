"""Verdicts of a run (bench.verdicts, bench.pricing): goodput at the SLO, cost, the Pareto
front and the headline, on the recorded results.json with two variants added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import pricing, verdicts
from bench.report import plots
from bench.report.render import write_report
from bench.report.tables import all_tables

AddVariant = Any  # conftest.add_variant

def spread(value: float) -> dict[str, Any]:
    return {"min": value, "median": value, "max": value, "n": 1, "values": [value]}


def level(users: int, rps: float, p99: float, status: str = "ok") -> dict[str, Any]:
    return {"users": users, "status": status, "throughput_rps": spread(rps),
            "latency_ms": {"p99": spread(p99)}}


def record(*levels: dict[str, Any], open_loop: dict[str, Any] | None = None,
           status: str = "ok") -> dict[str, Any]:
    return {"status": status, "closed_loop": {"levels": list(levels), "peak": None},
            "open_loop": open_loop or {}}


def test_goodput_is_the_fastest_measured_load_within_the_slo() -> None:
    r = record(level(1, 10.0, 40.0), level(2, 18.0, 90.0), level(4, 25.0, 150.0),
               open_loop={"status": "ok", "rate_rps": 20.0, "achieved_rps": 19.5,
                          "latency_ms": {"p99": 99.0}})
    good = verdicts.goodput(r, 100.0)
    assert good == {"images_per_s": 19.5, "source": "open loop, 20.00 req/s offered",
                    "p99_ms": 99.0, "reason": None}
    assert verdicts.goodput(r, 200.0)["source"] == "closed loop, 4 users"
    assert verdicts.goodput(r, 50.0)["images_per_s"] == 10.0


def test_goodput_none_when_no_load_met_the_slo_or_the_service_died() -> None:
    r = record(level(1, 10.0, 140.0), level(2, 12.0, 30.0, status="failed"))
    good = verdicts.goodput(r, 100.0)
    assert good["images_per_s"] is None
    assert good["reason"] == "no measured load kept p99 <= 100 ms (lowest p99 measured: 140.0 ms)"
    dead = verdicts.goodput(record(level(1, 10.0, 20.0), status="died"), 100.0)
    assert dead["images_per_s"] is None and dead["reason"] == "service died"


def test_cost_per_million_images() -> None:
    assert verdicts.usd_per_million(100.0, 0.36) == pytest.approx(1.0)
    assert verdicts.usd_per_million(None, 0.36) is None
    assert verdicts.usd_per_million(100.0, None) is None


def test_pareto_front() -> None:
    points = {"a": (10.0, 0.80), "b": (30.0, 0.79), "c": (20.0, 0.78), "d": (30.0, 0.79)}
    assert verdicts.pareto_front(points) == {"a", "b", "d"}


def test_instance_type_and_price(tmp_path: Path) -> None:
    assert pricing.instance_type(tmp_path / "absent") is None
    (tmp_path / "sys_vendor").write_text("Amazon EC2\n")
    (tmp_path / "product_name").write_text("c7i.large\n")
    assert pricing.instance_type(tmp_path) == "c7i.large"
    (tmp_path / "product_name").write_text("HVM domU\n")
    assert pricing.instance_type(tmp_path) is None
    assert pricing.hourly_price(0.5, None)["source"] == "--usd-per-hour"
    assert pricing.hourly_price(None, "c7i.large")["usd_per_hour"] == 0.08925
    assert "pass --usd-per-hour" in pricing.hourly_price(None, None)["reason"]
    assert "no price known for x1.huge" in pricing.hourly_price(None, "x1.huge")["reason"]


@pytest.fixture
def with_variants(recorded_results: dict[str, Any], add_variant: AddVariant
                  ) -> dict[str, Any]:
    """onnx-int8 passes at 3x onnx; torch-bf16 is faster still but fails the gate."""
    add_variant(recorded_results, "onnx-int8", "onnx", 3.0, 0.8101, "pass")
    add_variant(recorded_results, "torch-bf16", "torch", 5.0, 0.70, "fail")
    recorded_results["environment"]["instance_type"] = "c7i.large"
    return recorded_results


def test_headline_names_the_fastest_passing_variant(with_variants: dict[str, Any]) -> None:
    v = verdicts.verdicts(with_variants)
    assert v["fastest"] == "onnx-int8"
    assert v["headline"].startswith("Fastest variant that passes the accuracy gate: onnx-int8 "
                                    "(int8) at 229.0 served img/s, 3.00x the plain fp32 onnx")
    rows = v["rows"]
    assert rows["torch-bf16"]["may_win"] is False and rows["torch-bf16"]["pareto"] is False
    assert rows["tensorflow"]["may_win"] is False  # died
    assert {n for n, r in rows.items() if r["pareto"]} == {"onnx", "onnx-int8"}
    assert v["price"]["usd_per_hour"] == 0.08925
    good = rows["onnx-int8"]["goodput"]["images_per_s"]
    assert rows["onnx-int8"]["usd_per_million_images"] == pytest.approx(
        0.08925 / (good * 3600) * 1e6)
    flagged = verdicts.verdicts(with_variants, slo_p99_ms=1.0, usd_per_hour=2.0)
    assert flagged["price"]["source"] == "--usd-per-hour"
    assert all(r["usd_per_million_images"] is None for r in flagged["rows"].values())


def test_without_a_gate_no_variant_is_ranked(with_variants: dict[str, Any]) -> None:
    with_variants["accuracy_gate"] = {"skipped": "disabled (--no-accuracy-gate)"}
    v = verdicts.verdicts(with_variants)
    assert v["fastest"] == "onnx"
    assert v["headline"] == ("Fastest: onnx (plain fp32) at 76.3 served img/s. The accuracy "
                             "gate did not run (disabled (--no-accuracy-gate)): variants are "
                             "not ranked.")


def test_report_shows_the_gate_goodput_cost_and_pareto(with_variants: dict[str, Any],
                                                       tmp_path: Path) -> None:
    tables = all_tables(with_variants)
    gate_rows = {row[0]: row for row in tables["accuracy_gate"].rows}
    assert gate_rows["torch-bf16"][8] == "FAIL" and gate_rows["onnx-int8"][8] == "pass"
    assert gate_rows["onnx-int8"][6] == "97.0 %"
    classes = dict(zip([r[0] for r in tables["accuracy_gate"].rows],
                       tables["accuracy_gate"].row_classes, strict=True))
    assert classes["torch-bf16"] == "died"
    goodput_rows = {row[0]: row for row in tables["goodput"].rows}
    assert goodput_rows["onnx-int8"][7] == "yes" and goodput_rows["torch-bf16"][7] == ""
    assert "are randomly initialised" not in tables["accuracy_gate"].note
    assert plots.pareto_plot(with_variants)[:8] == b"\x89PNG\r\n\x1a\n"
    md_path, html_path = write_report(with_variants, tmp_path)
    markdown, page = md_path.read_text(), html_path.read_text()
    first_lines = markdown.splitlines()[:4]
    assert first_lines[2].startswith("**Fastest variant that passes the accuracy gate: onnx-int8")
    assert "accuracy of a randomly initialised model means nothing" in markdown
    assert "USD per million images" in markdown and "c7i.large" in markdown
    assert '<p class="headline">Fastest variant' in page
    assert (tmp_path / "plots" / "pareto.png").is_file()


def test_random_init_models_are_flagged(with_variants: dict[str, Any]) -> None:
    with_variants["services"]["onnx"]["manifest"]["training"] = {"init": "random"}
    note = all_tables(with_variants)["accuracy_gate"].note
    assert "The models of onnx are randomly initialised" in note
