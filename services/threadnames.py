"""Give the current OS thread a name that ``top -H``, ``ps -L`` and ``/proc/<pid>/task/*/comm``
show (Python 3.11 names only its own ``threading.Thread`` objects, not the kernel's threads).

The batcher thread names itself ``versus-batcher`` before it loads the runtime, and Linux
threads inherit their creator's name, so the runtime's own pools (ONNX Runtime, OpenVINO's
TBB, OpenMP) created from it carry the same name: per-thread accounting can tell the
runtime's CPU time from the request threads' (``bench.studies.request_cost``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_NAME = 15
NAME_BYTES = 15
"""The kernel keeps 16 bytes of a thread's name, the terminating NUL included."""


def name_this_thread(name: str) -> bool:
    """Set the calling OS thread's name (first 15 bytes); False where that is not possible
    (not Linux, no libc): the name is a diagnostic, never required."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_NAME, name.encode()[:NAME_BYTES], 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
