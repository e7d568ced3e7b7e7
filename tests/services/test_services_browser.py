"""The upload form in a real headless Chromium against a real service: label-driven upload,
the result page (thumbnail, every class with its bar, latency), a multilabel model's result
page (every finding with its bar, those above threshold marked), a phone-sized viewport with
no sideways scrolling, no CSP violations, the HTML error page, and the raw-capture /
dataset-image choice on a BloodMNIST model's form.

Skips when Debian's ``chromium`` / ``chromedriver`` are not installed. Selenium is given the
driver path explicitly, so Selenium Manager never tries to download anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CLASSES = ["No DR", "Mild", "Moderate", "Severe", "Proliferative DR"]
PHONE = (390, 844)

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromedriver not found on PATH (apt-get install chromium "
                "chromium-driver)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from shared.datasets import get_dataset_spec, synth_blood  # noqa: E402
from shared.imaging import crop_field_of_view  # noqa: E402


@pytest.fixture(scope="module")
def server(serve):
    server = serve("onnx")
    yield server
    server.stop()


@pytest.fixture
def runtime() -> str:
    return "onnx"


@pytest.fixture
def browser(tmp_path: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 f"--window-size={PHONE[0]},{PHONE[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def no_sideways_scroll(driver) -> bool:
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth")


def severe_console_messages(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_upload_form_to_result_page(server, browser, make_image, expected, tmp_path) -> None:
    data = make_image(31, size=(640, 480), fmt="JPEG")
    path = tmp_path / "fundus.jpg"
    path.write_bytes(data)
    browser.get(server.url("/"))
    assert "Classify an image" in browser.title
    assert no_sideways_scroll(browser)
    label = browser.find_element(By.CSS_SELECTOR, "label[for=image]")
    field = browser.find_element(By.ID, label.get_attribute("for"))
    assert field.get_attribute("type") == "file" and field.get_attribute("required") is not None
    field.send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "meter")))

    want = CLASSES[int(np.argmax(expected(data)))]
    assert browser.find_element(By.CSS_SELECTOR, "h1 .label").text == want
    image = browser.find_element(By.CSS_SELECTOR, "figure img")
    assert image.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert image.get_attribute("alt")
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 0  # decoded
    rows = browser.find_elements(By.CSS_SELECTOR, "table.probs tbody th")
    assert [r.text for r in rows] == CLASSES
    meters = browser.find_elements(By.CSS_SELECTOR, "table.probs meter")
    values = [float(m.get_attribute("value")) for m in meters]
    assert len(values) == len(CLASSES) and abs(sum(values) - 1) < 1e-3
    assert all(m.get_attribute("aria-label") for m in meters)
    assert "total" in browser.find_element(By.CSS_SELECTOR, "table.timings").text
    assert no_sideways_scroll(browser)
    assert severe_console_messages(browser) == []  # CSP allows everything the page uses


def test_form_error_page(server, browser) -> None:
    browser.get(server.url("/"))
    field = browser.find_element(By.ID, "image")
    browser.execute_script("arguments[0].removeAttribute('required')", field)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    alert = WebDriverWait(browser, 30).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert "no file" in alert.text and "Error 400" in browser.title
    browser.find_element(By.LINK_TEXT, "Back to the upload form").click()
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "image")))


def upload_through_form(browser, server, path: Path, *, choice: str | None = None
                        ) -> list[float]:
    """Fill the form (picking the ``input`` radio by its label), submit, return the bars."""
    browser.get(server.url("/"))
    if choice is not None:
        browser.find_element(By.CSS_SELECTOR, f"label[for=input-{choice}]").click()
        assert browser.find_element(By.ID, f"input-{choice}").is_selected()
    browser.find_element(By.ID, "image").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "meter")))
    meters = browser.find_elements(By.CSS_SELECTOR, "table.probs meter")
    return [float(m.get_attribute("value")) for m in meters]


def test_form_field_of_view_choice(capture_server, browser, tmp_path) -> None:
    """BloodMNIST's form offers "a raw capture" (checked) and "already a bloodmnist image";
    a capture sent raw and its centre crop sent as a dataset image get the same answer."""
    capture = Image.fromarray(synth_blood.render_capture(1, 5))
    raw_path, crop_path = tmp_path / "capture.png", tmp_path / "crop.png"
    capture.save(raw_path)
    crop_field_of_view(capture, get_dataset_spec("bloodmnist").raw_capture).save(crop_path)

    browser.get(capture_server.url("/"))
    assert browser.find_element(By.ID, "input-raw").is_selected()
    help_text = browser.find_element(By.ID, "input-raw-help").text
    assert "The centre 56% of the shorter side is cropped" in help_text
    assert no_sideways_scroll(browser)
    raw = upload_through_form(browser, capture_server, raw_path)
    facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "raw capture, the centre 56% of the shorter side kept" in facts
    assert "field of view the model saw" in browser.find_element(By.TAG_NAME, "figcaption").text
    label = browser.find_element(By.CSS_SELECTOR, "h1 .label").text

    cropped = upload_through_form(browser, capture_server, crop_path, choice="dataset")
    assert "bloodmnist image, used as it is" in browser.find_element(By.CSS_SELECTOR,
                                                                     "dl.facts").text
    assert browser.find_element(By.CSS_SELECTOR, "h1 .label").text == label
    assert cropped == raw


CHEST_THRESHOLDS = [0.0, 1.0] * 7
"""0 and 1 alternating: the present findings are known whatever the untrained model says."""


@pytest.fixture(scope="module")
def chest_server(serve, tmp_path_factory):
    from shared.datasets import get_dataset_spec
    from training.fixtures import write_artifacts

    root = tmp_path_factory.mktemp("chest")
    dirs = write_artifacts(root, dataset="chestxray14", stage_sizes=(1, 1, 1, 1), image_size=32,
                           runtimes=["onnx"], thresholds=CHEST_THRESHOLDS)
    server = serve("onnx", model_dir=dirs["onnx"])
    yield server, list(get_dataset_spec("chestxray14").class_names)
    server.stop()


def test_multilabel_result_page(chest_server, browser, make_image, tmp_path) -> None:
    server, findings = chest_server
    present = [n for n, t in zip(findings, CHEST_THRESHOLDS, strict=True) if t == 0.0]
    path = tmp_path / "chest.png"
    path.write_bytes(make_image(41, size=(256, 256)))
    browser.get(server.url("/"))
    browser.find_element(By.ID, "image").send_keys(str(path))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.CSS_SELECTOR, "meter")))

    heading = browser.find_element(By.CSS_SELECTOR, "h1 .label").text
    assert sorted(heading.split(", ")) == sorted(present)
    assert browser.title.startswith(heading)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.findings tbody tr")
    assert len(rows) == len(findings)
    marked = [r.find_element(By.TAG_NAME, "th").text.removesuffix(" present")
              for r in rows if "present" in (r.get_attribute("class") or "")]
    assert marked == present  # class order, each with its visible "present" badge
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.present .badge")) == len(present)
    meters = browser.find_elements(By.CSS_SELECTOR, "table.findings meter")
    assert len(meters) == len(findings)
    values = [float(m.get_attribute("value")) for m in meters]
    assert all(0 <= v <= 1 for v in values) and abs(sum(values) - 1) > 1e-3  # sigmoids
    assert all("threshold" in m.get_attribute("aria-label") for m in meters)
    assert no_sideways_scroll(browser)
    assert severe_console_messages(browser) == []
