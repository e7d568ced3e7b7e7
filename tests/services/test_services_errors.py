"""Bad input never gets a 500 and never stops the service: each case gets its 400/404/405/
413/415/503 with ``{"error": ...}`` (an HTML page for a browser), is counted as rejected, and
a good request right after it is still answered correctly."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from flask import Flask
from PIL import Image

BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims ``width x height``: a decompression bomb's shape
    (its pixel data would never fit in memory; it must be refused from the header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(bytes(64))) + png_chunk(b"IEND", b""))


def encoded(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 60)).save(buffer, format=fmt)
    return buffer.getvalue()


def multipart(data: bytes, name: str = "image", filename: str = "x.png") -> dict:
    return {name: (io.BytesIO(data), filename)}


JPEG = encoded("JPEG")

#: (id, request kwargs for client.post("/predict") (built per test: file objects are
#: consumed), status, words in the error)
PREDICT_CASES = [
    ("no-file", lambda: {"data": multipart(JPEG, name="file")}, 400, "no file"),
    ("urlencoded-form", lambda: {"data": {"image": "x"}}, 415, "multipart/form-data"),
    ("no-file-selected", lambda: {"data": multipart(b"", filename="")}, 400, "no file"),
    ("empty-file", lambda: {"data": multipart(b"")}, 400, "empty"),
    ("empty-raw-body", lambda: {"data": b"", "content_type": "image/png"}, 400, "empty"),
    ("text-bytes", lambda: {"data": multipart(b"hello, I am not an image")}, 400,
     "not a recognised"),
    ("truncated-jpeg", lambda: {"data": multipart(JPEG[: len(JPEG) // 2])}, 400, "truncated"),
    ("gif", lambda: {"data": multipart(encoded("GIF"))}, 415, "GIF"),
    ("bomb-header", lambda: {"data": multipart(png_header_only(100_000, 100_000))}, 413,
     "pixels"),
    ("wrong-content-type", lambda: {"data": b"{}", "content_type": "application/json"}, 415,
     "Content-Type"),
    ("no-content-type", lambda: {"data": b"abc"}, 415, "Content-Type"),
]


@pytest.fixture
def check_still_serving(atol, client, make_image, expected) -> Callable[[], None]:
    """Asserts that a good request is answered correctly."""

    def check() -> None:
        data = make_image(42)
        response = client.post("/predict", data=data, content_type="image/png")
        assert response.status_code == 200
        probs = list(response.get_json()["probabilities"].values())
        np.testing.assert_allclose(probs, expected(data), atol=atol)

    return check


def assert_json_error(response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["error"] and words.lower() in body["error"].lower()


@pytest.mark.parametrize(("case", "kwargs", "status", "words"), PREDICT_CASES,
                         ids=[c[0] for c in PREDICT_CASES])
def test_bad_upload(client, check_still_serving, case, kwargs, status, words) -> None:
    assert_json_error(client.post("/predict", **kwargs()), status, words)
    check_still_serving()


def test_bad_upload_from_a_browser_gets_an_html_page(client, check_still_serving) -> None:
    response = client.post("/predict", data=multipart(b"", filename=""),
                           headers={"Accept": BROWSER_ACCEPT})
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert 'role="alert"' in html and "no file" in html and 'href="/"' in html
    check_still_serving()


@pytest.mark.parametrize(("config", "data", "words"), [
    ({"MAX_BODY_BYTES": 2_000}, encoded("PNG", (200, 200)) + bytes(5_000), "too large"),
    ({"MAX_IMAGE_BYTES": 500}, encoded("BMP", (40, 40)), "over the limit"),
    ({"MAX_IMAGE_PIXELS": 1_000}, encoded("PNG", (40, 30)), "pixels"),
], ids=["body-over-max-content-length", "image-over-max-bytes", "image-over-max-pixels"])
def test_too_large_is_413_json(make_app, config, data, words) -> None:
    client = make_app(**config).test_client()
    for kwargs in ({"data": multipart(data)}, {"data": data, "content_type": "image/png"}):
        assert_json_error(client.post("/predict", **kwargs), 413, words)
    assert client.post("/predict", data=encoded("PNG", (20, 20)),
                       content_type="image/png").status_code == 200


def test_unknown_route_and_wrong_method_are_json(client, check_still_serving) -> None:
    assert_json_error(client.get("/nope"), 404, "not found")
    assert_json_error(client.post("/v2/models/dr/nope"), 404)
    response = client.get("/predict")
    assert_json_error(response, 405, "method")
    assert response.headers["Allow"] == "OPTIONS, POST"
    assert_json_error(client.delete("/v2/models/dr/infer"), 405)
    check_still_serving()


# ---------------------------------------------------------------------- OIP


def infer_body(**tensor: object) -> dict:
    base = {"name": "input", "datatype": "FP32", "shape": [1, 32, 32, 3],
            "data": [0.0] * (32 * 32 * 3)}
    return {"inputs": [{**base, **tensor}]}


OIP_CASES = [
    ("not-an-object", [1, 2], 400, "JSON object"),
    ("no-inputs", {"outputs": []}, 400, "exactly one"),
    ("two-inputs", {"inputs": [infer_body()["inputs"][0]] * 2}, 400, "exactly one"),
    ("missing-field", {"inputs": [{"name": "input", "datatype": "FP32"}]}, 400, "missing"),
    ("wrong-name", infer_body(name="images"), 400, "unknown input"),
    ("wrong-dtype", infer_body(datatype="INT32"), 400, "datatype"),
    ("bad-shape-type", infer_body(shape="1,32,32,3"), 400, "shape"),
    ("wrong-shape", infer_body(shape=[1, 64, 64, 3]), 400, "shape"),
    ("nchw-shape", infer_body(shape=[1, 3, 32, 32]), 400, "shape"),
    ("zero-batch", infer_body(shape=[0, 32, 32, 3], data=[]), 400, "N >= 1"),
    ("too-little-data", infer_body(data=[0.0] * 10), 400, "elements"),
    ("nested-mismatch", infer_body(data=np.zeros((1, 32, 3, 32)).tolist()), 400, "nested"),
    ("ragged", infer_body(data=[[0.0], [0.0, 1.0]]), 400, "numbers"),
    ("strings-as-fp32", infer_body(data=["a"] * (32 * 32 * 3)), 400, "numbers"),
    ("nan", json.dumps(infer_body(data=[float("nan")] * (32 * 32 * 3))), 400, "NaN"),
    ("int-over-float-range", infer_body(data=[2**1024] * (32 * 32 * 3)), 400, "too large"),
    ("deep-nesting", "[" * 1000 + "]" * 1000, 400, "nested too deeply"),
    ("bytes-not-base64", infer_body(datatype="BYTES", shape=[1], data=["%%%"]), 400, "base64"),
    ("bytes-not-string", infer_body(datatype="BYTES", shape=[1], data=[3]), 400, "base64"),
    ("bytes-count", infer_body(datatype="BYTES", shape=[2], data=["aGk="]), 400, "list of 2"),
    ("bytes-not-image", infer_body(datatype="BYTES", shape=[1],
                                   data=[base64.b64encode(b"hello").decode()]), 400,
     "not a recognised"),
    ("unknown-output", {**infer_body(), "outputs": [{"name": "logits"}]}, 400, "unknown output"),
    ("too-many-images", infer_body(shape=[40, 32, 32, 3], data=[0.0] * (40 * 32 * 32 * 3)),
     413, "1 to 32 images"),
]


@pytest.mark.parametrize(("case", "body", "status", "words"), OIP_CASES,
                         ids=[c[0] for c in OIP_CASES])
def test_bad_oip_request(client, check_still_serving, case, body, status, words) -> None:
    text = body if isinstance(body, str) else json.dumps(body)  # the app's JSON is strict
    assert_json_error(client.post("/v2/models/dr/infer", data=text,
                                  content_type="application/json"), status, words)
    check_still_serving()


def test_extreme_inputs_give_finite_answers_or_422(client, predictor, check_still_serving
                                                   ) -> None:
    """All-3.4e38 inputs overflow most runtimes' activations: their non-finite outputs are a
    422, never a 200 with NaN. A runtime whose arithmetic saturates instead (OpenVINO's CPU
    plugin) answers 200 with finite, strict-JSON probabilities."""
    extreme = np.full((1, 32, 32, 3), 3.4e38, np.float32)
    finite = bool(np.isfinite(predictor.predict(extreme)).all())
    response = client.post("/v2/models/dr/infer", content_type="application/json",
                           data=json.dumps(infer_body(data=[3.4e38] * (32 * 32 * 3))))
    if finite:
        assert response.status_code == 200
        data = json.loads(response.get_data(as_text=True))["outputs"][0]["data"]
        assert all(np.isfinite(data))
    else:
        assert_json_error(response, 422, "NaN or infinite")
    check_still_serving()


def test_malformed_oip_transport(client, check_still_serving) -> None:
    assert_json_error(client.post("/v2/models/dr/infer", data="{not json",
                                  content_type="application/json"), 400)
    assert_json_error(client.post("/v2/models/dr/infer", data="x",
                                  content_type="text/plain"), 400, "not valid JSON")
    assert_json_error(client.post("/v2/models/dr/infer", data=JPEG,
                                  content_type="image/jpeg"), 415, "Content-Type")
    assert_json_error(client.post("/v2/models/resnet/infer", json=infer_body()), 404,
                      "unknown model")
    assert_json_error(client.get("/v2/models/dr/versions/2"), 404, "unknown version")
    check_still_serving()


# ---------------------------------------------------------------------- overload


class GatedPredictor:
    """Delegates to a real predictor, but ``predict`` waits at a gate once it is closed, so
    the test controls when the batcher is busy."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.busy = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.busy.set()
        self.gate.wait(30)
        return self._inner.predict(batch)


@pytest.mark.parametrize("runtime", ["onnx"])
def test_full_queue_is_503_with_retry_after(runtime, predictor, make_app, make_image) -> None:
    gated = GatedPredictor(predictor)
    app: Flask = make_app(PREDICTOR=gated, MAX_BATCH_SIZE=1, QUEUE_SIZE=1,
                          MAX_QUEUE_DELAY_MS=0)
    engine = app.extensions["versus"]
    gated.gate.clear()
    gated.busy.clear()
    results: dict[str, int] = {}

    def post(key: str) -> None:
        response = app.test_client().post("/predict", data=make_image(1),
                                          content_type="image/png")
        results[key] = response.status_code

    first = threading.Thread(target=post, args=("computing",))
    first.start()
    assert gated.busy.wait(10)
    second = threading.Thread(target=post, args=("queued",))
    second.start()
    for _ in range(1000):
        if engine.batcher.depth == 1:
            break
        threading.Event().wait(0.01)
    response = app.test_client().post("/predict", data=make_image(2), content_type="image/png")
    assert_json_error(response, 503, "queue full")
    assert response.headers["Retry-After"] == "1"
    gated.gate.set()
    first.join(10)
    second.join(10)
    assert results == {"computing": 200, "queued": 200}
