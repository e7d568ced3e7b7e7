"""One closed-loop load level: Locust headless against one service until throughput is
stable, like perf_analyzer.

Locust runs as a subprocess with the project's locustfiles plus :mod:`bench.load.locust_plugin`,
``-u N -r N`` (all users at once, no think time), ``--csv`` + ``--csv-full-history`` (the
CSVs go into the report) and a ``-t`` safety bound. While it runs, the plugin's raw samples
are read every half second: from the first response on, ``warmup_s`` (ramp-up, connection
setup) is discarded, then completions are cut into ``window_s`` windows, and as soon as the
last ``stable_windows`` agree within ``tolerance`` in throughput and median latency,
Locust gets SIGTERM (it writes its CSVs and exits). The level's numbers are those stable
windows only. If ``max_s`` passes first, the last windows are used and the level is marked
unstable.

The service is checked at every poll: when it dies, the level stops at once and is
reported as "died" (its failures would otherwise look like a very fast service). Locust's
CPU time (``/proc/<pid>/stat``, sampled at every poll; the total from ``os.wait4``) gives
its utilisation over the measured windows: a load generator at ~100 % of a core is the
bottleneck, not the service. The service's CPU is sampled the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.proctree import process_cpu_seconds
from bench.stats import Sample, Window, latency_summary, stable_tail, windows
from shared.processes import REPO, child_environment, child_preexec

PLUGIN = Path(__file__).with_name("locust_plugin.py")
SAMPLES_ENV = "VERSUS_BENCH_SAMPLES"
POLL_S = 0.5
STARTUP_TIMEOUT_S = 60.0
"""Locust must produce its first response within this (imports, payload pool, connect)."""
LOCUST_STOP_S = 15.0
LOG_TAIL_CHARS = 2000
INFERENCE_METHOD = "POST"
LOADGEN_SATURATED = 0.9
"""Load-generator CPU (cores) above which its numbers are flagged: Locust is one process."""


@dataclass(frozen=True)
class LevelPlan:
    """How long and how strictly one level is measured."""

    users: int
    window_s: float = 5.0
    stable_windows: int = 3
    tolerance: float = 0.10
    warmup_s: float = 3.0
    max_s: float = 120.0
    """Bound on the measured part (after warm-up)."""


@dataclass(frozen=True)
class LocustSetup:
    """What every Locust invocation of a run shares."""

    locustfile: str
    selection: Callable[[str], list[str]]
    """framework -> extra CLI arguments choosing its user class (tags or class names)."""
    env: Mapping[str, str]
    """Extra environment (payload pool, service URLs are added per level)."""
    url_variable: Callable[[str], str]
    """framework -> the environment variable the locustfile reads its host from."""
    cpus: tuple[int, ...] | None = None


def read_samples(path: Path, offset: int) -> tuple[list[Sample], int]:
    """Complete lines of the samples file from byte ``offset``; returns the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    samples = []
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 5 or parts[4] != INFERENCE_METHOD:
            continue
        with contextlib.suppress(ValueError):
            samples.append(Sample(float(parts[0]), float(parts[1]), parts[2] == "1",
                                  int(parts[3])))
    return samples, offset + end


def measured_part(samples: Sequence[Sample], series: Sequence[Window], count: int
                  ) -> dict[str, Any] | None:
    """Throughput, latency percentiles, failures and codes of the last ``count`` windows."""
    tail = list(series[-count:])
    if not tail:
        return None
    start, end = tail[0].start, tail[-1].start + tail[-1].length
    inside = [s for s in samples if start <= s.end < end]
    good = [s.latency_ms for s in inside if s.ok]
    codes: dict[str, int] = {}
    for s in inside:
        codes[str(s.code)] = codes.get(str(s.code), 0) + 1
    return {
        "start": start, "end": end, "seconds": end - start,
        "requests": len(inside), "ok": len(good), "failed": len(inside) - len(good),
        "error_rate": (len(inside) - len(good)) / len(inside) if inside else None,
        "throughput_rps": len(good) / (end - start),
        "latency_ms": latency_summary(good),
        "codes": codes,
    }


def _window_dicts(series: Sequence[Window], origin: float) -> list[dict[str, Any]]:
    return [{"t": round(w.start - origin, 3), "ok": w.ok, "failed": w.failed,
             "throughput_rps": w.throughput, "median_ms": w.median_ms} for w in series]


def _tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def locust_command(setup: LocustSetup, framework: str, users: int, run_time_s: float,
                   csv_prefix: Path) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", f"{setup.locustfile},{PLUGIN}",
            "--headless", "-u", str(users), "-r", str(users),
            "-t", f"{max(1, round(run_time_s))}s", "--csv", str(csv_prefix),
            "--csv-full-history", "--only-summary", "--loglevel", "WARNING",
            "--stop-timeout", "5", *setup.selection(framework)]


def _sample_cpu(trace: CpuTrace, now: float, probe: Callable[[], float | None]) -> None:
    value = probe()
    if value is not None:
        trace.append((now, value))


def _reap(pid: int, block: bool) -> tuple[int | None, Any]:
    """(exit code, rusage) of our Locust child, or (None, None) while it runs."""
    try:
        done, status, rusage = os.wait4(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return -1, None
    if done == 0:
        return None, None
    return os.waitstatus_to_exitcode(status), rusage


CpuTrace = list[tuple[float, float]]
"""(epoch seconds, cumulative CPU seconds) samples of one process (tree)."""


def utilisation(trace: CpuTrace, start: float, end: float) -> float | None:
    """Cores busy (CPU seconds per second) between the samples nearest ``start`` and
    ``end``; None without two distinct samples."""
    if len(trace) < 2:
        return None
    first = min(trace, key=lambda p: abs(p[0] - start))
    last = min(trace, key=lambda p: abs(p[0] - end))
    if last[0] <= first[0]:
        return None
    return (last[1] - first[1]) / (last[0] - first[0])


def run_level(
    framework: str, url: str, plan: LevelPlan, setup: LocustSetup, out_dir: Path,
    label: str, death: Callable[[], dict[str, Any] | None],
    service_cpu: Callable[[], float | None] | None = None,
) -> dict[str, Any]:
    """Run one level; returns its JSON-able record (see the module doc). ``service_cpu``
    (cumulative CPU seconds of the service) is sampled at every poll, like Locust's own, so
    both utilisations cover exactly the measured windows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / f"{label}.samples.tsv"
    samples_path.unlink(missing_ok=True)
    log_path = out_dir / f"{label}.locust.log"
    csv_prefix = out_dir / label
    env = child_environment({**setup.env, setup.url_variable(framework): url,
                             SAMPLES_ENV: str(samples_path)})
    run_time = STARTUP_TIMEOUT_S + plan.warmup_s + plan.max_s + 1.0
    command = locust_command(setup, framework, plan.users, run_time, csv_prefix)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=child_preexec(setup.cpus, die_with_parent=False))
    started = time.time()
    measure_from: float | None = None
    samples: list[Sample] = []
    offset = 0
    exit_code, rusage, died, stop_reason = None, None, None, "max-duration"
    series: list[Window] = []
    loadgen_trace: CpuTrace = []
    service_trace: CpuTrace = []
    try:
        while True:
            time.sleep(POLL_S)
            new, offset = read_samples(samples_path, offset)
            samples.extend(new)
            now = time.time()
            _sample_cpu(loadgen_trace, now, lambda: process_cpu_seconds(process.pid))
            if service_cpu is not None:
                _sample_cpu(service_trace, now, service_cpu)
            exit_code, rusage = _reap(process.pid, block=False)
            died = death()
            if measure_from is None and samples:
                # the level's clock starts with its first response (Locust itself takes
                # a few seconds to start); its warm-up is discarded
                measure_from = min(s.end for s in samples) + plan.warmup_s
            if measure_from is not None:
                series = windows(samples, measure_from, plan.window_s, now)
            if died is not None:
                stop_reason = "service-died"
                break
            if exit_code is not None:
                stop_reason = "locust-exited"
                break
            if measure_from is None:
                if now - started >= STARTUP_TIMEOUT_S:
                    stop_reason = "no-response"
                    break
                continue
            if stable_tail(series, plan.stable_windows, plan.tolerance):
                stop_reason = "stable"
                break
            if now - measure_from >= plan.max_s:
                break
    finally:
        if exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + LOCUST_STOP_S
            while exit_code is None and time.monotonic() < deadline:
                exit_code, rusage = _reap(process.pid, block=False)
                time.sleep(0.1)
            if exit_code is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                exit_code, rusage = _reap(process.pid, block=True)
        process.returncode = exit_code
    ended = time.time()
    new, offset = read_samples(samples_path, offset)
    samples.extend(new)
    cpu_s = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else None
    wall_s = ended - started
    stable = stop_reason == "stable"
    if died is None and exit_code not in (None, 0) and stop_reason == "locust-exited":
        died = death()  # Locust may exit because everything failed: check once more
    if died is not None:
        status = "died"
    elif stop_reason in ("locust-exited", "no-response") and not series:
        status = "failed"
    else:
        status = "ok" if stable else "unstable"
    measured = None if status in ("died", "failed") else measured_part(
        samples, series, plan.stable_windows)
    if measured is not None and measured["ok"] == 0:
        status = "failed"
    span = (measured["start"], measured["end"]) if measured else (started, ended)
    loadgen_busy = utilisation(loadgen_trace, *span)
    return {
        "users": plan.users,
        "status": status,
        "stable": stable,
        "stop_reason": stop_reason,
        "wall_s": wall_s,
        "windows": _window_dicts(series, measure_from or started),
        "measured": measured,
        "death": died,
        "service_cpu": {"utilisation": utilisation(service_trace, *span)}
        if service_trace else None,
        "loadgen": {
            "exit_code": exit_code,
            "cpu_seconds": cpu_s,
            "cpu_utilisation": loadgen_busy,
            "saturated": bool(loadgen_busy is not None and loadgen_busy >= LOADGEN_SATURATED),
            "log_tail": _tail(log_path) if status in ("failed",) else "",
        },
        "files": {
            "stats_csv": f"{csv_prefix}_stats.csv",
            "history_csv": f"{csv_prefix}_stats_history.csv",
            "failures_csv": f"{csv_prefix}_failures.csv",
            "samples": str(samples_path),
            "log": str(log_path),
        },
    }
