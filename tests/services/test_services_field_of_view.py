"""The training field of view applied to raw uploads, through a real gunicorn service.

A BloodMNIST model's manifest says a dataset image is the centre 200/360 of the shorter side
of the PBC microscope capture. Generated captures (``synth_blood.render_capture``: a cell
on a wider smear) uploaded raw must reach the model exactly like their dataset image (the
centre crop) uploaded with ``input=dataset``; the same for the form field and the Open
Inference Protocol's request parameter; other values are 400; a manifest written before
the field existed serves as before (the whole image).
"""

from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from services.app import create_app
from shared.datasets import get_dataset_spec, synth_blood
from shared.imaging import crop_field_of_view
from shared.manifest import manifest_path

pytestmark = pytest.mark.slow

FOV = get_dataset_spec("bloodmnist").raw_capture
JSON = {"Accept": "application/json"}


def png(pixels: np.ndarray | Image.Image) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def capture_and_dataset_image(label: int, seed: int) -> tuple[bytes, bytes]:
    """A raw capture (363 x 360 PNG) and its dataset image (the centre crop, as MedMNIST cut
    BloodMNIST out of the PBC captures)."""
    capture = Image.fromarray(synth_blood.render_capture(label, (seed, label)))
    return png(capture), png(crop_field_of_view(capture, FOV))


@pytest.fixture(scope="module")
def images() -> list[tuple[bytes, bytes]]:
    return [capture_and_dataset_image(label, 7) for label in (0, 3, 7)]


def predict(server, data: bytes, **params: str) -> dict:
    response = requests.post(server.url("/predict"), params=params, data=data,
                             headers={**JSON, "Content-Type": "image/png"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def probs(answer: dict) -> np.ndarray:
    return np.array(list(answer["probabilities"].values()))


def test_raw_capture_reaches_the_model_like_its_dataset_image(capture_server, images) -> None:
    for capture, dataset_image in images:
        raw = predict(capture_server, capture)  # the default: a raw capture
        cropped = predict(capture_server, dataset_image, input="dataset")
        np.testing.assert_allclose(probs(raw), probs(cropped), rtol=0, atol=1e-6)
        assert raw["label"] == cropped["label"]
        assert raw["input"] == {"kind": "raw", "centre_crop": FOV.centre_crop,
                                "field_of_view": "the centre 56% of the shorter side"}
        assert cropped["input"]["kind"] == "dataset" and cropped["input"]["centre_crop"] == 1
        explicit = predict(capture_server, capture, input="raw")
        np.testing.assert_allclose(probs(explicit), probs(raw), rtol=0, atol=1e-6)
        whole = predict(capture_server, capture, input="dataset")  # the old behaviour
        assert np.abs(probs(whole) - probs(raw)).max() > 1e-4  # the model saw another image


def test_form_field_and_query_parameter_agree(capture_server, images) -> None:
    capture, _ = images[0]
    url = capture_server.url("/predict")
    files = {"image": ("capture.png", capture, "image/png")}
    by_form = requests.post(url, files=files, data={"input": "dataset"}, headers=JSON,
                            timeout=60)
    by_query = requests.post(url, files=files, params={"input": "dataset"}, headers=JSON,
                             timeout=60)
    assert by_form.status_code == by_query.status_code == 200
    assert by_form.json()["probabilities"] == by_query.json()["probabilities"]
    assert by_form.json()["input"]["kind"] == "dataset"
    both = requests.post(url, files=files, data={"input": "raw"}, params={"input": "dataset"},
                         headers=JSON, timeout=60)
    assert both.status_code == 400 and "twice" in both.json()["error"]


@pytest.mark.parametrize("value", ["", "cropped", "RAW", "dataset ", "raw,dataset",
                                   "<b>x</b>" * 100])
def test_bad_input_values_are_400(capture_server, images, value) -> None:
    capture, _ = images[0]
    url = capture_server.url("/predict")
    answers = [
        requests.post(url, params={"input": value}, data=capture, timeout=60,
                      headers={**JSON, "Content-Type": "image/png"}),
        requests.post(url, files={"image": ("c.png", capture, "image/png")},
                      data={"input": value}, headers=JSON, timeout=60),
        requests.post(capture_server.url("/v2/models/bloodmnist/infer"), timeout=60,
                      json={"inputs": [bytes_input(capture)], "parameters": {"input": value}}),
    ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "input=raw" in answer.json()["error"] and "input=dataset" in answer.json()["error"]
    html = requests.post(url, params={"input": value}, data=capture, timeout=60,
                         headers={"Accept": "text/html", "Content-Type": "image/png"})
    assert html.status_code == 400 and "input=raw" in html.text
    assert "<b>" not in html.text and len(answers[1].json()["error"]) < 300
    assert requests.get(capture_server.url("/readyz"), timeout=10).status_code == 200


def bytes_input(*images: bytes) -> dict:
    return {"name": "input", "datatype": "BYTES", "shape": [len(images)],
            "data": [base64.b64encode(i).decode("ascii") for i in images]}


def infer(server, body: dict) -> requests.Response:
    return requests.post(server.url("/v2/models/bloodmnist/infer"), json=body, timeout=60)


def test_oip_parameter(capture_server, images) -> None:
    captures = [c for c, _ in images]
    crops = [d for _, d in images]
    raw = infer(capture_server, {"inputs": [bytes_input(*captures)]})
    cropped = infer(capture_server, {"inputs": [bytes_input(*crops)],
                                     "parameters": {"input": "dataset"}})
    assert raw.status_code == cropped.status_code == 200
    np.testing.assert_allclose(raw.json()["outputs"][0]["data"],
                               cropped.json()["outputs"][0]["data"], rtol=0, atol=1e-6)
    served = [probs(predict(capture_server, c)) for c in captures]
    np.testing.assert_allclose(np.ravel(served), raw.json()["outputs"][0]["data"], atol=1e-6)
    for parameters in (["input", "raw"], "dataset"):
        bad = infer(capture_server, {"inputs": [bytes_input(captures[0])],
                                     "parameters": parameters})
        assert bad.status_code == 400 and "'parameters' must be an object" in bad.json()["error"]


def test_oip_fp32_tensor_is_no_raw_capture(capture_server) -> None:
    size = requests.get(capture_server.url("/model"), timeout=10).json()["input"]["size"]
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, size, size, 3],
              "data": [0.0] * (size * size * 3)}
    assert infer(capture_server, {"inputs": [tensor]}).status_code == 200
    assert infer(capture_server, {"inputs": [tensor],
                                  "parameters": {"input": "dataset"}}).status_code == 200
    refused = infer(capture_server, {"inputs": [tensor], "parameters": {"input": "raw"}})
    assert refused.status_code == 400 and "FP32" in refused.json()["error"]


def test_manifest_and_form_say_what_is_done(capture_server) -> None:
    manifest = requests.get(capture_server.url("/model"), timeout=10).json()
    assert manifest["input"]["raw_capture"]["centre_crop"] == pytest.approx(200 / 360)
    form = requests.get(capture_server.url("/"), timeout=10).text
    assert 'name="input" type="radio" value="raw" checked' in form
    assert 'name="input" type="radio" value="dataset"' in form
    assert "The centre 56% of the shorter side\n        is cropped" in form
    assert "of which BloodMNIST kept the centre 200 x 200 px" in form
    assert "as in training" in form  # only for images already in dataset format
    assert "raw uploads are cropped to the centre 56% of the shorter side" in capture_server.log()


def test_old_manifest_without_the_field_serves_the_whole_image(capture_model_dir, tmp_path,
                                                               images) -> None:
    model_dir = tmp_path / "bloodmnist" / "onnx" / "1"
    shutil.copytree(capture_model_dir, model_dir)
    path = manifest_path(model_dir)
    manifest = json.loads(path.read_text())
    del manifest["input"]["raw_capture"]
    path.write_text(json.dumps(manifest))
    app = create_app({"FRAMEWORK": "onnx", "MODEL_DIR": model_dir, "MAX_BATCH_SIZE": 1})
    try:
        client = app.test_client()
        capture, _ = images[0]
        raw = client.post("/predict", data=capture, content_type="image/png", headers=JSON)
        whole = client.post("/predict?input=dataset", data=capture, content_type="image/png",
                            headers=JSON)
        assert raw.status_code == whole.status_code == 200
        assert raw.json["probabilities"] == whole.json["probabilities"]
        assert raw.json["input"] == {"kind": "raw", "centre_crop": 1.0,
                                     "field_of_view": "the whole image"}
        form = client.get("/").get_data(as_text=True)
        assert 'type="radio"' not in form and "as in training" in form
    finally:
        app.extensions["versus"].shutdown(timeout=10)


@pytest.mark.parametrize("runtime", ["onnx"])
def test_dr_form_has_no_field_of_view_choice(client) -> None:
    """A whole-image dataset (the DR fixtures) keeps the one sentence it always had."""
    form = client.get("/").get_data(as_text=True)
    assert 'type="radio"' not in form
    assert "centre-cropped to a square and resized to" in form


def test_tritonclient_binary_bytes_with_the_request_parameter(capture_server, images) -> None:
    """``tritonclient.http`` on its defaults (the image files in binary after the JSON) with
    ``parameters={"input": ...}`` on the request, as its ``infer`` sends them."""
    client = triton.InferenceServerClient(url=f"127.0.0.1:{capture_server.port}")
    try:
        def infer_files(files: list[bytes], **parameters: str) -> np.ndarray:
            tensor = triton.InferInput("input", [len(files)], "BYTES")
            tensor.set_data_from_numpy(np.array(files, dtype=np.object_))
            result = client.infer("bloodmnist", [tensor], parameters=parameters or None)
            return result.as_numpy("probabilities")

        captures, crops = [c for c, _ in images], [d for _, d in images]
        raw = infer_files(captures)
        np.testing.assert_allclose(raw, infer_files(crops, input="dataset"), atol=1e-6)
        assert np.abs(raw - infer_files(captures, input="dataset")).max() > 1e-4
        with pytest.raises(InferenceServerException, match="input=raw"):
            infer_files(captures, input="square")
    finally:
        client.close()
