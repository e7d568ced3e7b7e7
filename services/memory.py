"""Give freed heap back to the operating system after a burst of large decodes (glibc).

glibc keeps freed memory in its arenas for reuse, and raises its mmap threshold after the
first large free, so the 16 MB blocks Pillow allocates for a big image come from the heap
and stay resident after the image is gone. ``malloc_trim(0)`` returns the free pages of
every arena; :func:`release` calls it (``services.admission`` does when the decode budget
falls idle after enough work), and :func:`limit_arenas` keeps the arenas few enough for it
to work. Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release() -> bool:
    """``malloc_trim(0)``: True if glibc returned memory to the OS."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the most malloc arenas (``MALLOC_ARENA_MAX``)."""
ARENAS = 2
"""Arenas a worker uses (glibc's default is 8 per core): 32 request threads decoding big
images otherwise spread their freed blocks over many arenas, which ``malloc_trim`` cannot
shrink while any block in them lives (measured: 32 concurrent 49 MP PNGs left the worker at
~330 MB resident instead of ~115 MB with 2 arenas)."""


def limit_arenas(arenas: int = ARENAS) -> bool:
    """``mallopt(M_ARENA_MAX, arenas)`` unless the environment sets ``MALLOC_ARENA_MAX``
    (the operator's choice wins); call before the request threads start. True if set."""
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))
