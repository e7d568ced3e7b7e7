"""The report's plots (matplotlib, Agg backend), each returned as PNG bytes.

Every point is a median over repeats with a min–max error bar. Levels at which a service
died are drawn as a red cross on the x axis labelled "died", never as a throughput.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter  # noqa: E402

from bench.scrape import STAGES  # noqa: E402
from bench.stats import PERCENTILES  # noqa: E402
from shared.runtimes import runtimes  # noqa: E402

FALLBACK_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
STAGE_COLORS = {"decode": "#8c564b", "preprocess": "#e377c2", "queue": "#bcbd22",
                "compute": "#17becf", "postprocess": "#7f7f7f"}
DPI = 100
WIDE = (10, 4.6)
GRID = (10, 7)
DEAD_MARK = {"marker": "x", "color": "#c00000", "markersize": 11, "markeredgewidth": 2.5}


def color(framework: str, index: int = 0) -> str:
    """The runtime's colour from the runtime table (a fallback for names it lacks)."""
    row = runtimes().get(framework)
    return row.color if row else FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def to_png(fig: Figure, layout: bool = True) -> bytes:
    buffer = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return buffer.getvalue()


def _levels(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((record.get("closed_loop") or {}).get("levels", []))


def _errorbar(ax: Any, xs: list[float], spreads: list[Mapping[str, Any] | None], label: str,
              c: str, marker: str = "o") -> None:
    """Medians with min–max bars; a None spread (a level the service died at) breaks the
    line, so no segment suggests a measurement across it."""
    med = [s["median"] if s else math.nan for s in spreads]
    low = [s["median"] - s["min"] if s else 0.0 for s in spreads]
    high = [s["max"] - s["median"] if s else 0.0 for s in spreads]
    ax.errorbar(xs, med, yerr=[low, high], label=label, color=c, marker=marker, capsize=3,
                linewidth=1.6)


def _plain_log_axis(axis: Any) -> None:
    """Log-scale ticks written as plain numbers (28, 64, 100), not as 2.8x10^1."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _mark_dead(ax: Any, xs: list[float], y: float = 0.0) -> None:
    if xs:
        ax.plot(xs, [y] * len(xs), linestyle="none", clip_on=False, **DEAD_MARK)
        for x in xs:
            ax.annotate("died", (x, y), textcoords="offset points", xytext=(0, 8),
                        ha="center", color=DEAD_MARK["color"], fontsize=9, fontweight="bold")


def _users_axis(ax: Any, users: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(users)
    ax.set_xticklabels([str(u) for u in users])
    ax.set_xlabel("concurrent users (closed loop, no think time)")
    ax.grid(True, alpha=0.3)


def _series(record: Mapping[str, Any], key: str) -> tuple[list[int], list[Any], list[int]]:
    """(users, spreads of ``key`` path with None where the service died, users where it
    died) of one service."""
    xs, values, dead = [], [], []
    for level in _levels(record):
        if level["status"] == "died":
            dead.append(level["users"])
            xs.append(level["users"])
            values.append(None)
            continue
        value: Any = level
        for part in key.split("."):
            value = (value or {}).get(part)
        if value:
            xs.append(level["users"])
            values.append(value)
    return xs, values, dead


def throughput_plot(results: Mapping[str, Any]) -> bytes | None:
    services = results.get("services") or {}
    users = sorted({lv["users"] for r in services.values() for lv in _levels(r)})
    if not users:
        return None
    fig, ax = plt.subplots(figsize=WIDE)
    for i, (name, record) in enumerate(services.items()):
        c = color(name, i)
        xs, values, dead = _series(record, "throughput_rps")
        if any(values):
            _errorbar(ax, xs, values, name, c)
        _mark_dead(ax, dead)
        best = (record.get("in_process") or {}).get("best_images_per_s")
        if best:
            ax.axhline(best["median"], color=c, linestyle="--", linewidth=1, alpha=0.8)
    ax.plot([], [], color="#444", linestyle="--", linewidth=1, label="in-process best")
    _users_axis(ax, users)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("throughput (successful req/s)")
    ax.set_title("Throughput vs concurrency (median, min–max over repeats)")
    ax.legend(loc="best", fontsize=9)
    return to_png(fig)


def latency_plot(results: Mapping[str, Any]) -> bytes | None:
    services = results.get("services") or {}
    users = sorted({lv["users"] for r in services.values() for lv in _levels(r)})
    if not users:
        return None
    fig, axes = plt.subplots(2, 2, figsize=GRID, sharex=True)
    for ax, q in zip(axes.flat, PERCENTILES, strict=True):
        for i, (name, record) in enumerate(services.items()):
            xs, values, dead = _series(record, f"latency_ms.p{q}")
            if any(values):
                _errorbar(ax, xs, values, name, color(name, i))
            _mark_dead(ax, dead)
        _users_axis(ax, users)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("ms")
        ax.set_title(f"p{q} latency")
    for ax in axes[0]:
        ax.set_xlabel("")
    axes.flat[0].legend(fontsize=9)
    fig.suptitle("Client latency percentiles vs concurrency (median, min–max over repeats)")
    return to_png(fig)


def stage_plot(results: Mapping[str, Any]) -> bytes | None:
    services = {n: r for n, r in (results.get("services") or {}).items() if _levels(r)}
    if not services:
        return None
    fig, axes = plt.subplots(1, len(services), figsize=(max(5, 3.2 * len(services)), 4.6),
                             sharey=True, squeeze=False)
    for ax, (name, record) in zip(axes[0], services.items(), strict=True):
        labels, bottoms = [], []
        levels = _levels(record)
        for level in levels:
            labels.append(str(level["users"]))
        bottoms = [0.0] * len(levels)
        for stage in STAGES:
            heights = []
            for level in levels:
                s = (level.get("stages_ms") or {}).get(stage)
                heights.append(s["median"] if s and level["status"] != "died" else 0.0)
            ax.bar(labels, heights, bottom=bottoms, color=STAGE_COLORS[stage], label=stage)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        for x, level in enumerate(levels):
            if level["status"] == "died":
                ax.plot([x], [0], linestyle="none", **DEAD_MARK)
                ax.annotate("died", (x, 0), textcoords="offset points", xytext=(0, 8),
                            ha="center", color=DEAD_MARK["color"], fontweight="bold")
        ax.set_title(name)
        ax.set_xlabel("users")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mean ms per request")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="center right", fontsize=9, title="stage")
    fig.suptitle("Server-side time by stage (from /metrics)")
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    return to_png(fig, layout=False)


def batch_plot(results: Mapping[str, Any]) -> bytes | None:
    services = results.get("services") or {}
    users = sorted({lv["users"] for r in services.values() for lv in _levels(r)})
    if not users:
        return None
    fig, ax = plt.subplots(figsize=WIDE)
    for i, (name, record) in enumerate(services.items()):
        xs, values, dead = _series(record, "avg_batch_size")
        if any(values):
            _errorbar(ax, xs, values, name, color(name, i))
        _mark_dead(ax, dead)
    _users_axis(ax, users)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("images per executed batch")
    ax.set_title("Dynamic batching: average batch size vs concurrency")
    ax.legend(fontsize=9)
    return to_png(fig)


def open_loop_plot(results: Mapping[str, Any]) -> bytes | None:
    services = {n: r["open_loop"] for n, r in (results.get("services") or {}).items()
                if r.get("open_loop")}
    if not services:
        return None
    fig, ax = plt.subplots(figsize=WIDE)
    width = 0.8 / len(PERCENTILES)
    names = list(services)
    for j, q in enumerate(PERCENTILES):
        heights = [((services[n].get("latency_ms") or {}).get(f"p{q}") or 0.0)
                   if services[n]["status"] != "died" else 0.0 for n in names]
        xs = [i + (j - (len(PERCENTILES) - 1) / 2) * width for i in range(len(names))]
        ax.bar(xs, heights, width, label=f"p{q}", alpha=0.55 + 0.15 * j, color="#1f77b4")
    for i, n in enumerate(names):
        if services[n]["status"] == "died":
            ax.plot([i], [0], linestyle="none", **DEAD_MARK)
            ax.annotate("died", (i, 0), textcoords="offset points", xytext=(0, 8),
                        ha="center", color=DEAD_MARK["color"], fontweight="bold")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{services[n].get('achieved_rps') or 0:.1f} req/s achieved"
                        for n in names])
    rate = (results.get("open_loop") or {}).get("rate_rps")
    ax.set_ylabel("latency from scheduled arrival (ms)")
    ax.set_title(f"Open loop: Poisson arrivals at {rate or 0:.2f} req/s")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=9)
    return to_png(fig)


def in_process_plot(results: Mapping[str, Any]) -> bytes | None:
    services = {n: r["in_process"] for n, r in (results.get("services") or {}).items()
                if (r.get("in_process") or {}).get("by_batch")}
    if not services:
        return None
    fig, ax = plt.subplots(figsize=WIDE)
    batches: set[int] = set()
    for i, (name, ip) in enumerate(services.items()):
        xs = sorted(int(b) for b in ip["by_batch"])
        batches.update(xs)
        _errorbar(ax, xs, [ip["by_batch"][str(b)]["images_per_s"] for b in xs], name,
                  color(name, i), marker="s")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(batches))
    ax.set_xticklabels([str(b) for b in sorted(batches)])
    ax.set_xlabel("batch size")
    ax.set_ylabel("images/s")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title("In-process throughput by batch size (no HTTP, same threads)")
    ax.legend(fontsize=9)
    return to_png(fig)


def image_size_plot(results: Mapping[str, Any]) -> bytes | None:
    sweep = results.get("image_size_sweep") or {}
    frameworks = {n: r for n, r in (sweep.get("frameworks") or {}).items() if r.get("by_size")}
    if not frameworks:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=WIDE)
    for i, (name, result) in enumerate(frameworks.items()):
        sizes = sorted(int(s) for s in result["by_size"])
        rows = [result["by_size"][str(s)] for s in sizes]
        _errorbar(left, sizes, [r["ms_per_image_batch1"] for r in rows], name,
                  color(name, i))
        _errorbar(right, sizes, [r["images_per_s"] for r in rows], name, color(name, i))
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axis(ax.xaxis)
        _plain_log_axis(ax.yaxis)
        ax.set_xticks(sweep.get("sizes", []))
        ax.set_xlabel("input size (px)")
        ax.grid(True, alpha=0.3, which="both")
    left.set_ylabel("ms per image (batch 1)")
    left.set_title("Latency, batch 1")
    right.set_ylabel("images/s")
    right.set_title(f"Throughput, batch {sweep.get('batch')}")
    left.legend(fontsize=9)
    fig.suptitle(f"Image-size sweep (random-init ResNet, stages {sweep.get('stage_sizes')})")
    return to_png(fig)


def pareto_plot(results: Mapping[str, Any]) -> bytes | None:
    """Served img/s against test accuracy, one point per runtime; hollow when it may not be
    ranked (failed or unjudged gate); the front of the rankable ones as a step line."""
    from bench.report.tables import verdicts_of

    verdict = verdicts_of(results)
    rows = {n: r for n, r in (verdict.get("rows") or {}).items()
            if r.get("served_images_per_s") and r.get("accuracy") is not None}
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=WIDE)
    for i, (name, row) in enumerate(rows.items()):
        c = color(name, i)
        x, y = row["served_images_per_s"], row["accuracy"]
        ax.plot([x], [y], linestyle="none", marker="o", markersize=10, markeredgewidth=2,
                color=c, markerfacecolor=c if row.get("may_win") else "none")
        label = name if row.get("may_win") else f"{name} (gate {row.get('gate')})"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(7, 5 if i % 2 else -13),
                    fontsize=9)
    front = sorted((r["served_images_per_s"], r["accuracy"]) for r in rows.values()
                   if r.get("pareto"))
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="#444",
                linestyle=":", linewidth=1.2, label="Pareto front (gate passed)")
    ax.plot([], [], linestyle="none", marker="o", markerfacecolor="none", color="#444",
            label="failed or unjudged gate (hollow)")
    ax.set_xlim(left=0)
    ax.set_xlabel("served images/s (peak, closed loop)")
    ax.set_ylabel(f"test {verdict.get('metric') or 'accuracy'} (through the service)")
    ax.margins(y=0.15)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    ax.set_title("Speed vs accuracy per runtime and variant")
    return to_png(fig)


PLOTS = {
    "pareto": ("Served throughput vs test accuracy (hollow: failed the accuracy gate)",
               pareto_plot),
    "throughput": ("Throughput vs concurrency", throughput_plot),
    "latency": ("Latency percentiles vs concurrency", latency_plot),
    "stages": ("Server-side stage breakdown", stage_plot),
    "batch_size": ("Average batch size", batch_plot),
    "open_loop": ("Open-loop latency", open_loop_plot),
    "in_process": ("In-process throughput by batch size", in_process_plot),
    "image_sizes": ("Image-size sweep", image_size_plot),
}
"""name -> (caption, function(results) -> PNG bytes or None when there is nothing to plot)."""


def render_all(results: Mapping[str, Any]) -> dict[str, tuple[str, bytes]]:
    """Every plot that has data: name -> (caption, PNG bytes)."""
    rendered = {}
    for name, (caption, make) in PLOTS.items():
        png = make(results)
        if png is not None:
            rendered[name] = (caption, png)
    return rendered
