"""A multilabel model (ChestX-ray14's 14 findings) served by a real gunicorn service of every
base runtime, with the same service code as the multiclass models: the JSON answer carries
every finding's sigmoid probability and exactly the findings at or above the manifest's
thresholds, the result page lists every finding with its bar and marks those present, and OIP
returns the probability vector (independent sigmoids, not a softmax).

The artifacts are ports of one seeded initialisation (``training.fixtures``) with thresholds
0 and 1 alternating, so the findings the service reports can only come from the manifest
(the default 0.5 would give another set) and are known without trusting the model.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests

from services.predictors import Predictor, load_predictor
from shared.datasets import get_dataset_spec
from shared.imaging import PreprocessSpec, preprocess
from shared.runtimes import base_runtimes
from training.fixtures import runtime_model_dir, write_artifacts

pytestmark = pytest.mark.slow  # a gunicorn service per runtime

DATASET = "chestxray14"
FINDINGS = list(get_dataset_spec(DATASET).class_names)
THRESHOLDS = [0.0, 1.0] * (len(FINDINGS) // 2)
PRESENT = [name for name, t in zip(FINDINGS, THRESHOLDS, strict=True) if t == 0.0]
ATOL = 1e-4


@pytest.fixture(scope="module")
def chest_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chest-models")
    write_artifacts(root, dataset=DATASET, stage_sizes=(1, 1, 1, 1), image_size=32,
                    runtimes=list(base_runtimes()), thresholds=THRESHOLDS)
    return root


@pytest.fixture(scope="module", params=base_runtimes())
def chest_server(request: pytest.FixtureRequest, serve, chest_root: Path):
    model_dir = runtime_model_dir(chest_root, DATASET, request.param, "1")
    server = serve(request.param, model_dir=model_dir)
    yield server, load_predictor(request.param, model_dir, threads=1)
    server.stop()


def in_process(predictor: Predictor) -> Callable[[bytes], np.ndarray]:
    spec = PreprocessSpec.from_manifest_input(predictor.manifest.input.to_dict())
    return lambda data: predictor.predict(preprocess(data, spec)[None])[0]


def test_json_answer_has_every_probability_and_the_findings_above_threshold(
        chest_server, make_image) -> None:
    server, predictor = chest_server
    data = make_image(7, size=(64, 64))
    response = requests.post(server.url("/predict"), data=data, timeout=60,
                             headers={"Content-Type": "image/png"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["task"] == "multilabel" and list(body["probabilities"]) == FINDINGS
    want = in_process(predictor)(data)
    np.testing.assert_allclose(list(body["probabilities"].values()), want, atol=ATOL)
    assert body["thresholds"] == dict(zip(FINDINGS, THRESHOLDS, strict=True))
    assert sorted(body["findings"]) == sorted(PRESENT)
    ranked = [body["probabilities"][name] for name in body["findings"]]
    assert ranked == sorted(ranked, reverse=True)  # most probable first
    assert body["model"]["dataset"] == DATASET and body["label"] in FINDINGS


def test_result_page_lists_findings_with_bars_and_marks(chest_server, make_image) -> None:
    server, _ = chest_server
    response = requests.post(server.url("/predict"), timeout=60,
                             files={"image": ("chest.png", make_image(8, size=(64, 64)))},
                             headers={"Accept": "text/html"})
    assert response.status_code == 200 and "text/html" in response.headers["Content-Type"]
    page = html.unescape(response.text)
    assert page.count("<meter") == len(FINDINGS) and "Probability by finding" in page
    assert page.count('class="present"') == len(PRESENT)
    assert page.count('<span class="badge">present</span>') == len(PRESENT)
    for name in PRESENT:
        assert f'{name} <span class="badge">present</span>' in page


def test_oip_output_is_the_probability_vector(chest_server, make_image) -> None:
    server, predictor = chest_server
    images = [make_image(9, size=(64, 64)), make_image(10, size=(50, 70))]
    body = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [2],
                        "data": [base64.b64encode(i).decode() for i in images]}]}
    response = requests.post(server.url(f"/v2/models/{DATASET}/infer"), json=body, timeout=60)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    probs = outputs["probabilities"]
    assert probs["shape"] == [2, len(FINDINGS)] and probs["datatype"] == "FP32"
    got = np.reshape(probs["data"], (2, len(FINDINGS)))
    expected = in_process(predictor)
    np.testing.assert_allclose(got, [expected(i) for i in images], atol=ATOL)
    assert not np.allclose(got.sum(axis=1), 1.0)  # sigmoids, not a softmax
