"""The answers a reader wants from a run: which runtime form to serve, at what speed and cost.

Pure functions over results.json (the runner adds their result as ``verdicts``; the report
recomputes it for older files):

- **served img/s**: the peak median closed-loop throughput (one image per request);
- **goodput at the SLO**: the highest measured throughput whose p99 stays within
  ``slo_p99_ms``, over every closed-loop level (median throughput and median p99 over its
  repeats) and the open-loop run (achieved rate and its p99); none when no load met it;
- **cost per million images** at that goodput, for the hourly price :mod:`bench.pricing`
  settles on: ``usd_per_hour / (goodput * 3600) * 1e6``;
- **Pareto front**: served img/s (x) against the accuracy gate's metric (y) over the runtimes
  that may win (a base row, or a variant that passed the gate): those no other such runtime
  beats on both;
- **headline**: the fastest runtime that may win and its ratio to the plain fp32 row of the
  same runtime (its ``variant_of``, or itself).

A variant that failed the gate, was not judged, or died is shown but never ranked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.aggregate import MEASURED_STATUSES
from bench.gate import may_win
from bench.pricing import hourly_price
from shared.runtimes import runtimes

DEFAULT_SLO_P99_MS = 100.0
SECONDS_PER_HOUR = 3600.0
PER_MILLION = 1e6
LIVE_STATUSES = ("ok",)


def served_images_per_s(record: Mapping[str, Any]) -> float | None:
    """Peak median closed-loop throughput, None for a service that died or never ran."""
    if record.get("status") not in LIVE_STATUSES:
        return None
    peak = (record.get("closed_loop") or {}).get("peak")
    return peak["throughput_rps"]["median"] if peak else None


def goodput(record: Mapping[str, Any], slo_p99_ms: float) -> dict[str, Any]:
    """The highest measured throughput within the p99 objective, where it was measured and
    its p99; ``images_per_s`` None (with the reason) when none was."""
    if record.get("status") not in LIVE_STATUSES:
        return {"images_per_s": None, "source": None, "p99_ms": None,
                "reason": f"service {record.get('status', 'not measured')}"}
    candidates: list[tuple[float, str, float]] = []
    lowest_p99 = None
    for level in (record.get("closed_loop") or {}).get("levels", []):
        rate, p99 = level.get("throughput_rps"), (level.get("latency_ms") or {}).get("p99")
        if level.get("status") not in MEASURED_STATUSES or not rate or not p99:
            continue
        lowest_p99 = min(p99["median"], lowest_p99 or p99["median"])
        if p99["median"] <= slo_p99_ms:
            users = level["users"]
            candidates.append((rate["median"],
                               f"closed loop, {users} user{'' if users == 1 else 's'}",
                               p99["median"]))
    open_loop = record.get("open_loop") or {}
    ol_p99 = (open_loop.get("latency_ms") or {}).get("p99")
    if open_loop.get("status") == "ok" and open_loop.get("achieved_rps") and ol_p99:
        lowest_p99 = min(ol_p99, lowest_p99 or ol_p99)
        if ol_p99 <= slo_p99_ms:
            candidates.append((open_loop["achieved_rps"],
                               f"open loop, {open_loop.get('rate_rps', 0):.2f} req/s offered",
                               ol_p99))
    if not candidates:
        seen = f" (lowest p99 measured: {lowest_p99:.1f} ms)" if lowest_p99 else ""
        return {"images_per_s": None, "source": None, "p99_ms": None,
                "reason": f"no measured load kept p99 <= {slo_p99_ms:g} ms{seen}"}
    rate, source, p99 = max(candidates)
    return {"images_per_s": rate, "source": source, "p99_ms": p99, "reason": None}


def usd_per_million(images_per_s: float | None, usd_per_hour: float | None) -> float | None:
    """What a million images cost at ``images_per_s`` on a machine of ``usd_per_hour``."""
    if not images_per_s or usd_per_hour is None:
        return None
    return usd_per_hour / (images_per_s * SECONDS_PER_HOUR) * PER_MILLION


def pareto_front(points: Mapping[str, tuple[float, float]]) -> set[str]:
    """Names whose (x, y) no other point matches or beats on both with one strictly."""
    front = set()
    for name, (x, y) in points.items():
        if not any((ox >= x and oy >= y) and (ox > x or oy > y)
                   for other, (ox, oy) in points.items() if other != name):
            front.add(name)
    return front


def _parent(name: str) -> str:
    row = runtimes().get(name)
    return row.variant_of if row and row.variant_of else name


def _is_variant(name: str) -> bool:
    row = runtimes().get(name)
    return bool(row and row.variant_of)


def headline(rows: Mapping[str, Mapping[str, Any]], gate_skipped: str | None) -> str:
    """One sentence: the fastest runtime that may win and its ratio to its plain fp32 row."""
    ranked = {n: r for n, r in rows.items() if r["may_win"] and r["served_images_per_s"]}
    if not ranked:
        return "No runtime that may be ranked was measured under load: no verdict."
    best = max(ranked, key=lambda n: ranked[n]["served_images_per_s"])
    speed = ranked[best]["served_images_per_s"]
    base = rows[best]["parent"] or best
    base_speed = (rows.get(base) or {}).get("served_images_per_s")
    precision = rows[best].get("precision") or "fp32"
    if base == best:
        sentence = f"Fastest: {best} (plain {precision}) at {speed:.1f} served img/s" + (
            "." if gate_skipped else "; no variant that passes the accuracy gate is faster.")
    elif base_speed:
        sentence = (f"Fastest variant that passes the accuracy gate: {best} ({precision}) at "
                    f"{speed:.1f} served img/s, {speed / base_speed:.2f}x the plain fp32 "
                    f"{base} row ({base_speed:.1f} img/s).")
    else:
        sentence = (f"Fastest variant that passes the accuracy gate: {best} ({precision}) at "
                    f"{speed:.1f} served img/s; its plain fp32 row {base} was not measured "
                    f"in this run, so there is no ratio.")
    if gate_skipped:
        sentence += f" The accuracy gate did not run ({gate_skipped}): variants are not ranked."
    return sentence


def verdicts(results: Mapping[str, Any], slo_p99_ms: float | None = None,
             usd_per_hour: float | None = None) -> dict[str, Any]:
    """The ``verdicts`` section of results.json (arguments default to the run's config)."""
    cfg = results.get("config") or {}
    slo = slo_p99_ms if slo_p99_ms is not None else cfg.get("slo_p99_ms", DEFAULT_SLO_P99_MS)
    price = hourly_price(usd_per_hour if usd_per_hour is not None else
                         cfg.get("usd_per_hour"),
                         (results.get("environment") or {}).get("instance_type"))
    accuracy_gate = results.get("accuracy_gate") or {}
    gate_skipped = accuracy_gate.get("skipped") if not accuracy_gate.get("services") else None
    judged = accuracy_gate.get("services") or {}
    rows: dict[str, dict[str, Any]] = {}
    for name, record in (results.get("services") or {}).items():
        verdict = judged.get(name)
        served = served_images_per_s(record)
        good = goodput(record, slo)
        live = record.get("status") in LIVE_STATUSES
        rows[name] = {
            "parent": _parent(name) if _is_variant(name) else None,
            "precision": (verdict or {}).get("precision") or
            ((record.get("readyz") or {}).get("model") or {}).get("precision"),
            "served_images_per_s": served,
            "accuracy": (verdict or {}).get("value"),
            "gate": (verdict or {}).get("verdict"),
            "may_win": live and (may_win(verdict) if verdict or _is_variant(name) else True),
            "goodput": good,
            "usd_per_million_images": usd_per_million(good["images_per_s"],
                                                      price["usd_per_hour"]),
        }
    points = {n: (r["served_images_per_s"], r["accuracy"]) for n, r in rows.items()
              if r["may_win"] and r["served_images_per_s"] and r["accuracy"] is not None}
    front = pareto_front(points)
    for name, row in rows.items():
        row["pareto"] = name in front
    fastest = max((n for n, r in rows.items() if r["may_win"] and r["served_images_per_s"]),
                  key=lambda n: rows[n]["served_images_per_s"], default=None)
    return {"slo_p99_ms": slo, "price": price, "metric": accuracy_gate.get("metric"),
            "gate_skipped": gate_skipped, "fastest": fastest,
            "headline": headline(rows, gate_skipped), "rows": rows}
