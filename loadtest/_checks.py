"""Response validation (a locustfile helper, no locust import): a 200 is not a success
unless the answer is a prediction from the model the user meant to load.

Each user reads ``GET /model`` (the manifest) once: it must hold the artifact kind the user
class's runtime serves (runtime table), every answer must name that runtime (a swapped
``VERSUS_<FRAMEWORK>_URL`` or a stray ``--host`` would otherwise compare one service with
itself), and the class names are what a label must be among. The
models may be untrained, so the label itself is not checked against ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.runtimes import get_runtime


@dataclass(frozen=True)
class ModelInfo:
    """The parts of a service's manifest that responses are checked against."""

    framework: str
    """The runtime the user targets (what each answer's ``model.framework`` must say)."""
    dataset: str
    class_names: tuple[str, ...]

    @property
    def oip_name(self) -> str:
        """The OIP model name a service answers with: ``<dataset>-<framework>``."""
        return f"{self.dataset}-{self.framework}"

    @classmethod
    def from_manifest(cls, body: Any, expected_framework: str) -> ModelInfo:
        """Parse ``GET /model``; ValueError says what is wrong (also an artifact the runtime
        does not serve)."""
        if not isinstance(body, Mapping):
            raise ValueError("GET /model did not return a JSON object")
        names = body.get("class_names")
        if (not isinstance(names, list) or not names
                or not all(isinstance(n, str) for n in names)):
            raise ValueError("manifest has no list of class_names")
        artifact = get_runtime(expected_framework).artifact
        if body.get("framework") != artifact:
            raise ValueError(f"the service serves a {body.get('framework')!r} model, not the "
                             f"{artifact!r} artifact of {expected_framework!r}: check the "
                             "target URL")
        return cls(expected_framework, str(body.get("dataset")), tuple(names))


def check_predict(body: Any, model: ModelInfo) -> str | None:
    """Why a ``POST /predict`` JSON body is not a valid answer (None: it is)."""
    if not isinstance(body, Mapping):
        return "the response is not a JSON object"
    label = body.get("label")
    if label is None:
        return "the response has no label"
    if label not in model.class_names:
        return f"label {label!r} is not among the model's class names"
    served = body.get("model")
    if not isinstance(served, Mapping) or served.get("framework") != model.framework:
        return f"the response does not come from the {model.framework} model"
    return None


def check_oip(body: Any, model: ModelInfo) -> str | None:
    """Why an OIP ``/v2/models/<name>/infer`` JSON body is not a valid answer (None: it is)."""
    if not isinstance(body, Mapping):
        return "the response is not a JSON object"
    if body.get("model_name") != model.oip_name:
        return f"model_name {body.get('model_name')!r} is not {model.oip_name!r}"
    outputs = body.get("outputs")
    labels = [o.get("data") for o in (outputs if isinstance(outputs, list) else [])
              if isinstance(o, Mapping) and o.get("name") == "label"]
    if not labels or not isinstance(labels[0], list) or len(labels[0]) != 1:
        return "the response has no label output with one element"
    if labels[0][0] not in model.class_names:
        return f"label {labels[0][0]!r} is not among the model's class names"
    return None
