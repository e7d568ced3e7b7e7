"""``loadtest/_config.py``: targets, payload settings and the step plan from ``VERSUS_*``."""

from __future__ import annotations

from pathlib import Path

import pytest
from _config import ConfigError, PayloadSettings, StepPlan, load_shape, target_url, wait_seconds


def test_target_url_defaults_to_localhost_ports_and_strips_the_slash() -> None:
    assert [target_url(fw, {}) for fw in ("torch", "tensorflow", "jax", "onnx")] == [
        f"http://localhost:{port}" for port in (8001, 8002, 8003, 8004)]
    assert target_url("jax", {"VERSUS_JAX_URL": "http://jax:8003/"}) == "http://jax:8003"


def test_target_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="VERSUS_TORCH_URL"):
        target_url("torch", {"VERSUS_TORCH_URL": "torch:8001"})


def test_payload_settings_defaults_and_overrides() -> None:
    assert PayloadSettings.from_env({}) == PayloadSettings()
    settings = PayloadSettings.from_env({
        "VERSUS_PAYLOAD_DIR": "/data/dr", "VERSUS_PAYLOAD_PROFILE": "Small",
        "VERSUS_PAYLOAD_SIZE": "128", "VERSUS_PAYLOAD_SPLIT": "val",
        "VERSUS_PAYLOAD_COUNT": "8", "VERSUS_PAYLOAD_SEED": "3", "VERSUS_UPLOAD": "raw"})
    assert settings == PayloadSettings(Path("/data/dr"), "small", 128, "val", 8, 3, "raw")


@pytest.mark.parametrize(("name", "value"), [
    ("VERSUS_PAYLOAD_PROFILE", "huge"), ("VERSUS_PAYLOAD_SIZE", "2.5"),
    ("VERSUS_PAYLOAD_SIZE", "0"), ("VERSUS_PAYLOAD_SPLIT", "holdout"),
    ("VERSUS_PAYLOAD_COUNT", "many"), ("VERSUS_UPLOAD", "ftp"),
])
def test_bad_payload_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        PayloadSettings.from_env({name: value})


def test_step_plan_adds_users_per_step_and_ends_after_the_last_step() -> None:
    plan = StepPlan(step_users=4, step_seconds=10, max_users=10, spawn_rate=4)
    assert plan.steps == 3 and plan.duration_s == 30
    assert [plan.users_at(t) for t in (0, 9.9, 10, 25, 29.9, 30)] == [4, 4, 8, 10, 10, None]


def test_step_plan_from_env() -> None:
    plan = StepPlan.from_env({"VERSUS_STEP_USERS": "2", "VERSUS_STEP_SECONDS": "5",
                              "VERSUS_STEP_MAX_USERS": "6"})
    assert plan == StepPlan(step_users=2, step_seconds=5.0, max_users=6, spawn_rate=2.0)
    with pytest.raises(ConfigError, match="VERSUS_STEP_MAX_USERS"):
        StepPlan.from_env({"VERSUS_STEP_USERS": "8", "VERSUS_STEP_MAX_USERS": "4"})
    with pytest.raises(ConfigError, match="VERSUS_STEP_SECONDS"):
        StepPlan.from_env({"VERSUS_STEP_SECONDS": "nan"})


def test_load_shape_and_wait() -> None:
    assert load_shape({}) == ""
    assert load_shape({"VERSUS_LOAD_SHAPE": "step"}) == "step"
    with pytest.raises(ConfigError, match="VERSUS_LOAD_SHAPE"):
        load_shape({"VERSUS_LOAD_SHAPE": "ramp"})
    assert wait_seconds({}) == 0.0
    assert wait_seconds({"VERSUS_WAIT_S": "0.5"}) == 0.5
