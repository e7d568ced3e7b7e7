"""KServe Open Inference Protocol (v2) REST endpoints, so standard clients and load tools
(Triton's perf_analyzer, KServe clients, ``tritonclient.http`` on its defaults) can drive
every service the same way.

Model name: ``<dataset>-<framework>`` (``dr-torch``), unique behind a shared proxy; the bare
dataset name (``dr``) is accepted as an alias, so one client URL works against each of the
four services. Version: the artifact directory name (``models/dr/torch/1`` -> ``"1"``).

Inference input: exactly one input named ``input``, either

- ``FP32`` with shape ``[N, S, S, 3]``: already preprocessed NHWC images (JSON ``data`` flat
  in row-major order or nested, or binary: N*S*S*3 little-endian float32), or
- ``BYTES`` with shape ``[N]``: encoded images (JPEG, PNG, ...). In binary form each element
  is the image file itself (4-byte little-endian length, then the file); JSON cannot carry
  raw bytes and the protocol's JSON form of a BYTES element is a string, so there each
  element is the **base64** of one image file (as in KServe's image examples). The service
  decodes and preprocesses it exactly like ``POST /predict``: as a raw capture, cropped to
  the model's field of view, unless the request's ``parameters`` say ``{"input":
  "dataset"}`` (an image already in dataset format; see ``services.input_kind``). An FP32
  tensor is the model input itself, so ``"input": "raw"`` with one is refused.

Outputs: ``probabilities`` FP32 ``[N, C]`` (class order of the manifest's ``class_names``)
and ``label`` BYTES ``[N]``; a request's ``outputs`` list may select among them. Response
``parameters`` carry the request's stage timings in ms. Errors are ``{"error": "..."}``;
"not ready" is 503 + Retry-After, like KServe's model-not-ready error.

Binary tensor data extension (``binary_tensor_data`` in ``GET /v2``, framing in
:mod:`shared.binary_tensors`): a request with ``Inference-Header-Content-Length`` is that
many bytes of JSON followed by the data of each input whose ``parameters`` hold
``binary_data_size``; an output is answered in binary when its ``parameters.binary_data``
is true, or when the request's ``parameters.binary_data_output`` is and the output does not
say otherwise. Any binary output makes the response the JSON header, then the outputs' data,
with ``Inference-Header-Content-Length`` and ``Content-Type: application/octet-stream``;
otherwise it is JSON as before. Inconsistent framing is a 400 that says which length is
wrong.

Request body: JSON (or the JSON header) whatever the Content-Type says (``tritonclient.http``
sends none, ``curl -d`` sends a form type), as Triton and KServe read it; only a media type
that plainly is neither (an image, a multipart form) is 415. The body may be no larger than
:attr:`InferenceEngine.max_json_bytes` (413; a binary request needs a fifth or less of a JSON
one's bytes for the same tensor), its JSON parses as strict JSON (no ``NaN``; nesting too
deep for the parser is 400) and the request holds its share of the worker's decode memory
budget while its JSON is parsed and its tensor converted.
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
from services.input_kind import PARAMETER, RAW, parse_input_kind
from shared import binary_tensors
from shared.binary_tensors import FramingError
from shared.runtimes import get_runtime

bp = Blueprint("oip", __name__, url_prefix="/v2")

INPUT = "input"
OUTPUTS = ("probabilities", "label")
EXTENSIONS = ["binary_tensor_data"]
"""Protocol extensions this server implements, by Triton's names (``GET /v2``)."""
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
    return jsonify(name=f"versus-{_engine().framework}", version=version,
                   extensions=EXTENSIONS)


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
    kind = _input_kind(body, fp32=isinstance(tensor, np.ndarray))
    if isinstance(tensor, np.ndarray):
        predictions = engine.classify_tensor(tensor)
    else:
        predictions = engine.classify_images(tensor, input_kind=kind)
    encoded = [_output(o, binary, predictions) for o, binary in outputs]
    response: dict[str, Any] = {
        "model_name": engine.model_name,
        "model_version": engine.version,
        "outputs": [description for description, _ in encoded],
        "parameters": {f"{k}_ms": v for k, v in predictions[0].timings.as_ms().items()},
    }
    if "id" in body:
        response["id"] = str(body["id"])
    chunks = [data for _, data in encoded if data is not None]
    if not chunks:
        return jsonify(response)
    header = current_app.json.dumps(response).encode()
    data, headers = binary_tensors.frame(header, chunks)
    return Response(data, mimetype="application/octet-stream", headers=headers)


BINARY_COPIES_PER_BYTE = 1
"""Memory a request's binary data costs beyond the body already read, per byte: the BYTES
elements copied out of it (FP32 data is used in place)."""


def _parse_request(engine: InferenceEngine
                   ) -> tuple[dict, np.ndarray | list[bytes], list[tuple[str, bool]]]:
    """Read and check the body under the decode memory budget: (the request without its
    tensor data, an FP32 batch or encoded images, each requested output and whether it is
    wanted in binary)."""
    _check_media_type()
    request.max_content_length = engine.max_json_bytes
    data = read_body()
    try:
        text, binary = binary_tensors.split_body(data, request.headers.get(binary_tensors.HEADER))
    except FramingError as exc:
        raise _bad(str(exc)) from None
    binary_bytes = len(binary) if binary is not None else 0
    cost = len(text) * JSON_BYTES_PER_BODY_BYTE + binary_bytes * BINARY_COPIES_PER_BYTE
    with engine.budget.reserve(cost, "this request body"):
        body = _loads(text, binary is not None)
        del data, text
        if not isinstance(body, dict):
            raise _bad("the request body must be a JSON object")
        tensor = _single_input(body)
        outputs = _requested_outputs(body)
        try:
            (chunk,) = binary_tensors.input_chunks([tensor], binary)
            if chunk is None and "data" not in tensor:
                raise _bad("input tensor is missing ['data'] (or parameters.binary_data_size "
                           "with its data after the JSON header)")
            if tensor["datatype"] == "BYTES":
                batch: np.ndarray | list[bytes] = _images(tensor, chunk)
            else:
                batch = _fp32_batch(tensor, chunk, engine.spec.size)
        except FramingError as exc:
            raise _bad(str(exc)) from None
        tensor["data"] = None  # the parsed numbers: free them before inference
    return body, batch, outputs


def _input_kind(body: dict, *, fp32: bool) -> str:
    """The request parameter ``input`` (raw / dataset) for BYTES images; an FP32 tensor is
    already the model input, so it cannot be a raw capture."""
    parameters = body.get("parameters", {})  # an object: _requested_outputs checked it
    kind = parse_input_kind(parameters.get(PARAMETER))
    if fp32 and parameters.get(PARAMETER) == RAW:
        raise _bad(f"{PARAMETER}={RAW} needs a BYTES input (encoded images): an FP32 tensor "
                   "is already the preprocessed model input")
    return kind


def _check_media_type() -> None:
    if request.mimetype.startswith(NOT_JSON_TYPES):
        raise ApiError(415, f"Content-Type {request.mimetype} is not accepted: the inference "
                            "request is a JSON object, optionally followed by binary tensor "
                            "data (send images to /predict, or as a BYTES input)",
                       reason="unsupported_media_type")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _loads(data: bytes, framed: bool) -> Any:
    """Strict JSON (``NaN`` and ``Infinity`` refused) or a 400 saying what is wrong;
    ``framed``: ``data`` is the JSON header that ``Inference-Header-Content-Length`` cut."""
    what = (f"the JSON header (the first {len(data):,} bytes, per "
            f"{binary_tensors.HEADER})" if framed else "the body")
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise _bad("the JSON body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        hint = ""
        if exc.msg == "Extra data" and not framed:
            hint = (f" (binary tensor data after the JSON needs the {binary_tensors.HEADER} "
                    "header giving the JSON's length)")
        raise _bad(f"{what} is not valid JSON: {exc}{hint}") from None
    except ValueError as exc:  # UnicodeDecodeError, digit limit, NaN
        raise _bad(f"{what} is not valid JSON: {exc}") from None


def _single_input(body: dict) -> dict:
    """The one ``input`` tensor, with a valid datatype and integer shape."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _bad(f"'inputs' must be a list with exactly one tensor named {INPUT!r}")
    tensor = inputs[0]
    missing = [k for k in ("name", "datatype", "shape") if k not in tensor]
    if missing:
        raise _bad(f"input tensor is missing {missing}")
    if tensor["name"] != INPUT:
        raise _bad(f"unknown input {tensor['name']!r}; the model's input is {INPUT!r}")
    if tensor["datatype"] not in ("FP32", "BYTES"):
        raise _bad(f"datatype {tensor['datatype']!r} is not accepted: send FP32 "
                   "(preprocessed NHWC images) or BYTES (encoded images)")
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _bad(f"shape must be a list of non-negative integers, got {shape!r}")
    return tensor


def _requested_outputs(body: dict) -> list[tuple[str, bool]]:
    """Each requested output (all of them when the request names none) and whether it is
    answered as binary data."""
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise _bad("request 'parameters' must be an object")
    default = _flag(parameters, "binary_data_output", False, "request parameters")
    requested = body.get("outputs")
    if requested is None:
        return [(name, default) for name in OUTPUTS]
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise _bad("'outputs' must be a list of objects with a 'name'")
    names = [o.get("name") for o in requested]
    unknown = [n for n in names if n not in OUTPUTS]
    if unknown:
        raise _bad(f"unknown output(s) {unknown}; the model's outputs are {list(OUTPUTS)}")
    binary = []
    for output in requested:
        where = f"output {output['name']!r} parameters"
        options = output.get("parameters", {})
        if not isinstance(options, dict):
            raise _bad(f"{where} must be an object")
        binary.append(_flag(options, "binary_data", default, where))
    return list(zip(names, binary, strict=True))


def _flag(parameters: dict, key: str, default: bool, where: str) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise _bad(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _fp32_batch(tensor: dict, chunk: memoryview | None, size: int) -> np.ndarray:
    """JSON ``data`` (flat or nested) or binary data as a finite float32 array of shape
    [N, size, size, 3]."""
    shape = tensor["shape"]
    expected = [size, size, 3]
    if len(shape) != 4 or shape[1:] != expected or shape[0] < 1:
        raise _bad(f"FP32 input shape must be [N, {size}, {size}, 3] with N >= 1, got {shape}")
    if chunk is not None:
        array = binary_tensors.fixed_size_array(chunk, "FP32", shape)
    else:
        array = _json_fp32(tensor["data"], shape)
    if not np.isfinite(array).all():
        raise _bad("FP32 data contains NaN or infinity")
    return array


def _json_fp32(data: Any, shape: list[int]) -> np.ndarray:
    try:
        array = np.asarray(data, dtype=np.float32)
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
    return array.reshape(shape)


def _images(tensor: dict, chunk: memoryview | None) -> list[bytes]:
    """A BYTES input of shape [N] -> N encoded images: length-prefixed binary elements, or
    JSON ``data`` of N base64 strings."""
    shape = tensor["shape"]
    if len(shape) != 1 or shape[0] < 1:
        raise _bad(f"BYTES input shape must be [N] with N >= 1, got {shape}")
    if chunk is not None:
        return binary_tensors.bytes_elements(chunk, shape[0])
    data = tensor["data"]
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


def _output(name: str, binary: bool, predictions: list[Prediction]
            ) -> tuple[dict[str, Any], bytes | None]:
    """One output's description and, when it is answered in binary, its data."""
    n = len(predictions)
    if name == "label":
        description = {"name": name, "datatype": "BYTES", "shape": [n]}
        labels = [p.label for p in predictions]
        if not binary:
            return {**description, "data": labels}, None
        data = binary_tensors.encode_bytes_elements([label.encode() for label in labels])
    else:
        probs = np.stack([p.probabilities for p in predictions])
        description = {"name": name, "datatype": "FP32", "shape": list(probs.shape)}
        if not binary:
            return {**description, "data": probs.ravel().tolist()}, None
        data = binary_tensors.encode_array(probs, "FP32")
    return {**description, "parameters": {binary_tensors.SIZE: len(data)}}, data
