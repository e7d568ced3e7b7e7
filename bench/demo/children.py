"""How the demo runs its phases' child processes: each in its own session (process group),
so that this process alone decides how they stop.

Ctrl-C (or SIGTERM/SIGHUP) raises :class:`Interrupted` in the demo (:func:`stop_signals_raise`);
:func:`run_child` then sends SIGINT to the running child's group, which stops the way it
would under a terminal's Ctrl-C (the bench stops its services and writes a partial report),
then SIGTERM and SIGKILL if it lingers; a second Ctrl-C skips the grace.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import IO

from shared.processes import child_environment, child_preexec, stop_process_group

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
KILL_WAIT_S = 5.0
TERM_GRACE_S = 10.0
"""After SIGINT's grace, how long SIGTERM may take before SIGKILL."""
REPEAT_INTERRUPT_S = 1.0
"""A second interrupt sooner than this after the first counts as the same one."""


class Interrupted(BaseException):
    """The user asked to stop (Ctrl-C, SIGTERM, SIGHUP); ``signum`` says which. A
    BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


QUIET_TENSORFLOW = {"TF_CPP_MIN_LOG_LEVEL": "3"}
"""Unless set: TensorFlow's C++ start-up chatter off (on a CPU-only machine it logs a failed
``cuInit`` as an error, which a newcomer reads as the demo failing)."""


def stop_child(process: subprocess.Popen[bytes], grace_s: float, log: Callable[[str], None],
               term_grace_s: float = TERM_GRACE_S) -> int | None:
    """Stop ``process`` and everything in its group: SIGINT (its own Ctrl-C handling runs),
    after ``grace_s`` SIGTERM, after ``term_grace_s`` SIGKILL; another interrupt while
    waiting jumps to SIGKILL. Returns the child's exit status. The group is always SIGKILLed
    at the end, so grandchildren that outlive their parent do not stay behind."""
    def announce(signum: int) -> None:
        log(f"sending {signal.Signals(signum).name} to process group {process.pid}")

    try:
        return stop_process_group(process, ((signal.SIGINT, grace_s),
                                            (signal.SIGTERM, term_grace_s)),
                                  KILL_WAIT_S, announce)
    except Interrupted:  # the group has been SIGKILLed on the way out
        log("stopping now (second interrupt)")
        return process.returncode


def run_child(command: Sequence[str], *, grace_s: float, log: Callable[[str], None],
              stdout: int | IO[bytes] | None = None) -> int:
    """Run ``command`` in its own session and wait; on Interrupted stop it (see
    ``stop_child``) and re-raise. Returns the exit status."""
    process = subprocess.Popen(list(command), env=child_environment(defaults=QUIET_TENSORFLOW),
                               stdin=subprocess.DEVNULL, stdout=stdout,
                               start_new_session=True, preexec_fn=child_preexec())
    try:
        return process.wait()
    except Interrupted:
        stop_child(process, grace_s, log)
        raise
    finally:
        if process.poll() is None:  # any other exception on our side: leave nothing behind
            stop_child(process, 0.0, log, term_grace_s=0.0)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within: SIGINT, SIGTERM and SIGHUP raise Interrupted (in the main thread), except
    one that follows the previous within ``REPEAT_INTERRUPT_S``: the same keypress delivered
    twice (``uv run``, which ``make demo`` uses, forwards the terminal's SIGINT to its child,
    which has already got it from the terminal)."""
    last: list[float] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        now = time.monotonic()
        if last and now - last[-1] < REPEAT_INTERRUPT_S:
            return
        last.append(now)
        raise Interrupted(signum)

    previous = {}
    for signum in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
