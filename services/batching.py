"""Dynamic batching in the manner of Triton's dynamic batcher, one per worker process.

Request threads put preprocessed images on a bounded queue and wait on a future; one batcher
thread takes up to ``max_batch_size`` images, pads them to the predictor's batch bucket (so a
jit-compiled runtime only ever sees shapes it compiled at warm-up), runs ``predict`` once and
hands every request its own rows back, with how long it queued and how long the batch took.

Waiting policy: like Triton's ``max_queue_delay``, an unfilled batch waits at most that long
after its oldest request arrived, but here it only waits while some request is *on its way*
(announced with :meth:`DynamicBatcher.expecting` while it is decoded). A lone request is never
delayed, and under load a batch still collects the requests that are being decoded right now.

The queue is bounded (``queue_size`` images): a full queue raises :class:`QueueFull`, which
the service turns into 503 + Retry-After instead of letting latency grow without bound.
:meth:`DynamicBatcher.stop` refuses new work but finishes everything already queued (drain).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]


class QueueFull(RuntimeError):
    """The batch queue cannot take the request's images now; retry later."""


class BatcherStopped(RuntimeError):
    """The batcher is draining for shutdown and takes no new work."""


@dataclass(frozen=True)
class RowResult:
    """One image's output row and where its time went."""

    output: np.ndarray
    queue_s: float
    compute_s: float
    batch_size: int


@dataclass
class _Item:
    row: np.ndarray
    future: Future[RowResult]
    enqueued: float


class DynamicBatcher:
    """Gathers single images into batches for ``predict`` on a dedicated thread."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int,
        max_queue_delay_s: float,
        queue_size: int,
        buckets: Sequence[int] | None = None,
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if buckets and max(buckets) < max_batch_size:
            raise ValueError(f"batch buckets {tuple(buckets)} do not cover {max_batch_size=}")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.queue_size = queue_size
        self.buckets = tuple(sorted(buckets)) if buckets else None
        self._on_batch = on_batch or (lambda _n: None)
        self._on_depth = on_depth or (lambda _n: None)
        self._items: deque[_Item] = deque()
        self._incoming = 0
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="versus-batcher", daemon=True)

    # ------------------------------------------------------------------ request side

    def start(self) -> None:
        """Start the batcher thread."""
        self._thread.start()

    @property
    def depth(self) -> int:
        """Images waiting in the queue."""
        return len(self._items)

    @contextmanager
    def expecting(self, n: int) -> Iterator[Callable[[np.ndarray], list[Future[RowResult]]]]:
        """Announce ``n`` images that are being prepared (decoded); yields the ``submit``
        that queues them. The announcement ends when they are queued, or on an error."""
        announced = [n]

        def submit(rows: np.ndarray) -> list[Future[RowResult]]:
            count, announced[0] = announced[0], 0
            return self._submit(rows, announced=count)

        with self._cond:
            self._incoming += n
        try:
            yield submit
        finally:
            if announced[0]:
                with self._cond:
                    self._incoming -= announced[0]
                    self._cond.notify()

    def submit(self, rows: np.ndarray) -> list[Future[RowResult]]:
        """Queue each row of ``rows`` (N, ...) as one image; all or nothing."""
        return self._submit(rows, announced=0)

    def _submit(self, rows: np.ndarray, *, announced: int) -> list[Future[RowResult]]:
        now = time.perf_counter()
        with self._cond:
            self._incoming -= announced  # on their way no more: queued, or refused below
            self._cond.notify()
            if self._stopping:
                raise BatcherStopped("the service is shutting down")
            if len(self._items) + len(rows) > self.queue_size:
                raise QueueFull(
                    f"batch queue full ({len(self._items)}/{self.queue_size} images waiting)"
                )
            items = [_Item(row, Future(), now) for row in rows]
            self._items.extend(items)
            depth = len(self._items)
        self._on_depth(depth)
        return [item.future for item in items]

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new work, finish every queued image, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ batcher thread

    def _loop(self) -> None:
        while (items := self._next_batch()) is not None:
            self._run(items)

    def _next_batch(self) -> list[_Item] | None:
        """Block until a batch is due; None once stopped and drained."""
        with self._cond:
            while not self._items and not self._stopping:
                self._cond.wait()
            if not self._items:
                return None
            deadline = self._items[0].enqueued + self.max_queue_delay_s
            while (
                len(self._items) < self.max_batch_size
                and self._incoming > 0
                and not self._stopping
                and (remaining := deadline - time.perf_counter()) > 0
            ):
                self._cond.wait(remaining)
            count = min(len(self._items), self.max_batch_size)
            items = [self._items.popleft() for _ in range(count)]
            depth = len(self._items)
        self._on_depth(depth)
        return items

    def bucket_for(self, n: int) -> int:
        """Smallest bucket holding ``n`` images (``n`` itself without buckets)."""
        if not self.buckets:
            return n
        return self.buckets[bisect.bisect_left(self.buckets, n)]

    def _run(self, items: list[_Item]) -> None:
        """Predict one batch (zero-padded to its bucket) and resolve every future."""
        start = time.perf_counter()
        n = len(items)
        try:
            batch = np.zeros((self.bucket_for(n), *items[0].row.shape), dtype=np.float32)
            for i, item in enumerate(items):
                batch[i] = item.row
            outputs = np.asarray(self._predict(batch))[:n]
        except Exception as exc:  # a failed batch fails its requests, never the thread
            for item in items:
                item.future.set_exception(exc)
            return
        compute_s = time.perf_counter() - start
        for item, output in zip(items, outputs, strict=True):
            item.future.set_result(RowResult(output, start - item.enqueued, compute_s, n))
        self._on_batch(n)
