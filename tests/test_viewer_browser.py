"""The viewer in a real browser: Debian's headless Chromium (driven by Selenium through Debian's
chromedriver; no browser is ever downloaded) signs in, uploads a shipped sample, waits for the
result and checks the overlay and the class. A screenshot is kept in test-artifacts/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from _serve import PASSWORDS, ThreadServer, login, make_app, make_store, samples  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("SONOSEG_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("Debian chromium / chromium-driver not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100",
              "--disable-extensions", "--no-first-run"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _png_pixels(png: bytes):
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(int)


@pytest.mark.slow
def test_viewer_login_upload_result(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    st = make_store(tmp_path / "data")
    app = make_app(st, worker=True, poll_s=0.2)
    sample = samples()[2]
    with ThreadServer(app) as srv:
        b = browser
        wait = WebDriverWait(b, 60)
        b.get(f"{srv.url}/viewer/")
        wait.until(ec.visibility_of_element_located((By.ID, "login-form")))
        b.find_element(By.ID, "username").send_keys("operator")
        b.find_element(By.ID, "password").send_keys("wrong-password")
        b.find_element(By.ID, "login-btn").click()
        wait.until(lambda d: "Wrong" in d.find_element(By.ID, "login-error").text)
        pw = b.find_element(By.ID, "password")
        pw.clear()
        pw.send_keys(PASSWORDS["operator"])
        b.find_element(By.ID, "login-btn").click()
        wait.until(ec.visibility_of_element_located((By.ID, "upload-box")))
        assert "operator" in b.find_element(By.ID, "who").text
        b.find_element(By.ID, "upload-files").send_keys(str(sample))
        b.find_element(By.ID, "upload-btn").click()
        wait.until(lambda d: "queued" in d.find_element(By.ID, "upload-msg").text)
        row = WebDriverWait(b, 240, poll_frequency=0.5).until(
            lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr[data-status=done]")), None))
        row.click()
        wait.until(lambda d: d.execute_script(
            "const i=document.getElementById('frame-img'), m=document.getElementById('frame-mask');"
            "return i.complete && m.complete && i.naturalWidth > 0 && m.naturalWidth > 0;"))

        # what the API says the result is: the page must show the same
        import httpx

        with httpx.Client(base_url=srv.url, timeout=60) as api:
            h = login(api, "viewer")
            rid = api.get("/api/v1/results", headers=h).json()["items"][0]["id"]
            res = api.get(f"/api/v1/results/{rid}", headers=h).json()
        label = b.find_element(By.ID, "class-label")
        # serve's default (the accurate tier) classifies: the page shows the API's class and every probability
        assert res["label"] in {"normal", "benign", "malignant"}, res["label"]
        assert label.text.lower() == res["label"]
        # the malignancy operating point: shown exactly when the API sets it (None: the model has none)
        assert b.find_element(By.ID, "suspicious-flag").is_displayed() == (res["suspicious"] is True)
        # a tentative outline is said so exactly when the API's summary says it
        assert b.find_element(By.ID, "tentative-note").is_displayed() == (res["summary"].get("outline") == "tentative")
        probs = b.find_element(By.ID, "probabilities").text
        assert set(res["probabilities"]) == {"normal", "benign", "malignant"}
        assert all(k in probs for k in res["probabilities"])
        meas = b.find_element(By.ID, "measurements").text
        assert f"{res['max_diameter']:.1f}" in meas and f"({res['unit']})" in meas
        assert b.find_element(By.ID, "seg-download").is_displayed()

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        stage = b.find_element(By.ID, "stage")
        b.execute_script("document.getElementById('overlay-opacity').value = 80;"
                         "document.getElementById('overlay-opacity').dispatchEvent(new Event('input'));")
        with_overlay = stage.screenshot_as_png
        b.save_screenshot(str(ARTIFACTS / "viewer_study.png"))
        b.find_element(By.ID, "overlay-toggle").click()
        assert not b.find_element(By.ID, "frame-mask").is_displayed()
        without = stage.screenshot_as_png
        b.find_element(By.ID, "overlay-toggle").click()
        assert b.find_element(By.ID, "frame-mask").is_displayed()
        on, off = _png_pixels(with_overlay), _png_pixels(without)
        assert on.shape == off.shape
        changed = (abs(on - off).sum(axis=2) > 30)
        # the overlay tints the lesion: a real share of the picture, not all of it
        assert 0.01 < changed.mean() < 0.9, changed.mean()
        tinted = on[changed]
        assert (tinted[:, 2] > tinted[:, 0]).mean() > 0.9  # orange in BGR: red above blue
    st.dispose()
