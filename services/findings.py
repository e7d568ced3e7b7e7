"""What a prediction says beyond its probabilities, per task, for the JSON answer and the
result page alike.

multiclass: one label, the argmax (``Prediction.label``). multilabel: each finding is decided
on its own, present when its probability reaches its decision threshold (the manifest's
``thresholds``, chosen on validation by training; 0.5 each when the manifest has none), so
the answer lists every finding's probability and the findings above their thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.manifest import Manifest


@dataclass(frozen=True)
class Finding:
    """One class of a multilabel answer, for the result page."""

    name: str
    probability: float
    threshold: float

    @property
    def present(self) -> bool:
        return self.probability >= self.threshold


def findings(manifest: Manifest, probabilities: np.ndarray) -> list[Finding]:
    """Every class with its probability and decision threshold, in class order."""
    return [Finding(name, float(p), float(t)) for name, p, t in
            zip(manifest.class_names, probabilities, manifest.decision_thresholds, strict=True)]


def task_json(manifest: Manifest, probabilities: np.ndarray) -> dict[str, Any]:
    """The task-specific part of ``POST /predict``'s JSON: ``task``, and for multilabel
    ``findings`` (the names above their thresholds, most probable first) and ``thresholds``
    ({name: threshold})."""
    if manifest.task != "multilabel":
        return {"task": manifest.task}
    every = findings(manifest, probabilities)
    present = sorted((f for f in every if f.present), key=lambda f: -f.probability)
    return {"task": manifest.task, "findings": [f.name for f in present],
            "thresholds": {f.name: f.threshold for f in every}}
