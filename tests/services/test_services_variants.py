"""Every variant row of the runtime table (``torch-bf16``, ``openvino-int8``, ...) served, once
through the app and once through a real gunicorn service (``python -m services --framework
<variant>``): the answers are the predictor's, the precision the runtime really ran is
reported in /readyz and in every prediction's ``model`` block, and a compiled row serves its
batch buckets. (The route and error tests run on the base runtimes: a variant shares their
code.)"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from services.predictors import Predictor
from shared.runtimes import get_runtime, runtimes

VARIANTS = [name for name, row in runtimes().items() if row.is_variant]


@pytest.fixture(params=VARIANTS)
def runtime(request: pytest.FixtureRequest) -> str:
    """Each variant row (the conftest fixtures, ``predictor``, ``make_app``, ... follow it)."""
    return request.param


def test_a_variant_serves_through_the_app(runtime: str, predictor: Predictor, make_app,
                                          make_image, expected, atol: float) -> None:
    row = get_runtime(runtime)
    client = make_app(PREFERRED_BATCH_SIZE=8).test_client()
    ready = client.get("/readyz").get_json()
    assert ready["model"]["framework"] == runtime
    assert ready["model"]["precision"] == predictor.precision
    assert ready["serving"]["batch_buckets"] == (
        [1, 2, 4, 8] if row.compile or runtime.startswith("jax") else None)
    assert client.get("/model").get_json()["framework"] == row.artifact
    data = make_image(7)
    body = client.post("/predict", data=data, content_type="image/png").get_json()
    assert body["model"]["framework"] == runtime
    assert body["model"]["precision"] == predictor.precision
    np.testing.assert_allclose(list(body["probabilities"].values()), expected(data), atol=atol)
    images = np.random.default_rng(3).standard_normal((3, 32, 32, 3)).astype(np.float32)
    oip = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 32, 32, 3],
                       "data": images.ravel().tolist()}]}
    out = client.post(f"/v2/models/dr-{runtime}/infer", json=oip).get_json()
    np.testing.assert_allclose(np.reshape(out["outputs"][0]["data"], (3, 5)),
                               predictor.predict(images), atol=atol)


@pytest.fixture(scope="module")
def servers(serve) -> dict:
    """One single-worker service per variant, all started at once (they warm up together)."""
    started = {name: serve(name, wait=False, WORKERS=1, MAX_BATCH_SIZE=8,
                           PREFERRED_BATCH_SIZE=8) for name in VARIANTS}
    yield started
    for server in started.values():
        server.stop()


@pytest.mark.slow
def test_a_variant_serves_through_gunicorn(runtime: str, servers, predictor: Predictor,
                                           make_image, expected, atol: float) -> None:
    server = servers[runtime].wait_ready()
    ready = requests.get(server.url("/readyz"), timeout=10).json()
    assert ready["model"]["framework"] == runtime
    assert ready["model"]["precision"] == predictor.precision  # the same runtime, same host
    data = make_image(11)
    response = requests.post(server.url("/predict"), data=data,
                             headers={"Content-Type": "image/png"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["model"]["precision"] == predictor.precision
    np.testing.assert_allclose(list(response.json()["probabilities"].values()), expected(data),
                               atol=atol)
