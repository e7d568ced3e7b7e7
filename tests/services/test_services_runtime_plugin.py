"""A runtime is one table row and one predictor: a throw-away row, added from a module outside
the repository through ``VERSUS_RUNTIME_MODULES`` (no file of the project edited), is served by
a real gunicorn service from the ONNX artifact, listed by ``python -m bench --help`` and given
a Locust user class."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from shared.runtimes import MODULES_VARIABLE

REPO = Path(__file__).resolve().parents[2]
MODULE = "throwaway_runtime"
FIXED_LOGITS = [0.0, 1.0, 2.0, 3.0, 4.0]
PLUGIN = f'''
import numpy as np
from services.predictors.base import Predictor
from shared.runtimes import Runtime


class FixedPredictor(Predictor):
    """Reads the ONNX artifact's manifest and answers the same logits for every image."""

    framework = "fixed"
    version = "0.1"
    precision = "fp32"

    def load(self, path):
        self.row = np.asarray({FIXED_LOGITS!r}, np.float32)

    def logits(self, batch):
        return np.tile(self.row, (len(batch), 1))


RUNTIMES = [Runtime("fixed", "Fixed answers", "{MODULE}:FixedPredictor", "onnx", "onnx",
                    "onnx", 8099, "fixed_onnx", (), "#000000")]
'''


@pytest.fixture
def throwaway_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The plugin module on the path of this process and of its children."""
    (tmp_path / f"{MODULE}.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(MODULES_VARIABLE, MODULE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return {MODULES_VARIABLE: MODULE, "PYTHONPATH": f"{REPO}:{tmp_path}"}


def test_a_throwaway_row_is_served(throwaway_row, serve, make_image) -> None:
    server = serve("fixed")
    try:
        response = requests.post(server.url("/predict"), files={"image": make_image(1)},
                                 headers={"Accept": "application/json"}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        z = np.exp(np.asarray(FIXED_LOGITS) - max(FIXED_LOGITS))
        np.testing.assert_allclose(list(body["probabilities"].values()), z / z.sum(),
                                   atol=1e-6)
        assert body["model"]["framework"] == "fixed"
        meta = requests.get(server.url("/v2/models/dr"), timeout=10).json()
        assert meta["platform"] == "fixed_onnx" and meta["name"] == "dr-fixed"
    finally:
        server.stop()


def run(command: list[str], env: dict[str, str], tmp_path: Path) -> str:
    import os

    result = subprocess.run(command, cwd=tmp_path, env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def test_a_throwaway_row_is_in_the_bench_and_the_load_test(throwaway_row, tmp_path) -> None:
    bench_help = run([sys.executable, "-m", "bench", "--help"],
                     {**throwaway_row, "PYTHONPATH": throwaway_row["PYTHONPATH"]}, REPO)
    assert "torch,tensorflow,jax,onnx,openvino,fixed" in "".join(bench_help.split())
    locust = Path(sys.executable).with_name("locust")
    users = run([str(locust), "-f", str(REPO / "loadtest"), "--list"], throwaway_row, tmp_path)
    assert "FixedUser" in users.split() and "OnnxUser" in users.split()
