"""No verdict on what is out of scope (issue 24 item 1): where the domain check flags an input, the CLI
table, the overlay, the service's API and filters, and ``listen`` show "out of scope" and the reason,
never a class, probability or size; the raw values come back only when asked for (``--show-withheld``,
``?raw=true``), marked as withheld. The viewer is checked in Chromium (test_viewer_scope_browser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from _scope import CLASS_WORDS, green_dicom, green_png


def _row(output: str, name: str) -> str:
    """The table row of ``name``, its cells joined back where the table wrapped them onto more lines (a row
    continues on lines whose first cell is empty; the width of a table without a terminal is fixed)."""
    lines = output.splitlines()
    i = next(k for k, ln in enumerate(lines) if name in ln and "│" in ln)
    cells = [c.strip() for c in lines[i].split("│")]
    for ln in lines[i + 1:]:
        more = [c.strip() for c in ln.split("│")]
        if len(more) != len(cells) or more[1]:
            break
        cells = [f"{a} {b}".strip() for a, b in zip(cells, more)]
    return " │ ".join(cells)


def test_predict_table_and_overlay_give_no_verdict(tmp_path):
    import cv2
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    png = green_png(tmp_path / "green.png")
    args = ["predict", str(png), "--backend", "torch", "--threads", "1", "--no-progress"]
    res = CliRunner().invoke(app, args + ["-o", str(tmp_path / "o")], env={"COLUMNS": "240"})
    assert res.exit_code == 0, res.output
    row = _row(res.output, "green.png")
    assert "out of scope" in row and "NO" in row
    assert not any(w in row.lower() for w in CLASS_WORDS) and not re.search(r"\d\.\d", row), row
    assert "green.png: out of scope, not a finding: does not look like the model's training images" in res.output
    (r,) = json.loads((tmp_path / "o" / "results.json").read_text())["results"]
    s = r["summary"]
    assert s["in_scope"] is False and s["scope_reason"]
    assert all(s[k] is None for k in ("class", "class_probabilities", "max_area", "max_diameter", "confidence"))
    assert s["withheld"]["class"] in CLASS_WORDS and set(s["withheld"]["class_probabilities"]) == set(CLASS_WORDS)
    meas = json.loads(Path(r["measurements"]).read_text())
    assert meas["decision"] is None and meas["withheld"]["decision"]["class"] == s["withheld"]["class"]
    # the overlay: the picture under the banner and the reason; no mask tint anywhere below the text
    over = cv2.cvtColor(cv2.imread(r["overlay"]), cv2.COLOR_BGR2RGB).astype(int)
    src = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(int)
    assert (over[:20, :, 0] > 150).mean() > 0.5 and (over[:20, :, 1] < 60).mean() > 0.5  # red banner
    assert np.abs(over[120:] - src[120:]).max() == 0
    shown = CliRunner().invoke(app, args + ["-o", str(tmp_path / "o2"), "--show-withheld"], env={"COLUMNS": "240"})
    row = _row(shown.output, "green.png")
    flag = " (suspicious)" if s["withheld"].get("suspicious") else ""  # the flag is withheld with the class
    assert f"{s['withheld']['class']}{flag} (withheld)" in row, row


def test_listen_logs_the_reason_and_writes_no_seg(tmp_path):
    from sonoseg.infer.predictor import Predictor
    from sonoseg.pacs.segment import SegmentOptions, segment_study

    dcm = green_dicom(tmp_path / "in" / "green.dcm")
    lines: list[str] = []
    res = segment_study("study-1", [dcm], tmp_path / "out", Predictor.from_path(None, backend="torch", threads=1),
                        SegmentOptions(overlay_sc=True), log=lines.append)
    assert res.images == 1 and res.out_of_scope == 1 and res.segs == [] and res.captures == [] and res.failed == []
    (line,) = lines
    assert "out of scope, not a finding: does not look like" in line
    assert not any(w in line for w in CLASS_WORDS)
    assert not list((tmp_path / "out").glob("*.dcm"))  # neither SEG nor overlay capture


def test_service_gives_no_verdict_unless_asked(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from _serve import login, make_app, make_store, samples
    from sonoseg.serve.worker import Worker

    st = make_store(tmp_path / "data")
    png = green_png(tmp_path / "green.png")
    with TestClient(make_app(st)) as c:
        h = login(c, "operator")
        files = [("files", ("green.png", png.read_bytes())), ("files", ("s.dcm", samples()[2].read_bytes()))]
        green_job, sample_job = [j["id"] for j in c.post("/api/v1/jobs", files=files, headers=h).json()["jobs"]]
        w = Worker(st)
        while w.run_once():
            pass
        job = c.get(f"/api/v1/jobs/{green_job}", headers=h).json()
        assert job["status"] == "done" and job["in_scope"] is False and job["label"] is None and job["scope_reason"]
        ids = lambda q: {j["id"] for j in c.get(f"/api/v1/jobs?{q}", headers=h).json()["items"]}  # noqa: E731
        assert all(green_job not in ids(f"label={cls}") for cls in CLASS_WORDS + ("unclassified",))
        assert ids("label=out_of_scope") == {green_job} and sample_job in ids("status=done")
        listed = c.get("/api/v1/results?min_diameter=0&max_area=1e12", headers=h).json()["items"]
        assert [r["job_id"] for r in listed] == [sample_job]  # its sizes are not findings: no size filter matches
        (oos,) = c.get("/api/v1/results?label=out_of_scope", headers=h).json()["items"]
        res = c.get(f"/api/v1/results/{oos['id']}", headers=h).json()
        assert res["in_scope"] is False and "does not look like" in res["scope_reason"]
        assert all(res[k] is None for k in ("label", "probabilities", "max_area", "max_diameter"))
        assert "measurements" not in res and "withheld" not in res and "seg" not in res["files"]
        assert not any(w in json.dumps(res["summary"]) for w in CLASS_WORDS)
        assert c.get(f"/api/v1/results/{oos['id']}/frames/0/mask", headers=h).status_code == 404  # no mask layer
        assert c.get(f"/api/v1/results/{oos['id']}/frames/0/image", headers=h).status_code == 200
        raw = c.get(f"/api/v1/results/{oos['id']}?raw=true", headers=h).json()["withheld"]
        assert raw["label"] in CLASS_WORDS and set(raw["probabilities"]) == set(CLASS_WORDS)
        assert raw["measurements"]["frames"] and raw["max_area"] is not None
        audit = c.get("/api/v1/audit?action=read", headers=login(c, "admin")).json()["items"]
        assert any(e["target"] == f"result:{oos['id']}" and e["detail"] == "raw" for e in audit)
        assert c.get(f"/api/v1/results/{oos['id']}", headers=login(c, "benign_only")).status_code == 404
    st.dispose()
