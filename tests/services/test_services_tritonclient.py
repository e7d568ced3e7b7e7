"""The real ``tritonclient.http.InferenceServerClient`` against a real gunicorn service, in
JSON mode (``binary_data=False`` on inputs and requested outputs): it sends its JSON without
a ``Content-Type``, as Triton and KServe accept. The binary tensor data extension is not
implemented: such a request gets a clear 415, never a 500."""

from __future__ import annotations

import base64

import numpy as np
import pytest
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


def requested(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def test_health_and_metadata(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready("dr")
    metadata = client.get_model_metadata(MODEL)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32",
                                   "shape": [-1, SIZE, SIZE, 3]}]


def test_fp32_infer_in_json_mode(client, predictor, make_image, expected) -> None:
    spec = PreprocessSpec.from_manifest_input(predictor.manifest.input.to_dict())
    images = [make_image(seed) for seed in (1, 2, 3)]
    batch = np.stack([preprocess(data, spec) for data in images])
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=False)
    result = client.infer(MODEL, [tensor], outputs=requested("probabilities", "label"))
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 5) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, [expected(d) for d in images], atol=1e-5)
    assert len(result.as_numpy("label")) == 3


def test_bytes_infer_with_base64_images(client, make_image, expected) -> None:
    data = make_image(7)
    tensor = triton.InferInput("input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([base64.b64encode(data)], dtype=np.object_),
                               binary_data=False)
    result = client.infer(MODEL, [tensor], outputs=requested("probabilities"))
    np.testing.assert_allclose(result.as_numpy("probabilities")[0], expected(data), atol=1e-5)


def test_binary_tensor_data_is_a_clear_415(client, make_image, expected) -> None:
    tensor = triton.InferInput("input", [1, SIZE, SIZE, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, SIZE, SIZE, 3), np.float32), binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(MODEL, [tensor], outputs=requested("probabilities"))
    assert caught.value.status() == "415"
    assert "binary_data=False" in caught.value.message()
    data = make_image(8)  # still serving, same answers
    tensor = triton.InferInput("input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([base64.b64encode(data)], dtype=np.object_),
                               binary_data=False)
    result = client.infer(MODEL, [tensor], outputs=requested("probabilities"))
    np.testing.assert_allclose(result.as_numpy("probabilities")[0], expected(data), atol=1e-5)
