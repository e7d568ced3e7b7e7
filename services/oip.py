"""KServe Open Inference Protocol (v2) REST endpoints, so standard clients and load tools
(Triton's perf_analyzer, KServe clients) can drive every service the same way.

Model name: ``<dataset>-<framework>`` (``dr-torch``), unique behind a shared proxy; the bare
dataset name (``dr``) is accepted as an alias, so one client URL works against each of the
four services. Version: the artifact directory name (``models/dr/torch/1`` -> ``"1"``).

Inference input: exactly one input named ``input``, either

- ``FP32`` with shape ``[N, S, S, 3]``: already preprocessed NHWC images (``data`` flat in
  row-major order, or nested), or
- ``BYTES`` with shape ``[N]``: encoded images (JPEG, PNG, ...). JSON cannot carry raw bytes
  and the protocol's JSON form of a BYTES element is a string, so each element is the
  **base64** of one image file (as in KServe's image examples); the service decodes and
  preprocesses it exactly like ``POST /predict``.

Outputs: ``probabilities`` FP32 ``[N, C]`` (class order of the manifest's ``class_names``)
and ``label`` BYTES ``[N]``; a request's ``outputs`` list may select among them. Response
``parameters`` carry the request's stage timings in ms. Errors are ``{"error": "..."}``;
"not ready" is 503 + Retry-After, like KServe's model-not-ready error.

Request body: JSON whatever the Content-Type says (``tritonclient.http`` sends none, ``curl
-d`` sends a form type), as Triton and KServe read it; only a media type that plainly is not
JSON (an image, a multipart form) is 415. The binary tensor data extension (a request with
``Inference-Header-Content-Length``) is not implemented: 415, asking for JSON tensors
(``binary_data=False``). The body may be no larger than :attr:`InferenceEngine.max_json_bytes`
(413), parses as strict JSON (no ``NaN``; nesting too deep for the parser is 400) and holds
its share of the worker's decode memory budget while it is parsed and converted.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from importlib import metadata
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from services.admission import JSON_BYTES_PER_BODY_BYTE
from services.body import read_body
from services.engine import InferenceEngine, Prediction
from services.errors import ApiError
from shared.runtimes import get_runtime

bp = Blueprint("oip", __name__, url_prefix="/v2")

INPUT = "input"
OUTPUTS = ("probabilities", "label")
BINARY_HEADER = "Inference-Header-Content-Length"
NOT_JSON_TYPES = ("image/", "multipart/", "audio/", "video/")
"""Media types refused with 415: a body declared as one of these is certainly not JSON."""


def _engine() -> InferenceEngine:
    return current_app.extensions["versus"]


def _bad(message: str) -> ApiError:
    return ApiError(400, message, reason="bad_oip_request")


def _model(name: str, version: str | None = None) -> InferenceEngine:
    """The engine if ``name`` (and ``version``) address this service's model, else 404."""
    engine = _engine()
    if name not in (engine.model_name, engine.manifest.dataset):
        raise ApiError(404, f"unknown model {name!r}; this service serves "
                            f"{engine.model_name!r}", reason="unknown_model")
    if version is not None and version != engine.version:
        raise ApiError(404, f"unknown version {version!r} of {engine.model_name!r}; "
                            f"this service serves version {engine.version!r}",
                       reason="unknown_model")
    return engine


# ---------------------------------------------------------------------- health + metadata


@bp.get("")
def server_metadata() -> Response:
    try:
        version = metadata.version("versus")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    return jsonify(name=f"versus-{_engine().framework}", version=version, extensions=[])


@bp.get("/health/live")
def server_live() -> Response:
    return jsonify(live=True)


@bp.get("/health/ready")
def server_ready() -> Response:
    _engine().require_ready()
    return jsonify(ready=True)


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None) -> Response:
    engine = _model(name, version)
    size, classes = engine.spec.size, engine.manifest.num_classes
    return jsonify(
        name=engine.model_name,
        versions=[engine.version],
        platform=get_runtime(engine.framework).platform,
        inputs=[{"name": INPUT, "datatype": "FP32", "shape": [-1, size, size, 3]}],
        outputs=[
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    )


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response:
    engine = _model(name, version)
    engine.require_ready()
    return jsonify(name=engine.model_name, ready=True)


# ---------------------------------------------------------------------- inference


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    engine = _model(name, version)
    engine.admit()  # a full queue refuses before the body is read
    body, tensor, outputs = _parse_request(engine)
    if isinstance(tensor, np.ndarray):
        predictions = engine.classify_tensor(tensor)
    else:
        predictions = engine.classify_images(tensor)
    response: dict[str, Any] = {
        "model_name": engine.model_name,
        "model_version": engine.version,
        "outputs": [_output(o, predictions) for o in outputs],
        "parameters": {f"{k}_ms": v for k, v in predictions[0].timings.as_ms().items()},
    }
    if "id" in body:
        response["id"] = str(body["id"])
    return jsonify(response)


def _parse_request(engine: InferenceEngine
                   ) -> tuple[dict, np.ndarray | list[bytes], tuple[str, ...]]:
    """Read and check the body under the decode memory budget: (the request without its
    tensor data, an FP32 batch or encoded images, the requested outputs)."""
    _check_media_type()
    request.max_content_length = engine.max_json_bytes
    data = read_body()
    with engine.budget.reserve(len(data) * JSON_BYTES_PER_BODY_BYTE, "this JSON body"):
        body = _loads(data)
        del data
        if not isinstance(body, dict):
            raise _bad("the request body must be a JSON object")
        tensor = _single_input(body)
        outputs = _requested_outputs(body)
        if tensor["datatype"] == "BYTES":
            batch: np.ndarray | list[bytes] = _decode_bytes(tensor)
        else:
            batch = _fp32_batch(tensor, engine.spec.size)
        tensor["data"] = None  # the parsed numbers: free them before inference
    return body, batch, outputs


def _check_media_type() -> None:
    if BINARY_HEADER in request.headers:
        raise ApiError(415, "the binary tensor data extension is not supported: send the "
                            "tensors as JSON (tritonclient: binary_data=False on inputs and "
                            "outputs)", reason="binary_tensor_data")
    if request.mimetype.startswith(NOT_JSON_TYPES):
        raise ApiError(415, f"Content-Type {request.mimetype} is not accepted: the inference "
                            "request is a JSON object (send images to /predict, or base64 "
                            "in a BYTES input)", reason="unsupported_media_type")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _loads(data: bytes) -> Any:
    """Strict JSON (``NaN`` and ``Infinity`` refused) or a 400 saying what is wrong."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise _bad("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, digit limit
        raise _bad(f"the body is not valid JSON: {exc}") from None


def _single_input(body: dict) -> dict:
    """The one ``input`` tensor, with a valid datatype and integer shape."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _bad(f"'inputs' must be a list with exactly one tensor named {INPUT!r}")
    tensor = inputs[0]
    missing = [k for k in ("name", "datatype", "shape", "data") if k not in tensor]
    if missing:
        raise _bad(f"input tensor is missing {missing}")
    if tensor["name"] != INPUT:
        raise _bad(f"unknown input {tensor['name']!r}; the model's input is {INPUT!r}")
    if tensor["datatype"] not in ("FP32", "BYTES"):
        raise _bad(f"datatype {tensor['datatype']!r} is not accepted: send FP32 "
                   "(preprocessed NHWC images) or BYTES (base64 encoded images)")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _bad(f"shape must be a list of non-negative integers, got {shape!r}")
    return tensor


def _requested_outputs(body: dict) -> tuple[str, ...]:
    requested = body.get("outputs")
    if requested is None:
        return OUTPUTS
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise _bad("'outputs' must be a list of objects with a 'name'")
    names = tuple(o.get("name") for o in requested)
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise _bad(f"unknown output(s) {unknown}; the model's outputs are {list(OUTPUTS)}")
    return names


def _fp32_batch(tensor: dict, size: int) -> np.ndarray:
    """``data`` (flat or nested) as a finite float32 array of shape [N, size, size, 3]."""
    shape = tensor["shape"]
    expected = [size, size, 3]
    if len(shape) != 4 or shape[1:] != expected or shape[0] < 1:
        raise _bad(f"FP32 input shape must be [N, {size}, {size}, 3] with N >= 1, got {shape}")
    try:
        array = np.asarray(tensor["data"], dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise _bad(f"FP32 data must be numbers (flat or nested): {exc}") from None
    except OverflowError:
        raise _bad("FP32 data holds an integer too large for float32") from None
    except RecursionError:
        raise _bad("FP32 data is nested too deeply") from None
    if array.size != math.prod(shape):
        raise _bad(f"FP32 data has {array.size} elements, shape {shape} needs "
                   f"{math.prod(shape)}")
    if array.ndim not in (1, len(shape)) or (array.ndim > 1 and list(array.shape) != shape):
        raise _bad(f"nested FP32 data has shape {list(array.shape)}, declared {shape}")
    if not np.isfinite(array).all():
        raise _bad("FP32 data contains NaN or infinity")
    return array.reshape(shape)


def _decode_bytes(tensor: dict) -> list[bytes]:
    """``data``: N base64 strings (shape [N]) -> N encoded images."""
    data, shape = tensor["data"], tensor["shape"]
    if len(shape) != 1 or shape[0] < 1:
        raise _bad(f"BYTES input shape must be [N] with N >= 1, got {shape}")
    if not isinstance(data, list) or len(data) != shape[0]:
        raise _bad(f"BYTES data must be a list of {shape[0]} base64 strings")
    images = []
    for i, item in enumerate(data):
        if not isinstance(item, str):
            raise _bad(f"BYTES element {i} must be a base64 string, got {type(item).__name__}")
        try:
            images.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise _bad(f"BYTES element {i} is not valid base64") from None
    return images


def _output(name: str, predictions: list[Prediction]) -> dict[str, Any]:
    n = len(predictions)
    if name == "label":
        return {"name": name, "datatype": "BYTES", "shape": [n],
                "data": [p.label for p in predictions]}
    probs = np.stack([p.probabilities for p in predictions])
    return {"name": name, "datatype": "FP32", "shape": list(probs.shape),
            "data": probs.ravel().tolist()}
