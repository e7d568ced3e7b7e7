"""``bench.studies.oip_binary``: its requests are what ``tritonclient`` sends and carry the
same tensor each way, its summary subtracts the runtime's CPU, and end to end (slow) it runs
against a real service of the near-free ``pooled`` runtime."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.studies.oip_binary import KINDS, Request, build_requests, main, summarize
from shared.binary_tensors import HEADER, bytes_elements, fixed_size_array, split_body
from shared.imaging import PreprocessSpec, preprocess

REPO = Path(__file__).resolve().parents[3]
SIZE = 32


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_every_kind_carries_the_same_image() -> None:
    spec = PreprocessSpec(SIZE)
    images = [jpeg(1), jpeg(2)]
    kinds = build_requests(images, [(d, "image/jpeg") for d in images], spec)
    assert set(kinds) == set(KINDS) and all(len(kinds[k]) == 2 for k in KINDS)
    for index, data in enumerate(images):
        rows = preprocess(data, spec)[None]
        assert kinds["predict_jpeg"][index].body == data
        as_json = json.loads(kinds["oip_json_fp32"][index].body)
        assert HEADER not in kinds["oip_json_fp32"][index].headers
        np.testing.assert_array_equal(np.float32(as_json["inputs"][0]["data"]), rows.ravel())
        binary = kinds["oip_binary_fp32"][index]
        head, tail = split_body(binary.body, binary.headers[HEADER])
        assert json.loads(head)["inputs"][0]["parameters"] == {"binary_data_size": rows.nbytes}
        np.testing.assert_array_equal(fixed_size_array(tail, "FP32", list(rows.shape)), rows)
        files = kinds["oip_binary_bytes"][index]
        head, tail = split_body(files.body, files.headers[HEADER])
        assert bytes_elements(tail, 1) == [data]


class FixedCost:
    def ms_per_image(self, batch: float) -> float:
        return 1.0 if batch < 4 else 0.5


def phase(cpu: float, batch: float, rate: float) -> dict[str, float]:
    return {"images_per_s": rate, "service_cpu_ms": cpu, "mean_batch": batch,
            "client_cpu_ms": 0.1, "requests": 100}


def test_summary_subtracts_the_runtime_at_each_phases_batch() -> None:
    phases = {kind: [phase(3.0, 2, 100), phase(2.5, 8, 120), phase(4.0, 2, 90)]
              for kind in KINDS}
    kinds = {kind: [Request("/x", b"x" * 1000, {})] for kind in KINDS}
    summary = summarize(phases, kinds, FixedCost())
    row = summary["oip_binary_fp32"]
    assert row["service_cpu_ms"] == 3.0 and row["runtime_cpu_ms"] == 1.0
    assert row["outside_runtime_ms"] == 2.0  # median of 2.0, 2.0, 3.0
    assert row["images_per_s"] == 100 and row["images_per_s_range"] == [90, 120]
    assert row["request_kb"] == 1.0


def test_bad_arguments_exit_2_before_anything_starts(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--rounds", "0"])
    assert caught.value.code == 2
    assert "error: --rounds, --clients and --images must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_it_runs_end_to_end_on_the_pooled_runtime(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "bench.studies.oip_binary", "--architecture", "1,1,1,1",
         "--image-size", str(SIZE), "--images", "2", "--clients", "2", "--seconds", "0.5",
         "--rounds", "1", "--workdir", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "oip_binary.json").read_text())
    assert report["context"]["runtime"] == "pooled"
    rows = report["kinds"]
    assert list(rows) == list(KINDS)
    assert all(r["images_per_s"] > 0 and r["service_cpu_ms"] > 0 for r in rows.values())
    assert rows["oip_json_fp32"]["request_kb"] > 4 * rows["oip_binary_fp32"]["request_kb"]
    assert "| oip_binary_fp32 |" in (out / "oip_binary.md").read_text()
