"""Make the README's two screenshots with the project's own parts and headless Chromium.

    python docs/screenshots.py [--report reports/<run-id>/index.html] [--model DIR]

- ``docs/img/upload-form.png``: a real service (``python -m services``, started the way
  ``tests/services/test_services_browser.py`` starts one) serving ``--model`` (default: the
  newest ``models/bloodmnist/onnx/<version>``, e.g. what ``make demo`` trained, else a tiny
  seeded model from ``training.fixtures.write_artifacts``), driven by Selenium: the upload
  form, then the result page for one synthetic blood-cell image, side by side.
- ``docs/img/report.png``: the top of a rendered report (default: the newest
  ``reports/*/index.html``).

Both are cropped, scaled and palette-quantised with Pillow to stay well under 150 KB.
Needs Debian's ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "docs" / "img"
CELL_LABEL = 2  # erythroblast


def newest(pattern: str) -> Path | None:
    found = sorted(REPO.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def browser(profile: Path, width: int, height: int) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=Service(shutil.which("chromedriver") or "chromedriver"))
    driver.set_page_load_timeout(60)
    return driver


def shot(driver: webdriver.Chrome) -> Image.Image:
    return Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")


def save_small(image: Image.Image, path: Path, width: int) -> None:
    image = image.resize((width, round(image.height * width / image.width)),
                         Image.Resampling.LANCZOS)
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path.relative_to(REPO)}: {image.width}x{image.height}, "
          f"{path.stat().st_size / 1024:.0f} KB")


def serve(model_dir: Path, work: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "metrics").mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
           "VERSUS_WORKERS": "1", "VERSUS_INTRA_OP_THREADS": "1"}
    with open(work / "service.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services", "--framework", "onnx", "--model",
             str(model_dir), "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"service not ready:\n{(work / 'service.log').read_text()}")


def upload_form(model_dir: Path | None, work: Path) -> None:
    from shared.datasets.synth_blood import render_cell

    if model_dir is None:
        from training.fixtures import write_artifacts
        model_dir = write_artifacts(work / "models", dataset="bloodmnist", image_size=32,
                                    stage_sizes=(1, 1, 1, 1), runtimes=["onnx"])["onnx"]
    print(f"serving {model_dir}")
    cell = work / "cell.png"
    Image.fromarray(render_cell(CELL_LABEL, 192, seed=7)).save(cell)
    process, url = serve(model_dir, work)
    driver = browser(work / "chromium", 420, 1100)
    try:
        driver.get(url + "/")
        form = shot(driver)
        driver.find_element(By.ID, "image").send_keys(str(cell))
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 60).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "meter")))
        result = shot(driver)
    finally:
        driver.quit()
        process.terminate()
        process.wait(30)
    both = Image.new("RGB", (form.width + result.width + 16, form.height), "#888")
    both.paste(form, (0, 0))
    both.paste(result, (form.width + 16, 0))
    save_small(both, OUT / "upload-form.png", 720)


def report(html: Path, work: Path) -> None:
    print(f"rendering {html}")
    driver = browser(work / "chromium-report", 1280, 1250)
    try:
        driver.get(html.resolve().as_uri())
        image = shot(driver)
    finally:
        driver.quit()
    save_small(image, OUT / "report.png", 900)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--report", type=Path, default=newest("reports/*/index.html"))
    p.add_argument("--model", type=Path, default=newest("models/bloodmnist/onnx/*"))
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        upload_form(args.model, Path(tmp))
        if args.report is None:
            raise SystemExit("no reports/*/index.html: run `make demo` or pass --report")
        report(args.report, Path(tmp))


if __name__ == "__main__":
    main()
