"""Admission by memory: one worker's concurrent decodes share a byte budget.

A 6 KB PNG can hold 7000x7000 palette pixels (49 MP, under the pixel limit) that cost
~415 MB while they decode, and a 60 MB JSON tensor costs 350-450 MB while it parses; 32
request threads doing either at once would need >13 GB. Each decode therefore reserves its
estimated peak (``shared.imaging.decode_cost_bytes`` for an image, a multiple of the body
for JSON) from a :class:`MemoryBudget` first:

- a reservation that fits runs at once; one that does not waits (condition variable) up to
  ``wait_s`` for others to finish, then fails with :class:`BudgetBusy` (503 + Retry-After);
- a reservation larger than the whole budget can never run: :class:`OverBudget` (413).

When the budget falls idle after a burst, ``on_idle`` runs (``services.memory.release``
hands freed heap back to the OS), so a worker's resident size returns to its resting level.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

JSON_BYTES_PER_BODY_BYTE = 8
"""Peak memory of parsing a JSON tensor and converting it to float32, per body byte: the
text, one 24-byte float object and an 8-byte list slot per ~20-character number."""


class OverBudget(ValueError):
    """One request needs more decode memory than the worker's whole budget."""


class BudgetBusy(RuntimeError):
    """Other requests hold the decode budget for longer than the request may wait."""


class MemoryBudget:
    """``capacity`` bytes shared by concurrent reservations (thread-safe)."""

    def __init__(self, capacity: int, *, wait_s: float,
                 on_idle: Callable[[], None] | None = None,
                 idle_after_bytes: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"decode memory budget must be >= 1 byte, got {capacity}")
        self.capacity = capacity
        self.wait_s = wait_s
        self.in_use = 0
        self._on_idle = on_idle
        self._idle_after_bytes = idle_after_bytes
        self._released = 0
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, cost: int, what: str = "this request") -> Iterator[None]:
        """Hold ``cost`` bytes of the budget for the ``with`` block."""
        if cost > self.capacity:
            raise OverBudget(
                f"{what} needs ~{_mb(cost)} MB of memory to decode, over this worker's "
                f"decode budget of {_mb(self.capacity)} MB: send a smaller image or tensor")
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self.in_use + cost > self.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BudgetBusy(
                        f"decode memory busy: {what} needs ~{_mb(cost)} MB and "
                        f"{_mb(self.in_use)} of {_mb(self.capacity)} MB are in use")
                self._cond.wait(remaining)
            self.in_use += cost
        try:
            yield
        finally:
            self._release(cost)

    def _release(self, cost: int) -> None:
        with self._cond:
            self.in_use -= cost
            self._released += cost
            self._cond.notify_all()
            idle = self.in_use == 0 and self._released >= self._idle_after_bytes
            if idle:
                self._released = 0
        if idle and self._on_idle is not None:
            self._on_idle()


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"
