"""Admission: the decode memory budget (runs what fits, waits a bounded time, 503 when busy,
413 when larger than the whole budget, calls on_idle after a burst), the batch queue's room
(reserved before decoding, waited for a bounded time before a refusal), Pillow's warnings
rate-limited into the log, malloc_trim available on this glibc, and an OIP body limit that
admits the largest legitimate FP32 request."""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from services import memory, pillow_warnings
from services.admission import BudgetBusy, MemoryBudget, OverBudget
from services.batching import DynamicBatcher, QueueFull
from shared.imaging import decode_cost_bytes, open_image
from tests.services.test_services_batching import Recorder, make, rows

# ---------------------------------------------------------------------- memory budget


def test_budget_runs_what_fits_and_refuses_what_never_can() -> None:
    budget = MemoryBudget(100, wait_s=0.0)
    with budget.reserve(60), budget.reserve(40):
        assert budget.in_use == 100
    assert budget.in_use == 0
    with pytest.raises(OverBudget, match="over this worker's decode budget"), \
            budget.reserve(101):
        pass


def test_budget_waits_for_room_then_gives_up() -> None:
    budget = MemoryBudget(100, wait_s=0.2)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with budget.reserve(80):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with pytest.raises(BudgetBusy, match="decode memory busy"), budget.reserve(30):
        pass
    assert 0.15 < time.monotonic() - started < 2
    threading.Timer(0.05, release.set).start()  # room comes back while the next one waits
    with budget.reserve(30):
        assert budget.in_use == 30
    thread.join(5)


def test_budget_calls_on_idle_after_enough_was_released() -> None:
    calls: list[int] = []
    budget = MemoryBudget(100, wait_s=0.0, on_idle=lambda: calls.append(1),
                          idle_after_bytes=50)
    with budget.reserve(30):
        pass
    assert calls == []  # 30 released: not enough to be worth a trim
    with budget.reserve(30), budget.reserve(10):
        pass
    assert calls == [1]  # idle, 70 released since the last call


def test_decode_cost_follows_the_decoded_mode_and_draft() -> None:
    import io

    def header(mode: str, fmt: str, size: tuple[int, int]) -> Image.Image:
        buffer = io.BytesIO()
        Image.new(mode, size).save(buffer, format=fmt)
        return open_image(buffer.getvalue(), target_size=32)

    assert decode_cost_bytes(header("P", "PNG", (100, 100))) == 100 * 100 * 9
    assert decode_cost_bytes(header("RGB", "PNG", (100, 100))) == 100 * 100 * 12
    assert decode_cost_bytes(header("RGB", "JPEG", (1000, 1000))) < 1000 * 1000 * 12 // 16


def test_malloc_trim_is_reachable() -> None:
    assert isinstance(memory.release(), bool)
    assert memory._libc() is not None  # glibc on the Linux images this serves on


# ---------------------------------------------------------------------- queue room


def test_expecting_reserves_room_before_decoding() -> None:
    recorder = Recorder()
    batcher: DynamicBatcher = make(recorder, queue_size=4)
    try:
        with batcher.expecting(3):
            with pytest.raises(QueueFull, match="3/4 images waiting or being decoded"):
                batcher.ensure_room(2)
            with pytest.raises(QueueFull), batcher.expecting(2):
                pass
            batcher.ensure_room(1)
        batcher.ensure_room(4)  # the announcement ended: room again
    finally:
        batcher.stop(5)


def test_ensure_room_waits_for_a_batch_to_leave_the_queue() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = make(recorder, queue_size=2, max_batch_size=2)
    try:
        first = batcher.submit(rows(1))
        recorder.entered.wait(5)  # computing: the queue is empty again
        queued = batcher.submit(rows(2, 3))  # full
        with pytest.raises(QueueFull):
            batcher.ensure_room(1, timeout=0.05)
        threading.Timer(0.1, recorder.gate.set).start()
        started = time.monotonic()
        batcher.ensure_room(1, timeout=5)  # room once the batcher takes the next batch
        assert time.monotonic() - started < 4
        assert [float(f.result(5).output[0]) for f in first + queued] == [12, 24, 36]
    finally:
        recorder.gate.set()
        batcher.stop(5)


# ---------------------------------------------------------------------- Pillow warnings


def pillow_warning(limiter: pillow_warnings.RateLimitedWarnings, n: int) -> None:
    for i in range(n):
        limiter(UserWarning(f"Skipping tag {i}"), UserWarning,
                "/site-packages/PIL/TiffImagePlugin.py", 946)


def test_pillow_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    others: list[str] = []
    limiter = pillow_warnings.RateLimitedWarnings(
        lambda message, *_: others.append(str(message)), logging.getLogger("test.pillow"),
        burst=3, window_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.pillow"):
        pillow_warning(limiter, 1000)
        limiter(UserWarning("not Pillow's"), UserWarning, "/app/code.py", 1)
        now[0] = 61.0
        pillow_warning(limiter, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5 and limiter.suppressed_total == 997
    assert "997 more Pillow warnings suppressed" in messages[3]
    assert others == ["not Pillow's"]


def test_install_is_idempotent_and_catches_pillow_module_warnings() -> None:
    saved_filters, saved_show = warnings.filters[:], warnings.showwarning
    try:
        limiter = pillow_warnings.install()
        assert pillow_warnings.install() is limiter
        before = limiter.suppressed_total + limiter._logged
        import PIL.TiffImagePlugin as tiff

        for i in range(3):
            warnings.warn_explicit(f"tag {i}", UserWarning, tiff.__file__, 1,
                                   module="PIL.TiffImagePlugin")
        assert limiter.suppressed_total + limiter._logged == before + 3
    finally:
        warnings.filters[:] = saved_filters
        warnings.showwarning = saved_show


# ---------------------------------------------------------------------- OIP body limit


@pytest.mark.parametrize("runtime", ["onnx"])
def test_the_json_limit_admits_the_largest_legitimate_fp32_request(runtime, make_app) -> None:
    """``queue_size`` images of float32 values with the longest JSON text (``1e-05`` scale
    values print as ``-1.2345678e-05``-like 21-24 characters) fit the OIP body limit and are
    answered; the limit is sized by them (tiny encoded images make the base64 bound small)."""
    app = make_app(MAX_IMAGE_BYTES=1_000)
    engine = app.extensions["versus"]
    size, n = engine.spec.size, engine.settings.queue_size
    data = np.random.default_rng(0).normal(0, 1e-5, (n, size, size, 3)).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                   "shape": list(data.shape), "data": data.ravel().tolist()}]})
    assert 0.9 * engine.max_json_bytes < len(body) <= engine.max_json_bytes
    response = app.test_client().post("/v2/models/dr/infer", data=body)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.get_json()["outputs"][0]["shape"] == [n, 5]
