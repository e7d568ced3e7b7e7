"""The OIP upload modes of the load test (``VERSUS_UPLOAD=oip-binary|oip-bytes``): the
setting, the request framing (tritonclient's), what a real service answers to it, and the
check of binary answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from _checks import ModelInfo, check_oip_binary
from _config import ConfigError, PayloadSettings
from _payloads import load_pool

from shared import binary_tensors
from shared.imaging import PreprocessSpec

CLASSES = ("No DR", "Mild", "Moderate", "Severe", "Proliferative DR")
MODEL = ModelInfo("onnx", "dr", CLASSES, spec=PreprocessSpec(32))


@pytest.mark.parametrize("mode", ["oip-binary", "oip-bytes", "OIP-Binary"])
def test_upload_setting_accepts_the_oip_modes(mode: str) -> None:
    assert PayloadSettings.from_env({"VERSUS_UPLOAD": mode}).upload == mode.lower()


@pytest.mark.parametrize("mode", ["oip", "oip-json", "binary"])
def test_upload_setting_refuses_other_modes(mode: str) -> None:
    with pytest.raises(ConfigError, match="VERSUS_UPLOAD must be one of"):
        PayloadSettings.from_env({"VERSUS_UPLOAD": mode})


def _parts(body: bytes, header: str) -> tuple[dict, bytes]:
    text, binary = binary_tensors.split_body(body, header)
    return json.loads(text), bytes(binary)


def test_requests_are_framed_as_tritonclient_frames_them(payload_dir: Path) -> None:
    """Same JSON (but the ``input`` parameter, which tritonclient passes through
    ``parameters=``) and byte-identical tensor data as ``generate_request_body``."""
    payload = load_pool(PayloadSettings(source=payload_dir, split="all")).payloads[0]
    assert payload.input_kind == "dataset"
    for mode in ("oip-binary", "oip-bytes"):
        request = payload.request(mode, MODEL)
        assert request.path == "/v2/models/dr/infer"
        ours, our_data = _parts(request.body, request.headers[binary_tensors.HEADER])
        if mode == "oip-binary":
            array = payload.tensor(MODEL)[None]
            assert array.shape == (1, 32, 32, 3) and array.dtype == np.float32
            tensor = triton.InferInput("input", list(array.shape), "FP32")
        else:
            array = np.array([payload.data], dtype=np.object_)
            tensor = triton.InferInput("input", [1], "BYTES")
        tensor.set_data_from_numpy(array, binary_data=True)
        body, size = triton.InferenceServerClient.generate_request_body(
            [tensor], parameters={"input": "dataset"})
        theirs, their_data = _parts(body, str(size))
        assert ours == theirs and our_data == their_data
    assert payload.request("oip-binary", MODEL) is payload.request("oip-binary", MODEL)


def test_oip_binary_needs_the_models_input(payload_dir: Path) -> None:
    payload = load_pool(PayloadSettings(source=payload_dir, split="all")).payloads[0]
    with pytest.raises(ConfigError, match="input size, mean and std"):
        payload.request("oip-binary", ModelInfo("onnx", "dr", CLASSES))


def _probabilities(response: requests.Response, classes: int) -> np.ndarray:
    header = response.headers.get(binary_tensors.HEADER)
    text, binary = binary_tensors.split_body(response.content, header)
    outputs = json.loads(text)["outputs"]
    chunks = binary_tensors.input_chunks(outputs, binary, kind="output")
    (probabilities,) = [binary_tensors.fixed_size_array(chunk, "FP32", [1, classes])[0]
                        for output, chunk in zip(outputs, chunks, strict=True)
                        if output["name"] == "probabilities"]
    return probabilities


@pytest.mark.slow  # the live services (shared with the Locust tests)
@pytest.mark.parametrize(("service", "source"), [
    ("onnx_service", "dataset"), ("onnx_service", "captures"),
    ("bloodmnist_service", "captures"),  # cropped to the field of view first
    ("chestxray14_service", "captures"),  # multilabel
])
def test_a_real_service_answers_the_oip_uploads_as_predict(
    request: pytest.FixtureRequest, payload_dir: Path, tmp_path: Path, service: str,
    source: str
) -> None:
    """Through the service's own parser: every mode answers 200 with a binary answer the
    check accepts, and the same probabilities as a /predict multipart upload of the file
    (so the client's preprocessing is the service's, raw-capture crop included, and
    ``input=dataset`` is honoured)."""
    url = request.getfixturevalue(service)
    if source == "captures":  # the same files outside a dataset: raw captures
        for file in sorted(payload_dir.glob("**/*.jpeg"))[:2]:
            (tmp_path / file.name).write_bytes(file.read_bytes())
        payload_dir = tmp_path
    model = ModelInfo.from_manifest(requests.get(f"{url}/model", timeout=10).json(), "onnx")
    assert model.spec is not None and model.spec.size == 32
    if service == "bloodmnist_service":
        assert not model.raw_capture.whole_image
    assert (model.task == "multilabel") == (service == "chestxray14_service")
    pool = load_pool(PayloadSettings(source=payload_dir, split="all", count=2))
    for payload in pool.payloads:
        assert payload.input_kind == ("raw" if source == "captures" else "dataset")
        predict = payload.request("multipart", model)
        expected = requests.post(url + predict.path, data=predict.body,
                                 headers=predict.headers, timeout=30).json()["probabilities"]
        if isinstance(expected, dict):  # multiclass: by class name; multilabel: a list
            expected = [expected[name] for name in model.class_names]
        for mode in ("oip-binary", "oip-bytes"):
            sent = payload.request(mode, model)
            response = requests.post(url + sent.path, data=sent.body, headers=sent.headers,
                                     timeout=30)
            assert response.status_code == 200, response.text[:300]
            header = response.headers.get(binary_tensors.HEADER)
            assert check_oip_binary(response.content, header, model) is None
            np.testing.assert_allclose(_probabilities(response, len(model.class_names)),
                                       expected, atol=1e-5)


# ---------------------------------------------------------------------- the answer check


def answer(probabilities: Any = (0.1, 0.2, 0.3, 0.2, 0.2), label: bytes = b"Moderate",
           shape: list[int] | None = None, name: str = "dr-onnx") -> tuple[bytes, str]:
    """A binary-framed answer as the services write it (``binary_tensors.frame``)."""
    probs = binary_tensors.encode_array(np.asarray(probabilities), "FP32")
    labels = binary_tensors.encode_bytes_elements([label])
    header = json.dumps({"model_name": name, "outputs": [
        {"name": "probabilities", "datatype": "FP32",
         "shape": shape or [1, len(probabilities)], "parameters": {"binary_data_size": len(probs)}},
        {"name": "label", "datatype": "BYTES", "shape": [1],
         "parameters": {"binary_data_size": len(labels)}},
    ]}).encode()
    body, headers = binary_tensors.frame(header, [probs, labels])
    return body, headers[binary_tensors.HEADER]


def test_check_accepts_a_good_answer() -> None:
    assert check_oip_binary(*answer(), MODEL) is None
    multilabel = ModelInfo("onnx", "dr", CLASSES, "multilabel", (0.5,) * len(CLASSES))
    assert check_oip_binary(*answer((0.9, 0.8, 0.0, 1.0, 0.5)), multilabel) is None


def _truncated() -> tuple[bytes, str]:
    body, header = answer()
    return body[:-3], header


def _past_the_end() -> tuple[bytes, str]:
    body, _ = answer()
    return body, str(len(body) + 1)


def _extra_bytes() -> tuple[bytes, str]:
    body, header = answer()
    return body + b"\0", header


@pytest.mark.parametrize(("make", "problem"), [
    (lambda: (answer()[0], None), "no Inference-Header-Content-Length"),
    (_past_the_end, "past the end"),
    (_truncated, "malformed"),
    (_extra_bytes, "malformed"),
    (lambda: (b"{not json", "9"), "malformed"),
    (lambda: answer(name="dr-torch"), "model_name 'dr-torch'"),
    (lambda: answer((0.5, 0.5)), "shape [1, 2], not [1, 5]"),
    (lambda: answer(shape=[5, 1]), "shape [5, 1]"),
    (lambda: answer((np.nan, 0.2, 0.3, 0.2, 0.3)), "finite and in [0, 1]"),
    (lambda: answer((1.5, -0.5, 0.0, 0.0, 0.0)), "finite and in [0, 1]"),
    (lambda: answer((0.9, 0.9, 0.9, 0.9, 0.9)), "sum to 4.5000, not 1"),
    (lambda: answer(label=b"cat"), "not among the model's class names"),
])
def test_check_finds_bad_answers(make: Callable[[], tuple[bytes, str | None]],
                                 problem: str) -> None:
    body, header = make()
    assert problem in (check_oip_binary(body, header, MODEL) or "")


def test_check_needs_binary_outputs() -> None:
    """A JSON answer (outputs in ``data``) is not what binary outputs asked for."""
    header = json.dumps({"model_name": "dr-onnx", "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 5], "data": [0.2] * 5},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["Mild"]}]}).encode()
    problem = check_oip_binary(header, str(len(header)), MODEL)
    assert problem == "the response has no binary FP32 probabilities output"
