"""Response validation (a locustfile helper, no locust import): a 200 is not a success
unless the answer is a prediction from the model the user meant to load.

Each user reads ``GET /model`` (the manifest) once: it must hold the artifact kind the user
class's runtime serves (runtime table), every answer must name that runtime (a swapped
``VERSUS_<FRAMEWORK>_URL`` or a stray ``--host`` would otherwise compare one service with
itself), and the class names are what a label must be among. A multilabel model's answer must
also carry a probability in [0, 1] for every finding and list exactly the findings at or above
their thresholds (the manifest's, 0.5 each when it has none). The
models may be untrained, so the label itself is not checked against ground truth.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared import binary_tensors
from shared.imaging import WHOLE_IMAGE, FieldOfView, PreprocessSpec
from shared.manifest import DEFAULT_THRESHOLD, InputSpec, ManifestError
from shared.runtimes import get_runtime

SUM_TOLERANCE = 1e-3
"""How far a multiclass answer's probabilities may sum from 1 (float32 softmax)."""


@dataclass(frozen=True)
class ModelInfo:
    """The parts of a service's manifest that responses are checked against."""

    framework: str
    """The runtime the user targets (what each answer's ``model.framework`` must say)."""
    dataset: str
    class_names: tuple[str, ...]
    task: str = "multiclass"
    thresholds: tuple[float, ...] = ()
    """multilabel: each class's decision threshold (the manifest's, else 0.5 each)."""
    spec: PreprocessSpec | None = None
    """The model input (size, mean, std) from the manifest's ``input``: how a client that
    sends preprocessed tensors (``oip-binary``) preprocesses, exactly as the service would."""
    raw_capture: FieldOfView = WHOLE_IMAGE
    """The field of view a raw capture is cropped to first (dataset images: none)."""

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
        task = body.get("task", "multiclass")
        thresholds = tuple(body.get("thresholds") or ())
        if task == "multilabel" and not thresholds:
            thresholds = (DEFAULT_THRESHOLD,) * len(names)
        if task == "multilabel" and len(thresholds) != len(names):
            raise ValueError("manifest thresholds do not match its class_names")
        spec, raw_capture = None, WHOLE_IMAGE
        if "input" in body:
            try:
                model_input = InputSpec.from_dict(body["input"])
            except ManifestError as exc:
                raise ValueError(f"manifest input: {exc}") from None
            spec = PreprocessSpec.from_manifest_input(model_input.to_dict())
            raw_capture = model_input.raw_capture
        return cls(expected_framework, str(body.get("dataset")), tuple(names), task,
                   thresholds, spec, raw_capture)


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
    if model.task == "multilabel":
        return _check_findings(body, model)
    return None


def _is_probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _check_findings(body: Mapping[str, Any], model: ModelInfo) -> str | None:
    """multilabel: every finding's probability, and the findings above their thresholds."""
    probs = body.get("probabilities")
    if not isinstance(probs, Mapping) or set(probs) != set(model.class_names):
        return "the response has no probability for every finding"
    if not all(_is_probability(p) for p in probs.values()):
        return "a finding's probability is not a number in [0, 1]"
    findings = body.get("findings")
    if not isinstance(findings, list):
        return "the response has no list of findings"
    expected = {name for name, t in zip(model.class_names, model.thresholds, strict=True)
                if probs[name] >= t}
    if set(findings) != expected or len(findings) != len(expected):
        return (f"findings {findings} are not the findings above their thresholds "
                f"{sorted(expected)}")
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
    if model.task == "multilabel":
        probs = [o.get("data") for o in outputs
                 if isinstance(o, Mapping) and o.get("name") == "probabilities"]
        if (not probs or not isinstance(probs[0], list) or len(probs[0]) != len(model.class_names)
                or not all(_is_probability(p) for p in probs[0])):
            return "the response has no probability in [0, 1] for every finding"
    return None


def check_oip_binary(body: bytes, header: str | None, model: ModelInfo) -> str | None:
    """Why an OIP answer in the binary tensor data extension (``body`` and its
    ``Inference-Header-Content-Length`` ``header``) is not a valid answer (None: it is):
    the framing must be consistent, ``probabilities`` an FP32 ``[1, classes]`` of finite
    values in [0, 1] (summing to 1 for a multiclass model), ``label`` one class name."""
    if header is None:
        return f"the response has no {binary_tensors.HEADER} header (binary outputs asked for)"
    try:
        text, binary = binary_tensors.split_body(body, header)
        answer = json.loads(text)
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            return "the response has no list of outputs"
        chunks = binary_tensors.input_chunks(outputs, binary, kind="output")
    except (binary_tensors.FramingError, ValueError) as exc:  # JSONDecodeError is one
        return f"the binary response is malformed: {exc}"
    if answer.get("model_name") != model.oip_name:
        return f"model_name {answer.get('model_name')!r} is not {model.oip_name!r}"
    tensors = {o.get("name"): (o, chunk) for o, chunk in zip(outputs, chunks, strict=True)}
    if (problem := _check_probabilities(*tensors.get("probabilities", ({}, None)), model)):
        return problem
    label, chunk = tensors.get("label", ({}, None))
    try:
        labels = binary_tensors.bytes_elements(chunk, 1) if chunk is not None else []
    except binary_tensors.FramingError as exc:
        return f"the label output is malformed: {exc}"
    if label.get("datatype") != "BYTES" or len(labels) != 1:
        return "the response has no binary BYTES label output with one element"
    if labels[0].decode(errors="replace") not in model.class_names:
        return f"label {labels[0][:40]!r} is not among the model's class names"
    return None


def _check_probabilities(output: dict, chunk: memoryview | None, model: ModelInfo
                         ) -> str | None:
    classes = len(model.class_names)
    if chunk is None or output.get("datatype") != "FP32":
        return "the response has no binary FP32 probabilities output"
    if output.get("shape") != [1, classes]:
        return f"probabilities have shape {output.get('shape')!r}, not [1, {classes}]"
    try:
        values = binary_tensors.fixed_size_array(chunk, "FP32", [1, classes])[0]
    except binary_tensors.FramingError as exc:
        return f"the probabilities output is malformed: {exc}"
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        return f"probabilities are not all finite and in [0, 1]: {values.tolist()}"
    if model.task == "multiclass" and not math.isclose(float(values.sum()), 1.0,
                                                       abs_tol=SUM_TOLERANCE):
        return f"multiclass probabilities sum to {float(values.sum()):.4f}, not 1"
    return None
