"""DynamicBatcher: batches form, results go back to their own request, buckets pad, batches
stop at the preferred size (measured by calibrate), setup and every batch run on the batcher
thread, the queue is bounded, a lone request is not delayed, a failing batch fails only its
requests, and stop() drains queued work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.batching import BatcherStopped, DynamicBatcher, QueueFull, preferred_batch_size
from services.predictors.base import Predictor


class Recorder:
    """A real predict function (row sums) that records the batch shapes it was given and
    can be held at a gate to make queueing deterministic."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.entered.set()
        self.gate.wait(10)
        self.shapes.append(batch.shape)
        return batch.reshape(len(batch), -1).sum(axis=1, keepdims=True)


def make(recorder: Recorder, **kwargs: object) -> DynamicBatcher:
    options = {"max_batch_size": 4, "max_queue_delay_s": 0.0, "queue_size": 8, **kwargs}
    batcher = DynamicBatcher(recorder, **options)  # type: ignore[arg-type]
    batcher.start()
    return batcher


def rows(*values: float) -> np.ndarray:
    return np.array(values, np.float32).reshape(-1, 1, 1, 1) * np.ones((1, 2, 2, 3), np.float32)


def test_each_request_gets_its_own_row_back_and_batches_form() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = make(recorder)
    first = batcher.submit(rows(0))
    recorder.entered.wait(5)  # the batcher is busy with the first image...
    futures = batcher.submit(rows(1, 2, 3, 4, 5))  # ...while five more queue up
    recorder.gate.set()
    results = [f.result(5) for f in first + futures]
    assert [float(r.output[0]) for r in results] == [0, 12, 24, 36, 48, 60]
    assert [s[0] for s in recorder.shapes] == [1, 4, 1]  # at most max_batch_size per batch
    assert [r.batch_size for r in results] == [1, 4, 4, 4, 4, 1]
    assert all(r.queue_s >= 0 and r.compute_s > 0 for r in results)
    batcher.stop()


def test_batches_are_padded_to_the_smallest_bucket() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = make(recorder, buckets=(1, 2, 4))
    batcher.submit(rows(0))
    recorder.entered.wait(5)
    futures = batcher.submit(rows(1, 2, 3))
    recorder.gate.set()
    assert [float(f.result(5).output[0]) for f in futures] == [12, 24, 36]
    assert [s[0] for s in recorder.shapes] == [1, 4]  # 3 images padded to bucket 4
    assert batcher.bucket_for(3) == 4 and batcher.bucket_for(1) == 1
    batcher.stop()


def test_buckets_must_cover_the_max_batch_size() -> None:
    with pytest.raises(ValueError, match="do not cover"):
        DynamicBatcher(Recorder(), max_batch_size=8, max_queue_delay_s=0, queue_size=8,
                       buckets=(1, 2, 4))


def test_batches_hold_at_most_the_preferred_batch_size() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = make(recorder, max_batch_size=4, preferred_batch_size=2)
    first = batcher.submit(rows(0))
    recorder.entered.wait(5)
    futures = batcher.submit(rows(1, 2, 3, 4, 5))
    recorder.gate.set()
    assert [float(f.result(5).output[0]) for f in first + futures] == [0, 12, 24, 36, 48, 60]
    assert [s[0] for s in recorder.shapes] == [1, 2, 2, 1]
    batcher.stop()


def test_preferred_batch_size_must_fit_the_max_batch_size() -> None:
    with pytest.raises(ValueError, match="preferred_batch_size=8 must be in 1..4"):
        DynamicBatcher(Recorder(), max_batch_size=4, preferred_batch_size=8,
                       max_queue_delay_s=0, queue_size=8)


def test_preferred_batch_size_is_the_smallest_within_tolerance_of_the_best() -> None:
    cpu = {1: 10.0, 2: 12.0, 4: 12.3, 8: 12.1, 16: 11.0}  # flat beyond 2, worse at 16
    assert preferred_batch_size(cpu, tolerance=0.03) == 2
    assert preferred_batch_size(cpu, tolerance=0.0) == 4
    gpu = {1: 100.0, 2: 190.0, 4: 360.0, 8: 650.0, 16: 1100.0}  # bigger is better
    assert preferred_batch_size(gpu, tolerance=0.03) == 16


class SleepyPredict:
    """A predict function that takes ``seconds(n)`` for a batch of n (a runtime's cost
    curve), recording the batch sizes it was called with."""

    def __init__(self, seconds: Callable[[int], float]) -> None:
        self.seconds = seconds
        self.sizes: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        time.sleep(self.seconds(len(batch)))
        return np.zeros((len(batch), 1), np.float32)


@pytest.mark.parametrize(("seconds", "preferred"), [
    (lambda n: 0.02, 8),  # a GPU: one call costs the same for any batch, so the largest wins
    (lambda n: 0.005 if n == 2 else 0.01 * n, 2),  # a CPU with a sweet spot at 2 images
])
def test_calibrate_measures_every_batch_size_and_prefers_the_fastest(seconds, preferred) -> None:
    predict = SleepyPredict(seconds)
    batcher = DynamicBatcher(predict, max_batch_size=8, max_queue_delay_s=0, queue_size=8)
    assert batcher.calibrate(np.ones((2, 2, 3), np.float32), repeats=2) == preferred
    assert batcher.preferred_batch_size == preferred
    assert list(batcher.images_per_s) == [1, 2, 4, 8]
    # one untimed call per size, then two passes timing every size on 8 images
    assert predict.sizes == [1, 2, 4, 8] + ([1] * 8 + [2] * 4 + [4] * 2 + [8]) * 2


def test_calibration_pads_to_the_buckets_like_served_batches() -> None:
    predict = SleepyPredict(lambda n: 0.0)
    batcher = DynamicBatcher(predict, max_batch_size=6, max_queue_delay_s=0, queue_size=8,
                             buckets=(1, 4, 8))
    assert batcher.batch_sizes() == (1, 4, 6)
    batcher.calibrate(np.ones((2, 2, 3), np.float32), repeats=1)
    assert sorted(set(predict.sizes)) == [1, 4, 8]  # 6 images run padded to bucket 8


@pytest.mark.parametrize(("seconds", "sizes"), [
    (lambda n: 0.002 * n, [1, 8, 1]),  # a CPU: 9 images padded to 16 cost twice 8: split
    (lambda n: 0.02, [1, 9]),  # a GPU: 16 cost what 8 do: the 9 go together, padded
])
def test_a_bucketed_batch_does_not_pad_when_a_full_smaller_bucket_is_faster(seconds, sizes):
    predict = SleepyPredict(seconds)
    gate, entered = threading.Event(), threading.Event()
    gate.set()

    def gated(batch: np.ndarray) -> np.ndarray:
        entered.set()
        gate.wait(10)
        return predict(batch)

    served: list[int] = []
    batcher = DynamicBatcher(gated, max_batch_size=16, max_queue_delay_s=0, queue_size=32,
                             buckets=(1, 2, 4, 8, 16), on_batch=lambda n, _s: served.append(n))
    batcher.start(setup=lambda: batcher.calibrate(np.ones((2, 2, 3), np.float32), repeats=1))
    batcher.preferred_batch_size = 16  # as if calibration had preferred the largest
    gate.clear()
    entered.clear()
    first = batcher.submit(rows(0))
    entered.wait(5)  # the batcher holds the first image at the gate...
    rest = batcher.submit(rows(*range(1, 10)))  # ...while nine more queue up
    gate.set()
    for future in first + rest:
        future.result(5)
    batcher.stop()
    assert served == sizes
    assert batcher.batch_count(9) == sizes[1] and batcher.batch_count(1) == 1


@pytest.mark.parametrize("max_batch_size, buckets", [(6, (1, 4, 8)), (6, None), (16, None),
                                                     (8, (1, 2, 4, 8, 16))])
def test_calibration_runs_every_shape_the_predictor_warm_up_would(max_batch_size, buckets):
    """The engine skips Predictor.warmup when it calibrates: calibration must cover it."""

    class Runtime(Predictor):
        batch_buckets = buckets

    predict = SleepyPredict(lambda n: 0.0)
    batcher = DynamicBatcher(predict, max_batch_size=max_batch_size, max_queue_delay_s=0,
                             queue_size=16, buckets=Runtime.buckets_for(max_batch_size))
    batcher.calibrate(np.ones((2, 2, 3), np.float32), repeats=1)
    warm_up = Runtime.buckets_for(max_batch_size) or {1, max_batch_size}
    assert set(warm_up) <= set(predict.sizes)


def test_setup_and_every_batch_run_on_the_batcher_thread() -> None:
    threads = []

    def predict(batch: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread())
        return batch.reshape(len(batch), -1)[:, :1]

    batcher = DynamicBatcher(predict, max_batch_size=2, max_queue_delay_s=0, queue_size=4)
    batcher.start(setup=lambda: threads.append(threading.current_thread()))
    assert len(threads) == 1  # start() returned after the setup
    batcher.submit(rows(1))[0].result(5)
    batcher.submit(rows(2, 3))[0].result(5)
    assert len(threads) >= 3 and len(set(threads)) == 1
    assert threads[0].name == "versus-batcher"
    batcher.stop()


def test_a_failing_setup_fails_start() -> None:
    def setup() -> None:
        raise OSError("model file unreadable")

    batcher = DynamicBatcher(Recorder(), max_batch_size=2, max_queue_delay_s=0, queue_size=4)
    with pytest.raises(OSError, match="model file unreadable"):
        batcher.start(setup=setup)


def test_full_queue_refuses_all_or_nothing() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = make(recorder, queue_size=4)
    batcher.submit(rows(0))
    recorder.entered.wait(5)
    batcher.submit(rows(1, 2, 3))
    with pytest.raises(QueueFull):
        batcher.submit(rows(4, 5))  # 3 + 2 > 4: nothing of it is queued
    assert batcher.depth == 3
    batcher.submit(rows(4))
    recorder.gate.set()
    batcher.stop(5)


def test_lone_request_is_not_delayed_by_the_queue_delay() -> None:
    batcher = make(Recorder(), max_queue_delay_s=5.0)
    started = time.perf_counter()
    (future,) = batcher.submit(rows(1))
    future.result(5)
    assert time.perf_counter() - started < 1.0
    batcher.stop()


def test_announced_requests_are_waited_for_up_to_the_delay() -> None:
    recorder = Recorder()
    batcher = make(recorder, max_queue_delay_s=5.0)
    with batcher.expecting(1) as submit_second:  # a second image is being decoded
        (first,) = batcher.submit(rows(1))
        time.sleep(0.05)
        assert not first.done()  # the batch waits for it
        (second,) = submit_second(rows(2))
        assert first.result(5).batch_size == 2 and second.result(5).batch_size == 2
    assert recorder.shapes == [(2, 2, 2, 3)]
    batcher.stop()


def test_delay_ends_a_batch_even_if_announced_requests_never_come() -> None:
    batcher = make(Recorder(), max_queue_delay_s=0.05)
    with batcher.expecting(1):
        (future,) = batcher.submit(rows(1))
        assert future.result(5).batch_size == 1
    batcher.stop()


def test_announced_images_are_no_longer_waited_for_once_queued_or_failed() -> None:
    batcher = make(Recorder(), max_queue_delay_s=5.0)
    started = time.perf_counter()
    with batcher.expecting(1) as submit:  # a lone request announces itself, then queues
        (future,) = submit(rows(1))
        assert future.result(5).batch_size == 1
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ValueError), batcher.expecting(2):
        raise ValueError("undecodable image")  # the announcement is withdrawn
    assert batcher._incoming == 0
    (future,) = batcher.submit(rows(2))
    assert future.result(1).batch_size == 1
    batcher.stop()


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on() -> None:
    calls = []

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return np.zeros((len(batch), 1), np.float32)

    batcher = DynamicBatcher(flaky, max_batch_size=4, max_queue_delay_s=0, queue_size=8)
    batcher.start()
    (bad,) = batcher.submit(rows(1))
    with pytest.raises(RuntimeError, match="device lost"):
        bad.result(5)
    (good,) = batcher.submit(rows(2))
    assert good.result(5).output.shape == (1,)
    batcher.stop()


def test_stop_drains_queued_work_and_refuses_new_work() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = make(recorder, max_batch_size=2)
    futures = batcher.submit(rows(0))
    recorder.entered.wait(5)
    futures += batcher.submit(rows(1, 2, 3, 4, 5))
    stopper = threading.Thread(target=batcher.stop, args=(10,))
    stopper.start()
    time.sleep(0.05)
    with pytest.raises(BatcherStopped):
        batcher.submit(rows(6))
    recorder.gate.set()
    stopper.join(10)
    assert [float(f.result(0).output[0]) for f in futures] == [0, 12, 24, 36, 48, 60]


def test_many_threads_no_cross_talk() -> None:
    batcher = make(Recorder(), max_batch_size=8, queue_size=64, max_queue_delay_s=0.002)

    def one(i: int) -> float:
        (future,) = batcher.submit(rows(i))
        return float(future.result(10).output[0])

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, range(200))) == [12.0 * i for i in range(200)]
    batcher.stop()
