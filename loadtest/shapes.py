"""Step load for the versus services, opt-in with ``VERSUS_LOAD_SHAPE=step``.

    VERSUS_LOAD_SHAPE=step VERSUS_STEP_USERS=4 VERSUS_STEP_SECONDS=60 VERSUS_STEP_MAX_USERS=32 \
        locust -f loadtest/ --headless --csv reports/step --csv-full-history

``VERSUS_STEP_USERS`` more users every ``VERSUS_STEP_SECONDS`` up to
``VERSUS_STEP_MAX_USERS``; the last step also runs its full duration, then the test stops by
itself (``-u``, ``-r`` and ``-t`` are ignored while a shape is active). ``--csv-full-history``
keeps the per-step numbers (user count over time) for the report.

Why opt-in: Locust runs the first shape class it finds and has no command-line option to
choose one, so a shape that was always present would silently replace every plain
``-u/-r/-t`` run. Without the variable the class stays abstract and Locust ignores it. (With
``--class-picker`` the web UI offers it next to "Default" once the variable is set.)
"""

from __future__ import annotations

import logging

from _config import StepPlan, load_shape
from locust import LoadTestShape

log = logging.getLogger("versus.loadtest")

ENABLED = load_shape() == "step"
PLAN = StepPlan.from_env() if ENABLED else StepPlan()


class StepLoadShape(LoadTestShape):
    """``PLAN.users_at(run time)`` users, started at ``PLAN.spawn_rate`` per second."""

    abstract = not ENABLED

    def tick(self) -> tuple[int, float] | None:
        users = PLAN.users_at(self.get_run_time())
        return None if users is None else (users, PLAN.spawn_rate)
