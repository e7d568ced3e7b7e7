"""A process and its descendants from ``/proc`` (Linux): CPU seconds and resident memory of a
whole service (gunicorn master + workers) or a load generator, and which processes are the
workers. Used by the comparison run, the studies and the robustness benches."""

from __future__ import annotations

import os
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces and parentheses):
    index 0 is the state (field 3), 1 the parent (4), 11 utime (14), 12 stime (15)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of one live process, None once it is gone."""
    try:
        fields = _stat_fields(pid)
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (not ``pid`` itself), from one scan of /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # exited while we looked
    found, stack = [], list(children.get(pid, []))
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's master -> its workers)."""
    result = []
    for child in descendants(pid):
        try:
            if int(_stat_fields(child)[1]) == pid:
                result.append(child)
        except (OSError, IndexError, ValueError):
            continue
    return result


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of a live process tree (its reaped children's time is not included)."""
    values = [process_cpu_seconds(p) for p in (pid, *descendants(pid))]
    kept = [v for v in values if v is not None]
    return sum(kept) if kept else None


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 once it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` and all its descendants (shared pages are counted once per process,
    as ``ps`` does: a trend measure, not an exact footprint)."""
    return sum(rss_bytes(p) for p in (pid, *descendants(pid)))
