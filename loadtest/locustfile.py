"""versus load test: one Locust user class per model service.

    locust -f loadtest/                                    # web UI on :8089, every service
    locust -f loadtest/ --headless -u 8 -r 8 -t 2m --csv reports/load
    locust -f loadtest/ --headless -u 4 -r 4 -t 1m --tags onnx         # one service by tag
    locust -f loadtest/ --headless -u 4 -r 4 -t 1m TorchUser           # ... or by class
    locust -f loadtest/ --headless -u 4 -r 4 -t 1m --tags oip          # the OIP v2 API

One user class per row of the runtime table (``shared.runtimes``: ``TorchUser``,
``OnnxUser``, ..., ``OnnxInt8User``) targets its service at ``VERSUS_<FRAMEWORK>_URL``
(hyphens as underscores: ``VERSUS_ONNX_INT8_URL``; default
``http://localhost:<the runtime's port>``). A variant's class runs only when ``--tags`` or a
class name names it. Do not pass
``--host``: it overwrites every class's host. Each user is one closed-loop client uploading
images from the payload pool (``_payloads.py``) with ``POST /predict`` (``VERSUS_UPLOAD``
multipart or raw), or through ``POST /v2/models/<dataset>/infer`` in the binary tensor data
extension (``oip-binary``: preprocessed FP32 tensors; ``oip-bytes``: the files as BYTES); a
response counts as a success only if it is a 200 with a label among the model's class
names, from the expected framework, and for a multilabel model with exactly the findings
above the manifest's thresholds (binary answers: probabilities of the right shape, finite,
in [0, 1]; ``_checks.py``). Request names carry the framework ("onnx /predict"), so the
stats rows and the ``--csv`` files separate the services.

Tags: every task has its framework's tag; ``predict`` tasks also ``predict``, the OIP tasks
(``POST /v2/models/<dataset>/infer`` with a base64 BYTES input) ``oip``. OIP tasks run only
when ``--tags`` names ``oip``; user classes left without tasks by the tags are not spawned.

At the end, the SLO gate (``_slo.py``) sets the exit code: 0 if every request name met it,
1 if not (the reasons are logged). The step load shape is in ``shapes.py``
(``VERSUS_LOAD_SHAPE=step``).
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

import gevent
from _checks import ModelInfo, check_oip, check_oip_binary, check_predict
from _config import OIP_UPLOADS, PayloadSettings, target_url, wait_seconds
from _payloads import PayloadPool, load_pool
from _slo import Row, Slo, violations
from locust import FastHttpUser, constant, events, tag, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.user.task import TaskSet

from shared.binary_tensors import HEADER
from shared.runtimes import runtimes

log = logging.getLogger("versus.loadtest")

PAYLOADS = PayloadSettings.from_env()
SLO = Slo.from_env()
OIP_TAG = "oip"
MODEL_RETRY_S = 1.0  # pause after a failed GET /model, so a down service is not hammered

_pool: PayloadPool | None = None
_user_numbers = itertools.count()


def payload_pool() -> PayloadPool:
    """The process's payload pool, loaded (or generated) on first use in a native thread:
    the gevent loop keeps running meanwhile (a blocked loop would also leave its clock
    behind, and ``-t`` would expire at once)."""
    global _pool
    if _pool is None:
        _pool = gevent.get_hub().threadpool.apply(load_pool, (PAYLOADS,))
        log.info("payloads: %s, uploaded as %s", _pool.describe(), PAYLOADS.upload)
    return _pool


def http_error(response: Any) -> str:
    if not response.status_code:
        return f"no response: {getattr(response, 'error', None)!r}"
    return f"HTTP {response.status_code}: {(response.text or '')[:200]}"


class ServiceUser(FastHttpUser):
    """One client of one service; subclasses only name the framework (:func:`service_user`)."""

    abstract = True
    framework: ClassVar[str] = ""
    wait_time = constant(wait_seconds())

    def on_start(self) -> None:
        self.model: ModelInfo | None = None
        seed = (PAYLOADS.seed, self.framework, next(_user_numbers))
        self.payloads = payload_pool().picker(seed)

    def model_info(self) -> ModelInfo | None:
        """The service's manifest: read once, retried (after a pause) until it is valid."""
        if self.model is None:
            with self.client.get("/model", name=f"{self.framework} /model",
                                 catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(http_error(response))
                else:
                    try:
                        model = ModelInfo.from_manifest(response.json(), self.framework)
                        prepare_requests(model)
                        self.model = model
                    except ValueError as exc:  # also ConfigError: no input spec
                        response.failure(str(exc))
            if self.model is None:
                time.sleep(MODEL_RETRY_S)  # cooperative: locust monkey-patches time
        return self.model

    def post_predict(self) -> None:
        """One image in the run's upload mode: ``POST /predict`` (multipart, raw) or OIP in
        binary framing (oip-binary, oip-bytes), each answer checked in its own format."""
        if (model := self.model_info()) is None:
            return
        request = next(self.payloads).request(PAYLOADS.upload, model)
        oip = PAYLOADS.upload in OIP_UPLOADS
        name = f"{self.framework} {request.path if oip else '/predict'}"
        with self.client.post(request.path, data=request.body, name=name,
                              headers=request.headers, catch_response=True) as response:
            if oip:
                validate_binary(response, model)
            else:
                validate(response, check_predict, model)

    def post_oip(self) -> None:
        if (model := self.model_info()) is None:
            return
        path = f"/v2/models/{model.dataset}/infer"  # the dataset name is every service's alias
        with self.client.post(path, data=next(self.payloads).oip_json,
                              name=f"{self.framework} {path}",
                              headers={"Content-Type": "application/json"},
                              catch_response=True) as response:
            validate(response, check_oip, model)


def validate(response: Any, check: Callable[[Any, ModelInfo], str | None],
             model: ModelInfo) -> None:
    """Mark ``response`` failed unless it is a 200 with a JSON body ``check`` accepts."""
    if response.status_code != 200:
        response.failure(http_error(response))
        return
    try:
        body = response.json()
    except ValueError:
        response.failure(f"the response is not JSON: {(response.text or '')[:200]}")
        return
    if problem := check(body, model):
        response.failure(problem)


def validate_binary(response: Any, model: ModelInfo) -> None:
    """Mark ``response`` failed unless it is a 200 whose binary-framed body
    :func:`check_oip_binary` accepts."""
    if response.status_code != 200:
        response.failure(http_error(response))
    elif problem := check_oip_binary(response.content or b"",
                                     response.headers.get(HEADER), model):
        response.failure(problem)


def prepare_requests(model: ModelInfo) -> None:
    """Build every pool image's request for ``model`` once, in a native thread (for
    oip-binary this preprocesses each image: tens of ms for a camera photo, which would
    stall every user of the process if done in the gevent loop)."""
    pool = payload_pool()
    gevent.get_hub().threadpool.apply(
        lambda: [p.request(PAYLOADS.upload, model) for p in pool.payloads])


def service_user(framework: str) -> type[ServiceUser]:
    """The user class of one service: host from ``VERSUS_<FRAMEWORK>_URL``, tasks tagged."""

    @tag(framework, "predict")
    @task
    def predict(self: ServiceUser) -> None:
        self.post_predict()

    @tag(framework, OIP_TAG)
    @task
    def oip_infer(self: ServiceUser) -> None:
        self.post_oip()

    camel = "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", framework))
    return type(f"{camel}User", (ServiceUser,), {
        "__module__": __name__,
        "__doc__": f"A client of the {framework} service.",
        "framework": framework,
        "host": target_url(framework),
        "predict": predict,
        "oip_infer": oip_infer,
    })


# One user class per row of the runtime table (TorchUser, ..., OpenvinoUser, and the
# variants' OnnxInt8User, ...): Locust finds them as module attributes. A variant's class is
# spawned only when --tags or a class name asks for it (compose does not run the variants).
for _runtime in runtimes():
    _user = service_user(_runtime)
    globals()[_user.__name__] = _user
del _runtime, _user  # or Locust would take ``_user`` for one more class


# ---------------------------------------------------------------------- selection and gate


def _passes(task_: Callable | type[TaskSet], tags: set[str] | None, exclude: set[str]
            ) -> bool:
    """Locust's tag rule for one task: any of ``tags`` (if given) and none of ``exclude``."""
    task_tags = getattr(task_, "locust_tag_set", set())
    return (tags is None or bool(task_tags & tags)) and not task_tags & exclude


def select_user_classes(environment: Environment) -> None:
    """Apply the tags to whole user classes: OIP tasks only when ``--tags`` names ``oip``,
    a variant's class only when the tags or the class names name it, and classes left
    without tasks are not spawned (Locust would spawn them and fail)."""
    options = environment.parsed_options
    tags = set(getattr(options, "tags", None) or []) or None
    exclude = set(getattr(options, "exclude_tags", None) or [])
    if OIP_TAG not in (tags or ()):
        exclude.add(OIP_TAG)
        options.exclude_tags = sorted(exclude)  # the master sends it on to its workers
    named = set(getattr(options, "user_classes", None) or [])
    variants = {name for name, row in runtimes().items() if row.is_variant}
    active = [user for user in environment.user_classes
              if any(_passes(t, tags, exclude) for t in user.tasks)
              and (user.framework not in variants or user.framework in (tags or ())
                   or user.__name__ in named)]
    dropped = sorted(u.__name__ for u in environment.user_classes if u not in active)
    if not active:
        log.error("no user class has a task with tags %s (excluding %s); the tags are the "
                  "frameworks, 'predict' and 'oip'", sorted(tags or []), sorted(exclude))
        sys.exit(1)
    if dropped:
        log.info("not spawning %s: no task left after the tags", ", ".join(dropped))
    environment.user_classes[:] = active


@events.init.add_listener
def on_init(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if getattr(environment.parsed_options, "host", None):
        log.warning("--host overrides every service's URL (VERSUS_<FRAMEWORK>_URL): all "
                    "users will hit one host and fail the framework check")
    if environment.parsed_options is not None and not isinstance(runner, WorkerRunner):
        select_user_classes(environment)
    if not isinstance(runner, MasterRunner):
        try:
            payload_pool()  # fail fast on a bad VERSUS_PAYLOAD_DIR, before any user starts
        except (ValueError, OSError) as exc:  # ConfigError, DatasetError, unreadable file
            log.error("%s", exc)
            sys.exit(1)


def _row(entry: Any, name: str) -> Row:
    return Row(name, entry.num_requests, entry.num_failures,
               entry.get_response_time_percentile(0.95) if entry.num_requests else 0.0)


@events.quitting.add_listener
def slo_gate(environment: Environment, **_kwargs: Any) -> None:
    """Exit code 0 when every request name and the aggregate meet the SLO, else 1."""
    if isinstance(environment.runner, WorkerRunner):
        return  # the master holds the aggregated stats
    stats = environment.stats
    rows = [_row(e, e.name) for e in stats.entries.values()]
    exceptions = len(environment.runner.exceptions) if environment.runner else 0
    problems = violations(rows, _row(stats.total, "Aggregated"), SLO, exceptions=exceptions)
    if problems:
        log.error("SLO violated (%s):\n  %s", SLO.describe(), "\n  ".join(problems))
        environment.process_exit_code = 1
    else:
        log.info("SLO met (%s)", SLO.describe())
        environment.process_exit_code = 0
