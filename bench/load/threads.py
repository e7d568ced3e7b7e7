"""Closed-loop client threads of one measured phase: started together, run to completion,
timed by the wall clock and by this process's CPU clock (the clients' own cost)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def run_clients(target: Callable[[int], None], count: int) -> tuple[float, float]:
    """Run ``target(i)`` for i in 0..count-1 on as many threads until all return:
    (wall seconds, CPU seconds this process used meanwhile)."""
    cpu = time.process_time()
    started = time.perf_counter()
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, time.process_time() - cpu
