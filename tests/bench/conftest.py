"""Fixtures for the bench tests: a recorded results.json, tiny model artifacts, Chromium.

``data/recorded_results.json`` is a results.json as ``python -m bench`` writes it, for a full
run of four ResNet-50 services on a 16-core Xeon, with hand-set per-framework figures
(in-process images/s by batch size, single-image latency, HTTP overhead) and a little noise:
three repeats of five levels, one unstable level, and a TensorFlow service killed by the
OOM killer in repeat 1 at 8 users; the accuracy gate of the four fp32 rows on a 1,420-image
DR test split. The report generator is tested against it without any
service running.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_TIMEOUT_S = 120
SCREEN = (1280, 2400)


@pytest.fixture(scope="session")
def recorded_results_path() -> Path:
    return DATA / "recorded_results.json"


@pytest.fixture
def recorded_results(recorded_results_path: Path) -> dict[str, Any]:
    """A fresh (mutable) copy of the recorded results per test."""
    return copy.deepcopy(json.loads(recorded_results_path.read_text()))


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/bloodmnist/{torch,onnx}/1``: one seeded tiny ResNet (stages 1,1,1,1, 32 px),
    ported to torch and exported to ONNX, with valid manifests (the services engineer's
    ``write_artifacts``, the same helper the service tests use)."""
    from training.fixtures import write_artifacts

    root = tmp_path_factory.mktemp("models")
    write_artifacts(root, dataset="bloodmnist", stage_sizes=(1, 1, 1, 1), image_size=32,
                    runtimes=["torch", "onnx"])
    return root


def _add_variant(results: dict[str, Any], name: str, parent: str, speed: float,
                top1: float, verdict: str) -> None:
    """A variant row: its parent's record with every throughput scaled by ``speed``."""
    variant = copy.deepcopy(results["services"][parent])
    variant["framework"] = name
    for lv in variant["closed_loop"]["levels"]:
        for key in ("min", "median", "max"):
            lv["throughput_rps"][key] *= speed
    peak = variant["closed_loop"]["peak"]
    for key in ("min", "median", "max"):
        peak["throughput_rps"][key] *= speed
    results["services"][name] = variant
    base = results["accuracy_gate"]["services"][parent]
    results["accuracy_gate"]["services"][name] = {
        **base, "top1": top1, "value": top1, "precision": "int8", "verdict": verdict,
        "parent": parent, "parent_value": base["top1"], "agreement": 0.97,
        "ratio_to_parent": top1 / base["top1"], "reason": f"{verdict} (recorded)"}


@pytest.fixture(scope="session")
def add_variant() -> Callable[..., None]:
    """``add_variant(results, name, parent, speed, top1, verdict)``: a variant row in a
    results.json, made from its parent's record (see ``_add_variant``)."""
    return _add_variant


def chromium_screenshot(html: Path, png: Path, profile: Path,
                        size: tuple[int, int] = SCREEN) -> Path:
    """Render ``html`` in headless Chromium and save a screenshot (skips without it)."""
    binary = shutil.which("chromium") or (str(CHROMIUM) if CHROMIUM.exists() else None)
    if binary is None:
        pytest.skip("chromium not found (Debian package 'chromium')")
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               f"--screenshot={png}", f"--window-size={size[0]},{size[1]}",
               html.resolve().as_uri()]
    subprocess.run(command, capture_output=True, timeout=CHROMIUM_TIMEOUT_S, check=False)
    assert png.is_file(), f"chromium wrote no screenshot of {html}"
    return png


def image_widths(html: Path) -> list[int]:
    """naturalWidth of every <img> as Chromium (via selenium + chromedriver) loads the page;
    skips where either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver")
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not Path(driver_path).exists() or not CHROMIUM.exists():
        pytest.skip("chromium/chromedriver not found (Debian 'chromium-driver')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(html.resolve().as_uri())
        return driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    finally:
        driver.quit()


def not_blank(png: Path) -> bool:
    """True when the screenshot has real content (many distinct colours, not one fill)."""
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    return colours is None or len(colours) > 50


@pytest.fixture(scope="session")
def screenshot() -> Callable[..., Path]:
    """``screenshot(html, png, profile_dir)``: see :func:`chromium_screenshot`."""
    return chromium_screenshot


@pytest.fixture(scope="session")
def loaded_image_widths() -> Callable[[Path], list[int]]:
    """``loaded_image_widths(html)``: see :func:`image_widths`."""
    return image_widths


@pytest.fixture(scope="session")
def looks_rendered() -> Callable[[Path], bool]:
    """``looks_rendered(png)``: see :func:`not_blank`."""
    return not_blank
