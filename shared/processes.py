"""Child-process plumbing used wherever versus starts or measures other processes: the
usable CPUs, a child's environment, dying with the parent, stopping a process group, and the
line a child prints to hand its JSON result to its parent.

Standard library only, so that services, training, bench and the load generator's parent
may all use it without importing a framework.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when the thread that forked it dies."""
KILL_WAIT_S = 10.0
RESULT_MARKER = "VERSUS_RESULT "
"""Prefix of a child's result line on its stdout: runtimes print to stdout too, so the
parent reads only lines that start with it (:func:`emit_result`, :func:`parse_result`)."""


# ---------------------------------------------------------------------- CPUs


def usable_cpu_ids() -> list[int]:
    """CPU ids this process may run on: the affinity mask (e.g. a container's cpuset), not
    the machine's count."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def usable_cpu_count() -> int:
    """How many CPUs this process may run on (see :func:`usable_cpu_ids`)."""
    return len(usable_cpu_ids())


# ---------------------------------------------------------------------- starting children


def child_environment(extra: Mapping[str, str] | None = None,
                      defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment with the repository first on ``PYTHONPATH`` (``python -m <package>``
    works from any directory); ``defaults`` apply where the variable is unset, ``extra``
    always."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**(defaults or {}), **os.environ, "PYTHONPATH": path, **(extra or {})}


def set_parent_death_signal() -> None:
    """In a child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux only;
    elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_preexec(cpus: Iterable[int] | None = None, *, die_with_parent: bool = True
                  ) -> Callable[[], None] | None:
    """``preexec_fn`` for ``subprocess``: die with the parent (unless asked not to) and pin
    the child to ``cpus`` when given; None when there is nothing to do."""
    pinned = tuple(cpus) if cpus else None
    if not die_with_parent and not pinned:
        return None

    def setup() -> None:
        if die_with_parent:
            set_parent_death_signal()
        if pinned:
            os.sched_setaffinity(0, pinned)

    return setup


# ---------------------------------------------------------------------- stopping children


def signal_group(pgid: int, signum: int) -> bool:
    """Signal a whole process group; False when no process of it is left (or the id now
    belongs to someone else's group: not ours to signal)."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_process_group(process: subprocess.Popen, steps: Sequence[tuple[int, float]] = (
                           (signal.SIGTERM, 20.0),),
                       kill_wait_s: float = KILL_WAIT_S,
                       announce: Callable[[int], None] | None = None) -> int | None:
    """Stop ``process`` (started with ``start_new_session=True``, so it leads its own group)
    and everything in its group: each ``(signal, grace seconds)`` step in turn while the
    leader lives, then SIGKILL of the whole group, always, also when an exception (e.g. a
    second Ctrl-C) interrupts the waiting: grandchildren that outlive the leader do not stay
    behind. ``announce(signum)`` is called before each step's signal. Returns the exit
    status (None if the leader has still not exited)."""
    pgid = process.pid
    try:
        for signum, grace_s in steps:
            if process.poll() is not None:
                break
            if announce is not None:
                announce(signum)
            signal_group(pgid, signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace_s)
    finally:
        signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(kill_wait_s)
    return process.returncode


# ---------------------------------------------------------------------- child results


def emit_result(result: Any, file: IO[str] | None = None) -> None:
    """In a child: hand ``result`` (JSON-able) to the parent as one marked stdout line."""
    print(RESULT_MARKER + json.dumps(result), file=file or sys.stdout, flush=True)


def parse_result(line: str) -> Any | None:
    """The result a child's output line carries, or None for any other line."""
    if not line.startswith(RESULT_MARKER):
        return None
    return json.loads(line[len(RESULT_MARKER):])


def last_result(output: str) -> Any | None:
    """The last result in a child's whole output (None when it printed none)."""
    for line in reversed(output.splitlines()):
        result = parse_result(line)
        if result is not None:
            return result
    return None
