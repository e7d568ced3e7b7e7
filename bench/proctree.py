"""A process and its descendants from ``/proc`` (Linux): who the gunicorn workers are, and
how much memory the whole service holds. Used by ``bench.worker_kill`` (which worker to
kill) and ``bench.soak`` (the service's RSS per minute)."""

from __future__ import annotations

import os
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _parent_of(stat: str) -> int:
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first), from one scan of /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = _parent_of((entry / "stat").read_text())
            except (OSError, IndexError, ValueError):
                continue  # exited while we looked
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's master -> its workers)."""
    result = []
    for child in descendants(pid):
        try:
            if _parent_of(Path(f"/proc/{child}/stat").read_text()) == pid:
                result.append(child)
        except OSError:
            continue
    return result


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
