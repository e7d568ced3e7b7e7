"""``locust -f loadtest/`` for real, as a subprocess: the directory loads, a headless run
against a live ONNX service passes its SLO and writes its CSVs, the OIP tag drives the OIP
API, the SLO gate fails a run against a failing or slow server, and the step shape is opt-in
and ends the run by itself.

The failing/slow servers are stubs (real HTTP servers in threads of the test process that
answer like a service): a real service cannot be made to fail on purpose, since a
broken model directory stops it from starting at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from shared.runtimes import runtimes

LocustRun = Any  # conftest.LocustRun: returncode, output, stats(), csv_rows(kind)

RUN = ("--headless", "-u", "4", "-r", "4")


def test_list_shows_one_user_class_per_service(locust: Callable[..., LocustRun]) -> None:
    run = locust("--list")
    assert run.returncode == 0, run.output
    users = run.stdout.split("Available Users:")[1].split()
    # one per row, variants included: OnnxInt8User for onnx-int8
    assert users == [n.title().replace("-", "") + "User" for n in runtimes()]


@pytest.mark.slow  # with the live service's start: a tiny ResNet exported to ONNX (~20 s)
def test_headless_run_against_a_live_service_meets_the_slo(
    locust: Callable[..., LocustRun], onnx_service: str
) -> None:
    run = locust(*RUN, "-t", "5s", "--tags", "onnx", env={"VERSUS_ONNX_URL": onnx_service})
    assert run.returncode == 0, run.output
    assert "SLO met" in run.output
    stats = run.stats()
    predict = stats["onnx /predict"]
    assert int(predict["Request Count"]) > 0
    assert int(predict["Failure Count"]) == 0
    assert int(stats["onnx /model"]["Failure Count"]) == 0
    # Only the tagged service ran, and OIP tasks stay off unless --tags names oip.
    assert set(stats) == {"onnx /predict", "onnx /model", "Aggregated"}
    assert run.csv_rows("failures") == []
    assert "StepLoadShape" not in run.output  # no shape unless VERSUS_LOAD_SHAPE=step


@pytest.mark.slow
def test_oip_tag_drives_the_oip_api_with_small_payloads(
    locust: Callable[..., LocustRun], onnx_service: str
) -> None:
    env = {"VERSUS_ONNX_URL": onnx_service, "VERSUS_PAYLOAD_PROFILE": "small",
           "VERSUS_PAYLOAD_SIZE": "32"}
    run = locust("OnnxUser", *RUN, "-t", "3s", "--tags", "oip", env=env)
    assert run.returncode == 0, run.output
    infer = run.stats()["onnx /v2/models/dr/infer"]
    assert int(infer["Request Count"]) > 0
    assert int(infer["Failure Count"]) == 0
    assert "onnx /predict" not in run.stats()
    assert "4 small images" in run.output


def test_slo_gate_fails_the_run_on_errors_or_latency(
    locust: Callable[..., LocustRun], stub_service: Callable[..., str]
) -> None:
    """One failing service (HTTP 500) and one slow one (200 ms > the 100 ms p95 objective):
    each violation is reported under its own request name."""
    env = {"VERSUS_TORCH_URL": stub_service("error", "torch"),
           "VERSUS_JAX_URL": stub_service("slow", "jax"), "VERSUS_SLO_P95_MS": "100"}
    run = locust("TorchUser", "JaxUser", *RUN, "-t", "3s", env=env)
    assert run.returncode == 1, run.output
    assert "SLO violated" in run.output
    assert "torch /predict: error ratio 1.0000" in run.output
    assert "jax /predict: p95" in run.output
    assert "jax /predict: error ratio" not in run.output
    stats = run.stats()
    assert int(stats["torch /predict"]["Request Count"]) > 0
    assert int(stats["jax /predict"]["Failure Count"]) == 0
    (failure,) = run.csv_rows("failures")
    assert failure["Name"] == "torch /predict" and "HTTP 500" in failure["Error"]


def test_step_shape_is_opt_in_and_ends_the_run(locust: Callable[..., LocustRun],
                                               stub_service: Callable[..., str]) -> None:
    env = {"VERSUS_TORCH_URL": stub_service("ok"), "VERSUS_LOAD_SHAPE": "step",
           "VERSUS_STEP_USERS": "1", "VERSUS_STEP_SECONDS": "1",
           "VERSUS_STEP_MAX_USERS": "2"}
    run = locust("TorchUser", "--headless", "--csv-full-history", env=env, timeout=40)
    assert run.returncode == 0, run.output
    history = run.csv_rows("stats_history")
    assert {int(row["User Count"]) for row in history} >= {1, 2}
    assert int(run.stats()["torch /predict"]["Failure Count"]) == 0



@pytest.mark.slow
@pytest.mark.parametrize("upload", ["oip-binary", "oip-bytes"])
def test_oip_uploads_drive_the_binary_oip_api(
    locust: Callable[..., LocustRun], onnx_service: str, upload: str
) -> None:
    """The predict task in an OIP upload mode: binary-framed OIP requests, every answer
    checked (shape, finite probabilities, label), no failure."""
    env = {"VERSUS_ONNX_URL": onnx_service, "VERSUS_UPLOAD": upload}
    run = locust(*RUN, "-t", "4s", "--tags", "onnx", env=env)
    assert run.returncode == 0, run.output
    stats = run.stats()
    assert set(stats) == {"onnx /v2/models/dr/infer", "onnx /model", "Aggregated"}
    assert int(stats["onnx /v2/models/dr/infer"]["Request Count"]) > 0
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    assert run.csv_rows("failures") == []
    assert f"uploaded as {upload}" in run.output


@pytest.mark.parametrize(("upload", "name", "error"), [
    # a JSON answer where binary outputs were asked for
    ("oip-bytes", "torch /v2/models/dr/infer", "no Inference-Header-Content-Length header"),
    # a manifest without the model input: no tensor can be built, nothing is sent
    ("oip-binary", "torch /model", "input size, mean and std"),
])
def test_oip_uploads_fail_on_a_wrong_answer(locust: Callable[..., LocustRun],
                                            stub_service: Callable[..., str], upload: str,
                                            name: str, error: str) -> None:
    env = {"VERSUS_TORCH_URL": stub_service("ok"), "VERSUS_UPLOAD": upload}
    run = locust("TorchUser", *RUN, "-t", "2s", env=env)
    assert run.returncode == 1, run.output
    (failure,) = run.csv_rows("failures")
    assert failure["Name"] == name and error in failure["Error"]
