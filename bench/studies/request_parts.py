"""Where a request's CPU goes inside the service app: exclusive thread CPU by part, measured
*in the flow* of real WSGI calls (``bench.studies.request_cost``'s in-process half).

Timing each stage alone in a tight loop understates it: run once per request between the
others, beside a runtime computing on the other core, a stage finds its code and data out
of the caches (preprocessing a 224 px image took 0.12 ms alone and 0.34 ms in the flow).
So the real functions of the request path are wrapped, the real app is called with real
multipart bodies, and each wrapped region's ``time.thread_time`` is charged to its part
*exclusively* (a region inside another pauses the outer one: metrics recorded inside the
batcher hand-off count as metrics), less the timing's own cost per region (calibrated).
Whatever no region covers, the same calls' CPU *without* the wrappers minus the parts, is
Flask/Werkzeug's own dispatch (routing, request context, hooks, response) and the engine's
bookkeeping.

The wrappers only time; every wrapped function runs as it does in a worker. Run it in a
process of its own with ``PROMETHEUS_MULTIPROC_DIR`` set, like a gunicorn worker, and never
in a process that serves anything else.
"""

from __future__ import annotations

import functools
import io
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.load.threads import run_clients

DISPATCH = "Flask/Werkzeug dispatch"
MULTIPART = "multipart form parsing"
DECODE = "image decode"
PREPROCESS = "preprocess"
HANDOFF = "batcher hand-off (request thread)"
BATCHER = "batcher hand-off (batcher thread)"
JSON = "JSON encoding"
METRICS = "Prometheus metrics"


class ExclusiveTimer:
    """Thread CPU charged to the innermost open part: a stack and totals per thread (no
    thread ever writes another's), summed by :attr:`seconds` and :attr:`calls`."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._threads: list[tuple[dict[str, float], dict[str, int]]] = []
        self._lock = threading.Lock()

    def _mine(self) -> tuple[list[list[Any]], dict[str, float], dict[str, int]]:
        local = self._local.__dict__
        if "stack" not in local:
            local["stack"], local["seconds"], local["calls"] = [], defaultdict(float), \
                defaultdict(int)
            with self._lock:
                self._threads.append((local["seconds"], local["calls"]))
        return local["stack"], local["seconds"], local["calls"]

    @property
    def seconds(self) -> dict[str, float]:
        total: dict[str, float] = defaultdict(float)
        for seconds, _ in list(self._threads):
            for name, value in list(seconds.items()):
                total[name] += value
        return dict(total)

    @property
    def calls(self) -> dict[str, int]:
        total: dict[str, int] = defaultdict(int)
        for _, calls in list(self._threads):
            for name, value in list(calls.items()):
                total[name] += value
        return dict(total)

    def clear(self) -> None:
        for seconds, calls in list(self._threads):
            seconds.clear()
            calls.clear()

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        stack, seconds, calls = self._mine()
        now = time.thread_time()
        if stack:
            seconds[stack[-1][0]] += now - stack[-1][1]
        stack.append([name, now])
        calls[name] += 1
        try:
            yield
        finally:
            now = time.thread_time()
            popped = stack.pop()
            seconds[popped[0]] += now - popped[1]
            if stack:
                stack[-1][1] = now

    def overhead_s(self, calls: int = 20_000) -> float:
        """Thread CPU seconds one nested region adds to what it times (two clock reads and
        the bookkeeping), to subtract per call."""
        with self.part("calibration"):
            started = time.thread_time()
            for _ in range(calls):
                with self.part("calibration-inner"):
                    pass
            elapsed = time.thread_time() - started
        _, seconds, counts = self._mine()
        for name in ("calibration", "calibration-inner"):
            seconds.pop(name, None)
            counts.pop(name, None)
        return elapsed / calls

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, its calls charged to ``name``."""
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.part(name):
                return fn(*args, **kwargs)
        return timed

    def wrap_context(self, name: str, cm_factory: Callable[..., Any]) -> Callable[..., Any]:
        """A context-manager factory whose enter and exit (not its body) count as ``name``."""
        @contextmanager
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with self.part(name):
                manager = cm_factory(*args, **kwargs)
                value = manager.__enter__()
            try:
                yield value
            except BaseException:
                with self.part(name):
                    if not manager.__exit__(*sys.exc_info()):
                        raise
            else:
                with self.part(name):
                    manager.__exit__(None, None, None)
        return timed


def instrument(timer: ExclusiveTimer) -> None:
    """Wrap the request path's functions (process-wide: this process only measures)."""
    import flask.json.provider
    import flask.wrappers
    import prometheus_client.metrics as prom

    import services.engine as engine
    from services.batching import DynamicBatcher

    for name in ("open_image", "finish_decode"):
        setattr(engine, name, timer.wrap(DECODE, getattr(engine, name)))
    for name in ("square_pixels", "normalize"):
        setattr(engine, name, timer.wrap(PREPROCESS, getattr(engine, name)))
    flask.wrappers.Request._load_form_data = timer.wrap(
        MULTIPART, flask.wrappers.Request._load_form_data)
    for name in ("ensure_room", "_submit"):
        setattr(DynamicBatcher, name, timer.wrap(HANDOFF, getattr(DynamicBatcher, name)))
    DynamicBatcher.expecting = timer.wrap_context(HANDOFF, DynamicBatcher.expecting)
    Future.result = timer.wrap(HANDOFF, Future.result)
    engine.InferenceEngine.prediction_json = timer.wrap(
        JSON, engine.InferenceEngine.prediction_json)
    flask.json.provider.DefaultJSONProvider.response = timer.wrap(
        JSON, flask.json.provider.DefaultJSONProvider.response)
    for cls, methods in ((prom.Counter, ("inc",)), (prom.Gauge, ("inc", "dec", "set")),
                         (prom.Histogram, ("observe",)), (prom.MetricWrapperBase, ("labels",))):
        for method in methods:
            setattr(cls, method, timer.wrap(METRICS, getattr(cls, method)))


def measure_parts(runtime: str, model_dir: Path, bodies: Sequence[tuple[bytes, str]],
                  iterations: int, clients: int, max_batch_size: int,
                  intra_op_threads: int = 1) -> dict[str, float]:
    """CPU ms per request by part of ``iterations`` POST /predict WSGI calls from
    ``clients`` concurrent threads (``bodies`` round robin) on a real app batching like the
    served one, plus ``app`` (the request threads' whole CPU, timed first without the
    wrappers) and the batcher thread's CPU outside predict, per request."""
    timer = ExclusiveTimer()
    from werkzeug.test import EnvironBuilder

    from services.app import create_app

    app = create_app({"FRAMEWORK": runtime, "MODEL_DIR": model_dir,
                      "INTRA_OP_THREADS": intra_op_threads,
                      "MAX_BATCH_SIZE": max_batch_size,
                      "QUEUE_SIZE": max(64, 2 * clients)})
    engine = app.extensions["versus"]
    environs = [EnvironBuilder(path="/predict", method="POST", data=body,
                               headers={"Content-Type": content_type,
                                        "Accept": "application/json"}).get_environ()
                for body, content_type in bodies]

    def call(i: int) -> None:
        environ = {**environs[i % len(bodies)],
                   "wsgi.input": io.BytesIO(bodies[i % len(bodies)][0])}
        status: list[str] = []
        response = app(environ, lambda s, h, *_: status.append(s))
        data = b"".join(response)
        response.close()
        if not status[0].startswith("200"):
            raise RuntimeError(f"in-process request answered {status[0]}: {data[:200]!r}")

    per_client = max(1, iterations // clients)
    requests = per_client * clients
    app_clients(call, clients, min(5, per_client))  # warm-up
    app_s = app_clients(call, clients, per_client)  # uninstrumented
    instrument(timer)
    predict_cpu = _time_predict(engine.predictor)
    batcher_clock = time.pthread_getcpuclockid(engine.batcher._thread.ident)
    app_clients(call, clients, 1)
    timer.clear()
    batcher_before = time.clock_gettime(batcher_clock)
    predict_before = predict_cpu[0]
    app_clients(call, clients, per_client)
    batcher_s = (time.clock_gettime(batcher_clock) - batcher_before
                 - (predict_cpu[0] - predict_before))
    engine.shutdown(timeout=30)
    overhead = timer.overhead_s()
    calls = timer.calls
    result = {part: (s - calls[part] * overhead) / requests * 1e3
              for part, s in timer.seconds.items()}
    result[DISPATCH] = app_s / requests * 1e3 - sum(result.values())
    result[BATCHER] = batcher_s / requests * 1e3
    result["app"] = app_s / requests * 1e3
    return result


def app_clients(call: Callable[[int], None], clients: int, each: int) -> float:
    """``clients`` threads making ``each`` calls; their summed thread CPU seconds (the first
    error of any thread is raised here)."""
    spent = [0.0] * clients
    errors: list[BaseException] = []

    def run(k: int) -> None:
        started = time.thread_time()
        try:
            for i in range(each):
                call(k + i * clients)
        except BaseException as exc:  # noqa: BLE001 (re-raised on the caller's thread)
            errors.append(exc)
        spent[k] = time.thread_time() - started

    run_clients(run, clients)
    if errors:
        raise errors[0]
    return sum(spent)


def _time_predict(predictor: Any) -> list[float]:
    """Make ``predictor.predict`` add its thread CPU seconds to the returned cell (an
    instance attribute over the method: the real predict still runs)."""
    inner, spent = predictor.predict, [0.0]

    def predict(batch: Any) -> Any:
        started = time.thread_time()
        try:
            return inner(batch)
        finally:
            spent[0] += time.thread_time() - started

    predictor.predict = predict
    return spent
