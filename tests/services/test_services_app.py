"""Every route of the service, for every runtime, through Flask's test client with the tiny
real models: the form, POST /predict as JSON and as an HTML page, health/readiness, the
manifest, Prometheus metrics and the Open Inference Protocol endpoints."""

from __future__ import annotations

import base64
import io
import re
import threading

import numpy as np
import pytest
from PIL import Image

from services.app import create_app
from services.engine import Timings
from services.predictors import load_predictor
from shared.manifest import Manifest
from shared.runtimes import get_runtime

CLASSES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(sample_labels.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------------- form + /predict


def test_upload_form_is_accessible_html(client) -> None:
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert '<html lang="en">' in html and 'name="viewport"' in html
    assert '<label for="image">' in html and 'id="image" name="image" type="file"' in html
    assert 'enctype="multipart/form-data"' in html
    assert "http://" not in html and "https://" not in html  # no external assets
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_predict_json_multipart(atol, runtime, client, predictor, make_image, expected
                                ) -> None:
    data = make_image(7)
    response = client.post("/predict", data={"image": (io.BytesIO(data), "eye.png")})
    body = response.get_json()
    assert response.status_code == 200, body
    assert list(body) == ["label", "class_index", "probabilities", "task", "model", "timings_ms",
                          "input"]
    assert body["task"] == "multiclass"
    assert body["input"] == {"kind": "raw", "centre_crop": 1.0, "field_of_view": "the whole image"}
    assert list(body["probabilities"]) == CLASSES
    probs = np.array(list(body["probabilities"].values()))
    np.testing.assert_allclose(probs, expected(data), atol=atol)
    assert body["class_index"] == int(np.argmax(probs)) and body["label"] == CLASSES[
        body["class_index"]]
    assert body["model"] == {"name": f"dr-{runtime}", "dataset": "dr", "framework": runtime,
                             "framework_version": body["model"]["framework_version"],
                             "version": "1", "precision": predictor.precision}
    assert set(body["timings_ms"]) == {*Timings().stages(), "total"}
    assert all(v >= 0 for v in body["timings_ms"].values())


@pytest.mark.parametrize("content_type", ["image/jpeg", "application/octet-stream"])
def test_predict_json_raw_body(atol, client, make_image, expected, content_type) -> None:
    data = make_image(8, fmt="JPEG")
    response = client.post("/predict", data=data, content_type=content_type)
    assert response.status_code == 200
    probs = list(response.get_json()["probabilities"].values())
    np.testing.assert_allclose(probs, expected(data), atol=atol)


def test_predict_html_for_browsers(runtime, client, make_image) -> None:
    data = make_image(9, size=(600, 400), fmt="JPEG")
    response = client.post("/predict", data={"image": (io.BytesIO(data), "eye.jpg")},
                           headers={"Accept": BROWSER_ACCEPT})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    thumb = re.search(r'<img src="data:image/jpeg;base64,([^"]+)" alt="([^"]+)"', html)
    assert thumb and thumb.group(2)
    image = Image.open(io.BytesIO(base64.b64decode(thumb.group(1))))
    assert max(image.size) <= 320 and image.size[0] > image.size[1]  # a thumbnail, aspect kept
    assert html.count("<meter") == len(CLASSES)
    for name in CLASSES:
        assert f'<th scope="row">{name}</th>' in html
    for stage in ("decode", "preprocess", "queue", "compute", "postprocess", "total"):
        assert f'<th scope="row">{stage}</th>' in html
    assert f"dr-{runtime}" in html and "version 1" in html


def test_curl_style_accept_gets_json(client, make_image) -> None:
    response = client.post("/predict", data=make_image(1), content_type="image/png",
                           headers={"Accept": "*/*"})
    assert response.mimetype == "application/json"


# ---------------------------------------------------------------------- health + model


def test_health_ready_and_model(runtime, client, predictor) -> None:
    assert client.get("/healthz").get_json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["status"] == "ready"
    serving = ready.get_json()["serving"]
    assert serving["max_batch_size"] == 8 and serving["intra_op_threads"] >= 1
    compiled = get_runtime(runtime).compile or runtime.startswith("jax")
    assert serving["batch_buckets"] == ([1, 2, 4, 8] if compiled else None)
    assert ready.get_json()["model"]["precision"] == predictor.precision
    assert list(serving["images_per_s_by_batch_size"]) == ["1", "2", "4", "8"]  # measured
    assert serving["preferred_batch_size"] in (1, 2, 4, 8)
    manifest = Manifest.from_dict(client.get("/model").get_json())  # validates every field
    assert manifest.framework == get_runtime(runtime).artifact and manifest.class_names == CLASSES
    assert manifest.input.size == 32


def test_a_configured_preferred_batch_size_is_not_measured(make_app) -> None:
    serving = make_app(PREFERRED_BATCH_SIZE=2).test_client().get("/readyz").get_json()["serving"]
    assert serving["preferred_batch_size"] == 2
    assert serving["images_per_s_by_batch_size"] == {}


@pytest.mark.parametrize("runtime", ["onnx"])
def test_the_predictor_lives_on_the_batcher_thread(runtime, model_dirs, make_image,
                                                   monkeypatch) -> None:
    """Load, warm-up, calibration and every predict run on one thread, the batcher's: an
    OpenMP runtime (torch) then has one thread team, whose spin-waits stay on."""
    import services.engine

    threads: dict[str, set[str]] = {}

    def record(what: str) -> None:
        threads.setdefault(what, set()).add(threading.current_thread().name)

    def load(*args: object, **kwargs: object) -> object:
        record("load")
        predictor = load_predictor(*args, **kwargs)
        inner = predictor.predict
        predictor.predict = lambda batch: (record("predict"), inner(batch))[1]
        return predictor

    monkeypatch.setattr(services.engine, "load_predictor", load)
    app = create_app({"FRAMEWORK": runtime, "MODEL_DIR": model_dirs(runtime),
                      "MAX_BATCH_SIZE": 4, "INTRA_OP_THREADS": 1})
    try:
        response = app.test_client().post("/predict", data=make_image(1),
                                          content_type="image/png")
        assert response.status_code == 200
        assert threads == {"load": {"versus-batcher"}, "predict": {"versus-batcher"}}
    finally:
        app.extensions["versus"].shutdown(timeout=10)


def test_not_ready_until_started(make_app, make_image) -> None:
    app = make_app(start=False)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    for path in ("/readyz", "/v2/health/ready", "/v2/models/dr/ready"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.headers["Retry-After"] == "1" and "loading" in response.get_json()["error"]
    refused = client.post("/predict", data=make_image(1), content_type="image/png")
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    app.extensions["versus"].start()
    assert client.get("/readyz").status_code == 200
    assert client.post("/predict", data=make_image(1), content_type="image/png").status_code == 200


def test_draining_is_not_ready(app, make_image) -> None:
    client = app.test_client()
    app.extensions["versus"].shutdown()
    assert client.get("/readyz").status_code == 503
    response = client.post("/predict", data=make_image(1), content_type="image/png")
    assert response.status_code == 503 and "draining" in response.get_json()["error"]


def test_metrics_count_requests_stages_batches(runtime, client, make_image) -> None:
    for seed in range(3):
        client.post("/predict", data=make_image(seed), content_type="image/png")
    client.post("/predict", data=b"not an image", content_type="image/png")
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    labels = {"framework": runtime, "model": "dr"}
    assert metric(text, "versus_requests_total", route="/predict", code="200", **labels) >= 3
    assert metric(text, "versus_requests_total", route="/predict", code="400", **labels) >= 1
    assert metric(text, "versus_request_duration_seconds_count", route="/predict", **labels) >= 4
    for stage in ("decode", "preprocess", "queue", "compute", "postprocess"):
        assert metric(text, "versus_stage_duration_seconds_count", stage=stage, **labels) >= 3
    assert metric(text, "versus_batch_size_count", **labels) >= 3
    assert metric(text, "versus_batch_duration_seconds_count", **labels) == metric(
        text, "versus_batch_size_count", **labels)
    assert metric(text, "versus_batch_duration_seconds_sum", **labels) > 0
    assert metric(text, "versus_rejected_requests_total", reason="undecodable_image",
                  **labels) >= 1
    assert metric(text, "versus_model_info", version="1", dataset="dr", **labels) == 1
    assert metric(text, "versus_inflight_requests", **labels) == 1  # this scrape
    assert metric(text, "versus_queue_depth", **labels) == 0
    assert 'le="0.005"' in text  # millisecond-scale latency buckets


# ---------------------------------------------------------------------- Open Inference Protocol


def test_oip_server_endpoints(runtime, client) -> None:
    meta = client.get("/v2").get_json()
    assert meta["name"] == f"versus-{runtime}"
    assert meta["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}


@pytest.mark.parametrize("name", ["dr-{runtime}", "dr"])
def test_oip_model_metadata_and_ready(runtime, client, name) -> None:
    name = name.format(runtime=runtime)
    meta = client.get(f"/v2/models/{name}").get_json()
    assert meta["name"] == f"dr-{runtime}" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 32, 32, 3]}]
    assert meta["outputs"] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 5]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    assert client.get(f"/v2/models/{name}/versions/1").get_json() == meta
    assert client.get(f"/v2/models/{name}/ready").get_json()["ready"] is True
    assert client.get(f"/v2/models/{name}/versions/1/ready").status_code == 200


@pytest.mark.parametrize("nested", [False, True])
def test_oip_infer_fp32(atol, runtime, client, predictor, nested) -> None:
    images = np.random.default_rng(3).standard_normal((3, 32, 32, 3)).astype(np.float32)
    data = images.tolist() if nested else images.ravel().tolist()
    body = {"id": "req-1", "inputs": [{"name": "input", "datatype": "FP32",
                                       "shape": [3, 32, 32, 3], "data": data}]}
    response = client.post(f"/v2/models/dr-{runtime}/infer", json=body)
    out = response.get_json()
    assert response.status_code == 200, out
    assert out["model_name"] == f"dr-{runtime}" and out["model_version"] == "1"
    assert out["id"] == "req-1"
    probs, labels = out["outputs"]
    assert probs["name"] == "probabilities" and probs["datatype"] == "FP32"
    assert probs["shape"] == [3, 5]
    expected = predictor.predict(images)
    np.testing.assert_allclose(np.reshape(probs["data"], (3, 5)), expected, atol=atol)
    assert labels == {"name": "label", "datatype": "BYTES", "shape": [3],
                      "data": [CLASSES[i] for i in expected.argmax(axis=1)]}
    assert {"queue_ms", "compute_ms", "total_ms"} <= set(out["parameters"])


def test_oip_infer_bytes_base64_images(atol, client, make_image, expected) -> None:
    images = [make_image(s, fmt=f) for s, f in ((11, "PNG"), (12, "JPEG"))]
    body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [2],
                        "data": [base64.b64encode(i).decode() for i in images]}],
            "outputs": [{"name": "probabilities"}]}
    response = client.post("/v2/models/dr/versions/1/infer", json=body)
    out = response.get_json()
    assert response.status_code == 200, out
    assert [o["name"] for o in out["outputs"]] == ["probabilities"]
    got = np.reshape(out["outputs"][0]["data"], (2, 5))
    np.testing.assert_allclose(got, [expected(i) for i in images], atol=atol)
