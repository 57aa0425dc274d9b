"""The viewer in Debian's headless Chromium (issue 24 items 1 and 13): an out-of-scope upload shows
"out of scope" and the reason, never a class, probability, measurement or mask layer, and the worklist's
class filters leave it out; the model line names the model once; a cine's measurement table is paged
and follows the frame slider. Real server, real worker and model, real browser."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium.webdriver")

from _scope import CLASS_WORDS, green_png  # noqa: E402
from _serve import PASSWORDS, ThreadServer, login, make_app, make_store, samples, wait_until  # noqa: E402
from test_serve_worker import _cine, accurate_version  # noqa: E402
from test_viewer_browser import ARTIFACTS, browser  # noqa: E402,F401 (the fixture)

CINE_FRAMES = 16  # one or more measurement rows each: at least two pages of ten


def _upload_and_wait(url: str, files: list) -> list[str]:
    import httpx

    with httpx.Client(base_url=url, timeout=60) as api:
        h = login(api, "operator")
        ids = [j["id"] for j in api.post("/api/v1/jobs", files=files, headers=h).json()["jobs"]]
        done = lambda: all(api.get(f"/api/v1/jobs/{i}", headers=h).json()["status"] in ("done", "failed")  # noqa: E731
                           for i in ids)
        wait_until(done, 1800, every=1.0, what="the worker")  # generous: a loaded 2-core machine
        jobs = [api.get(f"/api/v1/jobs/{i}", headers=h).json() for i in ids]
    assert all(j["status"] == "done" for j in jobs), jobs
    return ids


def _sign_in(b, url: str, user: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(b, 60)
    b.get(f"{url}/viewer/")
    wait.until(ec.visibility_of_element_located((By.ID, "login-form")))
    b.find_element(By.ID, "username").send_keys(user)
    b.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    b.find_element(By.ID, "login-btn").click()
    wait.until(ec.visibility_of_element_located((By.ID, "worklist")))
    return wait


def _rows(b) -> set:
    """The job ids the worklist shows (read in one go: the list re-renders while it polls)."""
    return set(b.execute_script("return [...document.querySelectorAll('#jobs tbody tr')].map(t => t.dataset.job)"))


def _cell(b, job: str, col: int) -> str:
    return b.execute_script(f"const r=document.querySelector('#jobs tbody tr[data-job=\"{job}\"]');"
                            f"return r ? r.children[{col}].textContent : null;")


def _filter(b, wait, option: str, want: set) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(b.find_element(By.ID, "filter-class")).select_by_visible_text(option)
    wait.until(lambda d: set(_rows(d)) == want)


def _open(b, wait, job: str) -> None:
    wait.until(lambda d: d.execute_script(  # found and clicked in one step: the list may re-render
        f"const r=document.querySelector('#jobs tbody tr[data-job=\"{job}\"]'); if (r) r.click(); return !!r;"))
    wait.until(lambda d: d.execute_script(
        "const i=document.getElementById('frame-img'); return !document.getElementById('study').hidden"
        " && i.complete && i.naturalWidth > 0;"))


def _slide(b, i: int) -> None:
    b.execute_script("const s=document.getElementById('frame-slider'); s.value=arguments[0];"
                     "s.dispatchEvent(new Event('input'));", str(i))


@pytest.mark.slow
def test_viewer_out_of_scope_and_paged_cine(tmp_path, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    st = make_store(tmp_path / "data")
    green = green_png(tmp_path / "green.png")
    cine = _cine(samples()[0], tmp_path / "cine.dcm", n=CINE_FRAMES)
    # tokens outlive the wait: on a loaded machine the worker can take longer than their 15 minutes
    with ThreadServer(make_app(st, worker=True, poll_s=0.2, token_minutes=240)) as srv:
        green_job, cine_job = _upload_and_wait(srv.url, [("files", ("green.png", green.read_bytes())),
                                                         ("files", ("cine.dcm", cine.read_bytes()))])
        b = browser
        wait = _sign_in(b, srv.url, "viewer")
        wait.until(lambda d: {green_job, cine_job} <= set(_rows(d)))
        assert _cell(b, green_job, 3) == "out of scope"
        cine_label = _cell(b, cine_job, 3)
        assert cine_label in CLASS_WORDS
        for cls in CLASS_WORDS:  # a class filter never lists what has no verdict
            _filter(b, wait, cls, {cine_job} if cls == cine_label else set())
        _filter(b, wait, "out of scope", {green_job})

        # item 1: the out-of-scope study shows the reason only
        _open(b, wait, green_job)
        note = b.find_element(By.ID, "scope-note")
        assert note.is_displayed() and "Out of scope: not a finding." in note.text
        assert "does not look like the model's training images" in note.text
        assert b.find_element(By.ID, "class-label").text == "out of scope: no class"
        assert b.find_element(By.ID, "probabilities").text == ""
        assert b.find_element(By.ID, "measurements").find_element(By.TAG_NAME, "tbody").text == "not shown: out of scope"
        assert not b.find_element(By.ID, "frame-mask").is_displayed()
        assert not b.find_element(By.ID, "overlay-ctl").is_displayed()
        page = b.find_element(By.ID, "study").text.lower()
        assert not any(w in page for w in CLASS_WORDS) and "%" not in page
        model = b.find_element(By.ID, "model-line").text
        assert model.startswith(f"model breast_accurate.pt · {accurate_version()} · sha256 ") and "vbreast" not in model
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.save_screenshot(str(ARTIFACTS / "viewer_out_of_scope.png"))

        # item 13: the cine's measurement table is paged and follows the slider
        b.find_element(By.ID, "close-study").click()
        _filter(b, wait, "all", {green_job, cine_job})
        _open(b, wait, cine_job)
        wait.until(lambda d: d.find_element(By.ID, "meas-pager").is_displayed())  # the cine, not the last study
        table = b.find_element(By.ID, "measurements")
        pager = b.find_element(By.ID, "meas-page")
        assert b.find_element(By.ID, "overlay-ctl").is_displayed() and b.find_element(By.ID, "frame-mask").is_displayed()
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert 1 <= len(rows) <= 10 and pager.text.startswith("page 1 / ")
        pages = int(pager.text.split("/")[1])
        assert pages >= 2
        marked = lambda d: set(d.execute_script(  # noqa: E731 - read in one go: the rows are redrawn
            "return [...document.querySelectorAll('#measurements tbody tr.current')].map(t => t.dataset.frame)"))
        assert marked(b) == {"0"}
        _slide(b, CINE_FRAMES - 1)  # the page follows the slider to the last frame's rows
        wait.until(lambda d: marked(d) == {str(CINE_FRAMES - 1)})  # its rows start at row 16 or later
        assert int(pager.text.split()[1]) >= 2
        _slide(b, 0)
        wait.until(lambda d: pager.text == f"page 1 / {pages}" and marked(d) == {"0"})
        b.find_element(By.ID, "meas-next").click()  # paging by hand still works
        wait.until(lambda d: pager.text == f"page 2 / {pages}")
        assert table.size["height"] < 600  # ten rows, not one per frame
        b.save_screenshot(str(ARTIFACTS / "viewer_cine_paged.png"))
    st.dispose()
