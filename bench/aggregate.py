"""From raw level runs to the numbers a report shows: spreads over repeats, peaks, status.

Pure functions over results.json's records, so the report generator and its tests never
need a live service. Rules that keep a broken run from looking good:

- a run's throughput counts successful requests only; a run in which the service died has
  no throughput at all (its refused connections would be "very fast");
- a level is ``died`` if the service died in any repeat, ``failed`` if no repeat produced a
  measurement, ``unstable`` if some repeat never met the stability criterion, else ``ok``;
- the peak is the highest *median* throughput over ``ok``/``unstable`` levels;
- serving efficiency = peak served throughput / best in-process throughput (one image per
  request, so requests/s = images/s).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.scrape import STAGES
from bench.stats import PERCENTILES, spread

MEASURED_STATUSES = ("ok", "unstable")


def _measured(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in runs if r.get("status") in MEASURED_STATUSES and r.get("measured")]


def level_status(runs: Sequence[Mapping[str, Any]]) -> str:
    statuses = [r.get("status") for r in runs]
    if "died" in statuses:
        return "died"
    if not _measured(runs):
        return "failed"
    return "unstable" if "unstable" in statuses else "ok"


def summarise_level(users: int, runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Spreads over the repeats of one concurrency level (none at all for a level at which
    the service died: its other repeats stay in the raw runs, but the level has no number
    anyone could mistake for the service's performance)."""
    status = level_status(runs)
    good = _measured(runs) if status != "died" else []
    latency = {f"p{q}": spread(r["measured"]["latency_ms"][f"p{q}"] for r in good
                               if r["measured"]["latency_ms"])
               for q in PERCENTILES}
    servers = [r.get("server") or {} for r in good]
    return {
        "users": users,
        "status": status,
        "repeats": len(runs),
        "measured_repeats": len(good),
        "throughput_rps": spread(r["measured"]["throughput_rps"] for r in good),
        "latency_ms": latency,
        "error_rate": spread(r["measured"]["error_rate"] for r in good),
        "stages_ms": {stage: spread((s.get("stages_ms") or {}).get(stage) for s in servers)
                      for stage in STAGES},
        "server_request_ms": spread((s.get("request_ms") or {}).get("mean") for s in servers),
        "avg_batch_size": spread(s.get("avg_batch_size") for s in servers),
        "loadgen_cpu": spread((r.get("loadgen") or {}).get("cpu_utilisation") for r in good),
        "service_cpu": spread((r.get("service_cpu") or {}).get("utilisation") for r in good),
        "loadgen_saturated": any((r.get("loadgen") or {}).get("saturated") for r in good),
    }


def summarise_closed_loop(runs: Sequence[Mapping[str, Any]], levels: Sequence[int]
                          ) -> dict[str, Any]:
    """Per-level summaries (in ``levels`` order) and the peak level."""
    summaries = []
    for users in levels:
        level_runs = [r for r in runs if r.get("users") == users]
        if level_runs:
            summaries.append(summarise_level(users, level_runs))
    candidates = [s for s in summaries
                  if s["status"] in MEASURED_STATUSES and s["throughput_rps"]]
    peak = max(candidates, key=lambda s: s["throughput_rps"]["median"], default=None)
    return {
        "levels": summaries,
        "peak": None if peak is None else {
            "users": peak["users"], "throughput_rps": peak["throughput_rps"],
            "latency_ms": peak["latency_ms"], "avg_batch_size": peak["avg_batch_size"],
        },
    }


def efficiency(peak: Mapping[str, Any] | None, in_process: Mapping[str, Any] | None
               ) -> float | None:
    """Served peak median throughput / in-process best median throughput."""
    if not peak or not in_process or not in_process.get("best_images_per_s"):
        return None
    best = in_process["best_images_per_s"]["median"]
    return peak["throughput_rps"]["median"] / best if best else None


def service_status(record: Mapping[str, Any]) -> str:
    """``died`` wins over everything; then start failures; then ``ok``."""
    if record.get("death"):
        return "died"
    return record.get("status", "ok")


def summarise_service(record: dict[str, Any], levels: Sequence[int]) -> dict[str, Any]:
    """Add ``closed_loop`` summaries, ``efficiency`` and the final ``status`` to a record."""
    record["closed_loop"] = summarise_closed_loop(record.get("runs", []), levels)
    record["efficiency"] = efficiency(record["closed_loop"]["peak"], record.get("in_process"))
    record["status"] = service_status(record)
    return record
