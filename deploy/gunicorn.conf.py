"""gunicorn configuration shared by every versus service (all values from ``VERSUS_*``).

    gunicorn -c deploy/gunicorn.conf.py services.wsgi:app   # what `python -m services` execs

Process model:

- ``preload_app = False``: the master never imports a framework; each worker imports
  ``services.wsgi`` after the fork and loads + warms up its own model there (torch, TF, JAX
  and ONNX Runtime are not fork-safe). A worker accepts connections only once warm, and a
  model that fails to load (e.g. sha256 mismatch) fails the worker's boot, which stops
  gunicorn with exit code 3 instead of restarting it forever.
- ``gthread`` workers: request threads decode images in parallel while the worker's one
  batcher thread runs the model; ``threads`` >= max batch size so that batches can fill.
- ``timeout`` covers model load + warm-up (JAX compiles every batch bucket) and the
  measurement of the preferred batch size, all before serving.
- SIGTERM: the master stops listening, each worker stops accepting and has
  ``graceful_timeout`` seconds to finish in-flight requests; ``worker_exit`` then drains the
  batcher (queued images are still computed).
- ``VERSUS_UNAVAILABLE_FILE`` (optional, services/availability.py): a file that exists while
  no worker is ready, so that the nginx proxy answers 503 at once during a (re)load.
- Prometheus multi-process mode: ``PROMETHEUS_MULTIPROC_DIR`` is set before
  prometheus_client is imported, wiped of old ``*.db`` files when the master starts, and a
  dead worker's live gauges are removed in ``child_exit``.
"""

import glob
import logging
import os
import tempfile

from services.settings import ServerSettings

_settings = ServerSettings.from_env()

# Must happen before anything imports prometheus_client (it picks its storage at import).
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix=f"versus-metrics-{_settings.port}-")

from prometheus_client import multiprocess  # noqa: E402

from services import availability  # noqa: E402

_unavailable_file = availability.marker_path()

wsgi_app = "services.wsgi:app"
bind = [_settings.bind]
workers = _settings.workers
worker_class = "gthread"
threads = _settings.threads
preload_app = False
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
loglevel = _settings.log_level
accesslog = "-" if _settings.access_log else None
errorlog = "-"
proc_name = f"versus-{os.environ.get('VERSUS_FRAMEWORK', 'service')}"
# gunicorn >= 25.1 opens a control socket at one fixed per-user path; several services on a
# host would fight over it, and nothing here uses gunicornc.
control_socket_disable = True


def on_starting(server):
    """Master, before forking: start from empty metrics (stale files would be summed in)."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    server.log.info("prometheus multiprocess dir %s", path)
    availability.reset(_unavailable_file)


def post_fork(server, worker):
    """Worker, right after the fork: route the service's logs to gunicorn's error log; the
    app (and the model) load next, in this process."""
    service_log = logging.getLogger("services")
    service_log.handlers = server.log.error_log.handlers
    service_log.setLevel(server.log.error_log.level)
    service_log.propagate = False
    server.log.info("worker %s forked; loading the model in the worker", worker.pid)


def post_worker_init(worker):
    """Worker, model loaded and warmed up: the proxy may send requests again."""
    availability.worker_ready(_unavailable_file, worker.pid)


def worker_exit(server, worker):
    """Worker, on its way out (after in-flight requests): drain the batch queue."""
    app = getattr(worker, "wsgi", None)
    engine = getattr(app, "extensions", {}).get("versus") if app is not None else None
    if engine is not None:
        engine.shutdown(timeout=_settings.graceful_timeout)


def child_exit(server, worker):
    """Master, after a worker died: drop its live gauges (queue depth, in-flight); with no
    ready worker left, tell the proxy."""
    multiprocess.mark_process_dead(worker.pid)
    availability.worker_gone(_unavailable_file, worker.pid)
