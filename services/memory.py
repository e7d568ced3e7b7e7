"""Give freed heap back to the operating system after a burst of large decodes (glibc).

glibc keeps freed memory in its arenas for reuse, and raises its mmap threshold after the
first large free, so the 16 MB blocks Pillow allocates for a big image come from the heap
and stay resident after the image is gone. ``malloc_trim(0)`` returns the free pages of
every arena; :func:`release` calls it (``services.admission`` does when the decode budget
falls idle after enough work). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache

log = logging.getLogger(__name__)


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
