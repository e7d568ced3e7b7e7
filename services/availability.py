"""A file that exists exactly while no gunicorn worker of this service is ready, so that the
proxy in front (deploy/nginx/) answers 503 + Retry-After at once instead of parking requests.

Why: while gunicorn's master reloads a dead worker (or loads the first one), its listening
socket still accepts connections into the kernel's backlog. nginx cannot tell such a queued
connection from a slow prediction, so without this file it waits up to its read timeout
(model load: 1-60 s depending on runtime and machine) before anything happens.

``VERSUS_UNAVAILABLE_FILE`` names the file (unset: nothing is written). Protocol, driven by
the hooks of deploy/gunicorn.conf.py:

- master start (:func:`reset`): stale per-worker marks removed, the file created;
- a worker ready, its model loaded and warmed (:func:`worker_ready`): its mark
  ``<file>.ready-<pid>`` created first, then the file removed;
- a worker gone (:func:`worker_gone`, in the master): its mark removed; if no mark is left the
  file is created, and removed again if a mark appeared meanwhile (a worker that got ready
  between the check and the creation), so the file never outlives a ready worker.

Writing is best effort: a marker that cannot be written is logged and serving goes on (the
proxy then only waits, as without it).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os

ENV = "VERSUS_UNAVAILABLE_FILE"
log = logging.getLogger(__name__)


def marker_path(environ: dict[str, str] | None = None) -> str | None:
    """The configured file, or None when the feature is off."""
    return (os.environ if environ is None else environ).get(ENV) or None


def _mark(path: str, pid: int) -> str:
    return f"{path}.ready-{pid}"


def _ready_marks(path: str) -> list[str]:
    return glob.glob(glob.escape(path) + ".ready-*")


def _create(path: str) -> None:
    with open(path, "w") as file:
        file.write("no gunicorn worker is ready\n")


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def reset(path: str | None) -> None:
    """Master start: nobody is ready yet."""
    if path is None:
        return
    try:
        for mark in _ready_marks(path):
            _remove(mark)
        _create(path)
    except OSError as exc:
        log.warning("cannot write %s (%s): the proxy will not know when no worker is ready",
                    path, exc)


def worker_ready(path: str | None, pid: int) -> None:
    """A worker has loaded and warmed its model: mark it, then lift the file."""
    if path is None:
        return
    try:
        _create(_mark(path, pid))
        _remove(path)
    except OSError as exc:
        log.warning("cannot update %s (%s)", path, exc)


def worker_gone(path: str | None, pid: int) -> None:
    """Master, after a worker exited: drop its mark; no mark left -> unavailable."""
    if path is None:
        return
    try:
        _remove(_mark(path, pid))
        if not _ready_marks(path):
            _create(path)
            if _ready_marks(path):  # a worker got ready meanwhile: it may have missed us
                _remove(path)
    except OSError as exc:
        log.warning("cannot update %s (%s)", path, exc)
