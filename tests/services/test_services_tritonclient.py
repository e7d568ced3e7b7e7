"""The real ``tritonclient.http.InferenceServerClient`` against a real gunicorn service.

On its defaults the client speaks the binary tensor data extension: inputs after the JSON
header (``Inference-Header-Content-Length``), outputs asked for in binary
(``InferRequestedOutput(binary_data=True)``, or ``binary_data_output`` when it names none).
The JSON form (``binary_data=False``, sent without a ``Content-Type``, as Triton and KServe
accept) keeps working, and so do mixes of the two."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from shared.imaging import PreprocessSpec, preprocess

pytestmark = pytest.mark.slow

SIZE = 32
MODEL = "dr-onnx"


@pytest.fixture(scope="module")
def server(serve):
    server = serve("onnx", MAX_BATCH_SIZE=8, PREFERRED_BATCH_SIZE=8)
    yield server
    server.stop()


@pytest.fixture
def runtime(server) -> str:
    return server.runtime


@pytest.fixture
def client(server):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    yield client
    client.close()


@pytest.fixture
def fp32_batch(predictor, make_image):
    """``fp32_batch(seeds)``: (the encoded images, their preprocessed NHWC float32 batch)."""
    spec = PreprocessSpec.from_manifest_input(predictor.manifest.input.to_dict())

    def build(seeds: tuple[int, ...]) -> tuple[list[bytes], np.ndarray]:
        images = [make_image(seed) for seed in seeds]
        return images, np.stack([preprocess(data, spec) for data in images])

    return build


@pytest.fixture
def label_of(predictor):
    """``label_of(probabilities)``: the manifest's class name of the most probable class."""
    return lambda probabilities: predictor.manifest.class_names[int(np.argmax(probabilities))]


def requested(*names: str, binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def fp32_input(batch: np.ndarray, *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    return tensor.set_data_from_numpy(batch, binary_data=binary)


def bytes_input(items: list[bytes], *, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", [len(items)], "BYTES")
    return tensor.set_data_from_numpy(np.array(items, dtype=np.object_), binary_data=binary)


def is_binary(result: triton.InferResult, name: str) -> bool:
    return "binary_data_size" in (result.get_output(name).get("parameters") or {})


def labels(result: triton.InferResult) -> list[str]:
    return [label.decode() if isinstance(label, bytes) else label
            for label in result.as_numpy("label")]


def test_health_and_metadata(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    assert client.is_model_ready(MODEL) and client.is_model_ready("dr")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32",
                                   "shape": [-1, SIZE, SIZE, 3]}]


def test_fp32_on_the_client_defaults_is_binary_both_ways(client, fp32_batch, expected,
                                                         label_of) -> None:
    images, batch = fp32_batch((1, 2, 3))
    result = client.infer(MODEL, [fp32_input(batch)])  # no outputs: binary_data_output
    assert is_binary(result, "probabilities") and is_binary(result, "label")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 5) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, [expected(d) for d in images], atol=1e-5)
    header = result.get_response()  # the JSON header: sizes instead of data
    assert all("data" not in output for output in header["outputs"])
    assert labels(result) == [label_of(p) for p in probabilities]


def test_bytes_images_in_binary_are_the_files_themselves(client, make_image, expected
                                                         ) -> None:
    images = [make_image(7), make_image(8, fmt="JPEG")]
    result = client.infer(MODEL, [bytes_input(images)],
                          outputs=requested("probabilities", "label", binary=True))
    np.testing.assert_allclose(result.as_numpy("probabilities"),
                               [expected(d) for d in images], atol=1e-5)
    assert len(labels(result)) == 2


def test_the_json_form_still_works(client, fp32_batch, make_image, expected) -> None:
    images, batch = fp32_batch((4, 5))
    result = client.infer(MODEL, [fp32_input(batch, binary=False)],
                          outputs=requested("probabilities", "label", binary=False))
    assert not is_binary(result, "probabilities") and not is_binary(result, "label")
    np.testing.assert_allclose(result.as_numpy("probabilities"),
                               [expected(d) for d in images], atol=1e-5)
    data = make_image(9)
    result = client.infer(MODEL, [bytes_input([base64.b64encode(data)], binary=False)],
                          outputs=requested("probabilities", binary=False))
    np.testing.assert_allclose(result.as_numpy("probabilities")[0], expected(data), atol=1e-5)


def test_json_and_binary_mix_as_the_protocol_allows(client, fp32_batch, expected, label_of
                                                    ) -> None:
    images, batch = fp32_batch((10,))
    want = [expected(d) for d in images]
    # JSON input, binary outputs (the client's default when it names no outputs)
    result = client.infer(MODEL, [fp32_input(batch, binary=False)])
    assert is_binary(result, "probabilities")
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-5)
    # binary input, one binary and one JSON output
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False),
               triton.InferRequestedOutput("label", binary_data=True)]
    result = client.infer(MODEL, [fp32_input(batch)], outputs=outputs)
    assert not is_binary(result, "probabilities") and is_binary(result, "label")
    np.testing.assert_allclose(result.as_numpy("probabilities"), want, atol=1e-5)
    assert labels(result) == [label_of(want[0])]


def test_bad_binary_data_is_a_400_and_the_service_keeps_serving(client, fp32_batch,
                                                                expected) -> None:
    tensor = triton.InferInput("input", [1, SIZE, SIZE, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, SIZE, SIZE, 3), np.float32))
    tensor.set_shape([2, SIZE, SIZE, 3])  # the data is one image, the shape says two
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [tensor])
    assert caught.value.status() == "400"
    assert "does not match shape [2, 32, 32, 3]" in caught.value.message()
    images, batch = fp32_batch((11,))
    np.testing.assert_allclose(client.infer(MODEL, [fp32_input(batch)]).as_numpy(
        "probabilities"), [expected(images[0])], atol=1e-5)


def test_a_header_length_over_a_json_only_body_is_plain_json(server, fp32_batch, expected
                                                             ) -> None:
    """``Inference-Header-Content-Length`` equal to the whole body, no binary inputs: the
    framing holds (zero bytes of binary data), the JSON input and outputs are used as is."""
    images, batch = fp32_batch((12,))
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32",
                                   "shape": list(batch.shape),
                                   "data": batch.ravel().tolist()}]}).encode()
    response = requests.post(server.url(f"/v2/models/{MODEL}/infer"), data=body, timeout=30,
                             headers={"Inference-Header-Content-Length": str(len(body))})
    assert response.status_code == 200, response.text
    assert "Inference-Header-Content-Length" not in response.headers
    (probabilities,) = [o for o in response.json()["outputs"] if o["name"] == "probabilities"]
    np.testing.assert_allclose(probabilities["data"], expected(images[0]), atol=1e-5)
