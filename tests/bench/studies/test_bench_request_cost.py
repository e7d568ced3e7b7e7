"""``bench.studies.request_cost`` and ``request_parts``: per-thread accounting splits runtime
from request threads by OS thread name, stacks are shared out by part, regions are timed
exclusively, and the parts child measures a real app end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.studies import request_parts
from bench.studies.request_cost import (
    BATCHER_THREAD,
    PARTS,
    breakdown,
    classify_stack,
    split_cpu,
    thread_cpu,
)
from services.batching import THREAD_NAME
from services.threadnames import name_this_thread
from shared.processes import REPO, child_environment, last_result
from training.fixtures import runtime_model_dir, write_artifacts


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_batcher_thread_name_is_the_one_the_study_looks_for() -> None:
    assert THREAD_NAME == BATCHER_THREAD


def test_a_named_thread_and_the_threads_it_starts_are_runtime_side() -> None:
    spun, release = threading.Barrier(3), threading.Event()

    def work() -> None:  # spin, then stay alive until the snapshot is taken
        _spin(0.1)
        spun.wait(5)
        release.wait(5)

    def batcher() -> None:
        assert name_this_thread(BATCHER_THREAD)
        pool = threading.Thread(target=work)  # a runtime pool thread: inherits the name
        pool.start()
        work()
        pool.join()

    before = thread_cpu(os.getpid())
    t = threading.Thread(target=batcher)
    t.start()
    spun.wait(5)
    after = thread_cpu(os.getpid())
    release.set()
    t.join()
    names = [name for tid, (name, *_) in after.items() if tid not in before]
    assert names.count(BATCHER_THREAD) == 2
    cpu = split_cpu(before, after)
    assert cpu["runtime"] >= 0.15  # two threads spun 0.1 s each (10 ms clock ticks)
    assert cpu["request"] < cpu["runtime"]


def test_a_live_named_thread_shows_its_name_in_proc() -> None:
    seen: dict[str, str] = {}
    ready, done = threading.Event(), threading.Event()

    def run() -> None:
        name_this_thread("versus-batcher-and-more")  # cut to the kernel's 15 bytes
        seen["tid"] = str(threading.get_native_id())
        ready.set()
        done.wait(5)

    t = threading.Thread(target=run)
    t.start()
    ready.wait(5)
    name = Path(f"/proc/self/task/{seen['tid']}/comm").read_text().strip()
    done.set()
    t.join()
    assert name == "versus-batcher-"


def test_split_cpu_counts_new_threads_from_zero_and_sums_each_side() -> None:
    before = {1: ("gunicorn", 1.0, 0.5), 2: (BATCHER_THREAD, 5.0, 0.0)}
    after = {1: ("gunicorn", 1.5, 0.6), 2: (BATCHER_THREAD, 7.0, 0.1),
             3: ("gunicorn", 0.2, 0.1)}
    cpu = split_cpu(before, after)
    assert cpu == pytest.approx({"runtime": 2.1, "request": 0.9, "request_sys": 0.2})


@pytest.mark.parametrize("leaf, part", [
    ("normalize (shared/imaging.py:380)", "preprocess"),
    ("finish_decode (shared/imaging.py:205)", "image decode"),
    ("MultiPartParser.parse (werkzeug/formparser.py:360)", "multipart form parsing"),
    ("MmapedValue.inc (prometheus_client/values.py:114)", "Prometheus metrics"),
    ("Future.set_result (concurrent/futures/_base.py:540)",
     "batcher hand-off (request thread)"),
    ("Request.__init__ (werkzeug/wrappers/request.py:110)", "Flask/Werkzeug dispatch"),
])
def test_request_thread_stacks_are_shared_out_by_part(leaf: str, part: str) -> None:
    root = ["Thread._bootstrap (threading.py:1002)", "_worker (concurrent/futures/thread.py:83)",
            "ThreadWorker.handle (gunicorn/workers/gthread.py:553)"]
    assert classify_stack([*root, leaf]) == part
    assert classify_stack(root[:2] + ["Response.write (gunicorn/http/wsgi.py:504)"]) == \
        "HTTP + gunicorn"


def test_idle_and_batcher_stacks_are_not_request_work() -> None:
    assert classify_stack(["Thread.run (threading.py:982)",
                           "_worker (concurrent/futures/thread.py:81)"]) is None
    assert classify_stack(["predict (services/routes_web.py:38)",
                           "Condition.wait (threading.py:327)"]) is None
    assert classify_stack(["DynamicBatcher._loop (services/batching.py:280)",
                           "DynamicBatcher._run (services/batching.py:330)"]) is None
    assert classify_stack([]) is None


def test_breakdown_puts_what_gunicorn_adds_beyond_the_app_call_in_its_own_row() -> None:
    parts = {p: 0.1 for p in PARTS[1:]} | {"app": 1.0}
    rows = breakdown({"request_ms": 1.5, "master_ms": 0.1}, parts)
    assert list(rows) == list(PARTS)
    assert rows["HTTP + gunicorn"] == pytest.approx(0.6)
    assert rows["image decode"] == 0.1


def test_regions_are_timed_exclusively() -> None:
    timer = request_parts.ExclusiveTimer()
    with timer.part("outer"):
        _spin(0.02)
        with timer.part("inner"):
            _spin(0.03)
        _spin(0.01)
    assert timer.seconds["inner"] == pytest.approx(0.03, abs=0.005)
    assert timer.seconds["outer"] == pytest.approx(0.03, abs=0.005)
    assert timer.calls == {"outer": 1, "inner": 1}
    assert 0 < timer.overhead_s() < 1e-4
    assert "calibration" not in timer.seconds


def test_a_wrapped_context_manager_times_enter_and_exit_not_its_body() -> None:
    timer = request_parts.ExclusiveTimer()
    from contextlib import contextmanager

    @contextmanager
    def slow_edges():
        _spin(0.01)
        yield "value"
        _spin(0.01)

    with timer.wrap_context("edges", slow_edges)() as value:
        _spin(0.03)
    assert value == "value"
    assert timer.seconds["edges"] == pytest.approx(0.02, abs=0.005)
    with pytest.raises(KeyError), timer.wrap_context("edges", slow_edges)():
        raise KeyError("passes through")


def test_the_parts_child_measures_a_real_app(tmp_path: Path) -> None:
    write_artifacts(tmp_path, dataset="dr", stage_sizes=(1, 1, 1, 1), image_size=32,
                    runtimes=["onnx"])
    model_dir = runtime_model_dir(tmp_path, "dr", "onnx", "1")
    env = child_environment({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")})
    (tmp_path / "prom").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bench.studies.request_cost", "--parts-child", "--runtime",
         "onnx", "--model-dir", str(model_dir), "--image-size", "32", "--payload-count", "2",
         "--iterations", "10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    result = last_result(done.stdout)
    assert result is not None, done.stderr[-2000:]
    assert set(PARTS[1:]) <= set(result)
    for part in (request_parts.MULTIPART, request_parts.DECODE, request_parts.PREPROCESS,
                 request_parts.JSON, "app"):
        assert result[part] > 0, part  # the small parts may round to ~0 over 10 requests
    in_app = sum(v for k, v in result.items() if k not in ("app", PARTS[6]))
    assert in_app == pytest.approx(result["app"])
