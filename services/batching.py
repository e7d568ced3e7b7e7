"""Dynamic batching in the manner of Triton's dynamic batcher, one per worker process.

Request threads put preprocessed images on a bounded queue and wait on a future; one batcher
thread takes up to ``preferred_batch_size`` images, pads them to the predictor's batch bucket
(so a jit-compiled runtime only ever sees shapes it compiled at warm-up), runs ``predict``
once and hands every request its own rows back, with how long it queued and how long the
batch took.

The batcher thread is the runtime's only thread: :meth:`DynamicBatcher.start` runs a
``setup`` (load + warm-up) on it before any batch. OpenMP (torch) keeps one thread team per
calling thread, and a second team (load on the main thread, predict on the batcher's) makes
libgomp throttle its spin-waits process-wide: every parallel region then ends in a futex
sleep (~440 per ResNet-50 forward instead of ~1) and a single request's compute took 101 ms
in the service against 74 ms in process.

Preferred batch size: on a CPU, images/s peaks at a small batch (ResNet-50 on an idle 2-core
machine: at 4 images for torch, 8 for JAX and ONNX Runtime, of 1..16), while without a cap
16 closed-loop clients make the batcher alternate batches of 1 and 15, sizes a CPU runtime
does worse at. Like Triton's ``preferred_batch_size``, batches hold at most
``preferred_batch_size`` images; :meth:`DynamicBatcher.calibrate` measures images/s at each
batch size at warm-up and prefers the smallest size within a tolerance of the best. On a
GPU, images/s keeps growing with the batch, so the preferred size stays large.

Padding: a jit-compiled runtime (JAX) runs a batch at its bucket's shape, so 9 images cost
what 16 do. With calibration's per-bucket timings, :meth:`DynamicBatcher.batch_count` takes
a full smaller bucket instead (8 now, the ninth with the next batch) whenever that computes
more images per second; JAX served at preferred size 16 ran ~8-image batches padded to 16
and lost a fifth of its throughput before.

Waiting policy: like Triton's ``max_queue_delay``, an unfilled batch waits at most that long
after its oldest request arrived, but here it only waits while some request is *on its way*
(announced with :meth:`DynamicBatcher.expecting` while it is decoded). A lone request is never
delayed, and under load a batch still collects the requests that are being decoded right now.

The queue is bounded (``queue_size`` images, counting those announced on their way): a full
queue raises :class:`QueueFull`, which the service turns into 503 + Retry-After instead of
letting latency grow without bound. :meth:`DynamicBatcher.ensure_room` checks before a
request's body is even read, and :meth:`DynamicBatcher.expecting` reserves the room before
its images are decoded, so a refused request costs neither (nor the batcher thread the CPU
they would take).
:meth:`DynamicBatcher.stop` refuses new work but finishes everything already queued (drain).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from services.threadnames import name_this_thread

THREAD_NAME = "versus-batcher"
"""The batcher thread's name, in Python and in the OS (its runtime's own threads inherit the
latter, see ``services.threadnames``)."""
PredictFn = Callable[[np.ndarray], np.ndarray]
Rows = np.ndarray | Sequence[np.ndarray]
"""Images to queue: an (N, ...) array, or N arrays of one image each (no copy into one)."""

CALIBRATION_TOLERANCE = 0.01
"""A smaller batch size is preferred while its images/s is within 1% of the best measured,
so that noise between equal sizes settles on the smaller one (lower latency). Not more: with
ONNX Runtime at 224 px on 2 cores, 3% picked batch 2 over 8 and served 15% below the best."""
CALIBRATION_REPEATS = 3
"""Timed passes over the batch sizes at calibration (each size's fastest counts)."""


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
        preferred_batch_size: int | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        if buckets and max(buckets) < max_batch_size:
            raise ValueError(f"batch buckets {tuple(buckets)} do not cover {max_batch_size=}")
        if preferred_batch_size is not None and not 1 <= preferred_batch_size <= max_batch_size:
            raise ValueError(f"{preferred_batch_size=} must be in 1..{max_batch_size}")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.preferred_batch_size = preferred_batch_size or max_batch_size
        self.max_queue_delay_s = max_queue_delay_s
        self.queue_size = queue_size
        self.buckets = tuple(sorted(buckets)) if buckets else None
        self.images_per_s: dict[int, float] = {}
        """Images/s by batch size, as measured by :meth:`calibrate` (empty if it never ran)."""
        self._bucket_seconds: dict[int, float] = {}
        """Seconds of one call per batch bucket, as measured by :meth:`calibrate`."""
        self._on_batch = on_batch or (lambda _n, _s: None)
        self._on_depth = on_depth or (lambda _n: None)
        self._items: deque[_Item] = deque()
        self._incoming = 0
        self._stopping = False
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        """Wakes the batcher thread: an image queued, one fewer on its way, stop."""
        self._room = threading.Condition(lock)
        """Wakes requests waiting in :meth:`ensure_room`: images left the queue or never came."""
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ request side

    def start(self, setup: Callable[[], None] | None = None) -> None:
        """Start the batcher thread; ``setup`` (load and warm up the runtime) runs on it first,
        and this returns once it is done, raising what it raised."""
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._loop, args=(setup, ready),
                                        name=THREAD_NAME, daemon=True)
        self._thread.start()
        ready.result()

    @property
    def depth(self) -> int:
        """Images waiting in the queue."""
        return len(self._items)

    def ensure_room(self, n: int = 1, timeout: float = 0.0) -> None:
        """Return once ``n`` more images fit in the queue, counting those on their way,
        waiting up to ``timeout`` seconds for a batch to free room; else raise
        :class:`QueueFull` (or :class:`BatcherStopped`). Reserves nothing."""
        deadline = time.monotonic() + timeout
        with self._room:
            while not self._fits(n):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._room.wait(remaining)
            self._check_room(n)

    def _fits(self, n: int) -> bool:
        return self._stopping or len(self._items) + self._incoming + n <= self.queue_size

    def _check_room(self, n: int) -> None:
        if self._stopping:
            raise BatcherStopped("the service is shutting down")
        if not self._fits(n):
            waiting = len(self._items) + self._incoming
            raise QueueFull(f"batch queue full ({waiting}/{self.queue_size} images waiting "
                            "or being decoded)")

    @contextmanager
    def expecting(self, n: int) -> Iterator[Callable[[Rows], list[Future[RowResult]]]]:
        """Reserve queue room for ``n`` images that are about to be prepared (decoded) and
        announce them (:class:`QueueFull` if they do not fit); yields the ``submit`` that
        queues them. The announcement ends when they are queued, or on an error."""
        announced = [n]

        def submit(rows: Rows) -> list[Future[RowResult]]:
            count, announced[0] = announced[0], 0
            return self._submit(rows, announced=count)

        with self._cond:
            self._check_room(n)
            self._incoming += n
        try:
            yield submit
        finally:
            if announced[0]:
                with self._cond:
                    self._incoming -= announced[0]
                    self._cond.notify()
                    self._room.notify(announced[0])

    def submit(self, rows: Rows) -> list[Future[RowResult]]:
        """Queue each row of ``rows`` (an (N, ...) array or N arrays) as one image; all or
        nothing."""
        return self._submit(rows, announced=0)

    def _submit(self, rows: Rows, *, announced: int) -> list[Future[RowResult]]:
        now = time.perf_counter()
        with self._cond:
            self._incoming -= announced  # on their way no more: queued, or refused below
            self._cond.notify()
            try:
                self._check_room(len(rows))
            except (QueueFull, BatcherStopped):
                self._room.notify_all()  # the announced room is free again
                raise
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
            self._room.notify_all()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ calibration

    def batch_sizes(self) -> tuple[int, ...]:
        """The batch sizes calibration compares: the buckets (else powers of two) below the
        maximum, and the maximum."""
        steps = self.buckets or [2**k for k in range(self.max_batch_size.bit_length())]
        return tuple(sorted({n for n in steps if n < self.max_batch_size}
                            | {self.max_batch_size}))

    def calibrate(self, example: np.ndarray, *, tolerance: float = CALIBRATION_TOLERANCE,
                  repeats: int = CALIBRATION_REPEATS) -> int:
        """Time ``predict`` on ``example`` (one preprocessed image) at every batch size,
        padded to its bucket like a served batch, and make the smallest size within
        ``tolerance`` of the best images/s the preferred one.

        One untimed call per size (it builds the shape's kernels), then ``repeats`` passes
        over all sizes, each timing every size on the same number of images (the largest
        batch's: 16 calls of 1, one call of 16), keeping each size's fastest pass. Equal work
        per size matters on a noisy machine: the fastest of a few short calls is luckier than
        the fastest of as many long ones, which made small batches look best. Interleaved
        passes make a drifting machine slow every size alike instead of whichever came last.
        Call it in ``setup``, so that the runtime is timed on the thread that serves."""
        batches = {n: self._stack([example] * n) for n in self.batch_sizes()}
        for batch in batches.values():
            self._predict(batch)
        images = max(batches)
        fastest = dict.fromkeys(batches, float("inf"))  # seconds per call
        for _ in range(repeats):
            for n, batch in batches.items():
                calls = -(-images // n)
                started = time.perf_counter()
                for _ in range(calls):
                    self._predict(batch)
                fastest[n] = min(fastest[n], (time.perf_counter() - started) / calls)
        self.images_per_s = {n: n / max(seconds, 1e-9) for n, seconds in fastest.items()}
        if self.buckets:
            self._bucket_seconds = {self.bucket_for(n): max(seconds, 1e-9)
                                    for n, seconds in fastest.items()}
        self.preferred_batch_size = preferred_batch_size(self.images_per_s, tolerance)
        return self.preferred_batch_size

    # ------------------------------------------------------------------ batcher thread

    def _loop(self, setup: Callable[[], None] | None, ready: Future[None]) -> None:
        name_this_thread(THREAD_NAME)  # before setup: the runtime's pools inherit the name
        try:
            if setup is not None:
                setup()
        except BaseException as exc:  # noqa: BLE001 (handed to start(), which raises it)
            ready.set_exception(exc)
            return
        ready.set_result(None)
        while (items := self._next_batch()) is not None:
            self._run(items)

    def _next_batch(self) -> list[_Item] | None:
        """Block until a batch is due; None once stopped and drained."""
        with self._cond:
            while not self._items and not self._stopping:
                self._cond.wait()
            if not self._items:
                return None
            limit = self.preferred_batch_size
            deadline = self._items[0].enqueued + self.max_queue_delay_s
            while (
                len(self._items) < limit
                and self._incoming > 0
                and not self._stopping
                and (remaining := deadline - time.perf_counter()) > 0
            ):
                self._cond.wait(remaining)
            count = self.batch_count(min(len(self._items), limit))
            items = [self._items.popleft() for _ in range(count)]
            depth = len(self._items)
            self._room.notify(count)
        self._on_depth(depth)
        return items

    def batch_count(self, queued: int) -> int:
        """How many of ``queued`` images the next batch takes: all of them, unless padding
        them to their bucket computes fewer images per second than a full smaller bucket,
        by the per-bucket timings of :meth:`calibrate` (on a CPU, 9 images padded to 16 cost
        nearly twice 8; on a GPU, 16 cost little more than 8, so the 9 go together)."""
        if not self._bucket_seconds:
            return queued
        options = [queued, *(b for b in self.buckets or () if b < queued)]
        rates = {n: n / self._bucket_seconds[self.bucket_for(n)] for n in options}
        return max(near_best(rates, CALIBRATION_TOLERANCE))  # fewer, fuller batches

    def bucket_for(self, n: int) -> int:
        """Smallest bucket holding ``n`` images (``n`` itself without buckets)."""
        if not self.buckets:
            return n
        return self.buckets[bisect.bisect_left(self.buckets, n)]

    def _stack(self, rows: list[np.ndarray]) -> np.ndarray:
        """``rows`` as one batch, zero-padded to its bucket."""
        missing = self.bucket_for(len(rows)) - len(rows)
        return np.stack(rows + [np.zeros_like(rows[0])] * missing if missing else rows)

    def _run(self, items: list[_Item]) -> None:
        """Predict one batch (zero-padded to its bucket) and resolve every future."""
        start = time.perf_counter()
        n = len(items)
        try:
            outputs = np.asarray(self._predict(self._stack([item.row for item in items])))[:n]
        except Exception as exc:  # a failed batch fails its requests, never the thread
            for item in items:
                item.future.set_exception(exc)
            return
        compute_s = time.perf_counter() - start
        for item, output in zip(items, outputs, strict=True):
            item.future.set_result(RowResult(output, start - item.enqueued, compute_s, n))
        self._on_batch(n, compute_s)


def near_best(images_per_s: Mapping[int, float], tolerance: float) -> list[int]:
    """The batch sizes whose images/s is within ``tolerance`` (a fraction) of the best."""
    best = max(images_per_s.values())
    return [n for n, rate in images_per_s.items() if rate >= (1 - tolerance) * best]


def preferred_batch_size(images_per_s: Mapping[int, float], tolerance: float) -> int:
    """The smallest batch size whose images/s is within ``tolerance`` of the best one's."""
    return min(near_best(images_per_s, tolerance))
