"""The worker runs sonoseg's real predict on uploads and stores complete results; the API serves them
with checksums; the viewer's frames exist."""

from __future__ import annotations

import hashlib

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from _serve import login, make_app, make_store, samples  # noqa: E402
from sonoseg.serve.worker import Worker  # noqa: E402


def accurate_version() -> str:
    """model.version recorded in the shipped accurate tier's file (read independently of the service)."""
    from sonoseg.models.checkpoint import load_checkpoint
    from sonoseg.models.shipped import shipped_model_path

    return load_checkpoint(shipped_model_path("accurate"))["config"]["model"]["version"]


def test_upload_predict_store_and_download(tmp_path):
    import pydicom

    st = make_store(tmp_path / "data")
    app = make_app(st)
    with TestClient(app) as c:
        h = login(c, "operator")
        sample = samples()[2]
        r = c.post("/api/v1/jobs", files={"files": (sample.name, sample.read_bytes(), "application/dicom")}, headers=h)
        assert r.status_code == 202
        jid = r.json()["jobs"][0]["id"]
        w = Worker(st)
        assert w.run_once() is True and w.run_once() is False
        job = c.get(f"/api/v1/jobs/{jid}", headers=h).json()
        assert job["status"] == "done", job
        res = c.get(job["result_url"], headers=h).json()
        assert res["kind"] == "image" and res["frames"] == 1 and res["view_frames"] == [0]
        assert res["model"]["name"] == "breast_accurate.pt" and len(res["model"]["sha256"]) == 64  # serve: accurate
        assert res["model"]["version"] == accurate_version()  # the model's own version, not the release's
        # the shipped default classifies: a class with its probabilities is stored with the result
        assert res["label"] in {"normal", "benign", "malignant"} and abs(sum(res["probabilities"].values()) - 1) < 1e-3
        assert res["study"].startswith("ST-") and res["max_diameter"] > 0
        assert res["measurements"]["frames"][0]["structures"], "the sample has a lesion"  # one JSON shape: a list of frames
        for kind in ("mask", "overlay", "seg"):
            f = c.get(res["files"][kind], headers=h)
            assert f.status_code == 200
            assert hashlib.sha256(f.content).hexdigest() == f.headers["x-checksum-sha256"] == res["checksums"][kind]
        seg = pydicom.dcmread(__import__("io").BytesIO(c.get(res["files"]["seg"], headers=h).content))
        src = pydicom.dcmread(sample, stop_before_pixels=True)
        from sonoseg.store.deid import Deidentifier

        # stored de-identified (issue 24 item 4): the study UID as the source's, de-identified
        assert seg.Modality == "SEG" and seg.StudyInstanceUID == Deidentifier(st.secret).uid(src.StudyInstanceUID)
        assert seg.PatientIdentityRemoved == "YES" and seg.PatientName != src.PatientName
        img = c.get(f"/api/v1/results/{res['id']}/frames/0/image", headers=h)
        layer = c.get(f"/api/v1/results/{res['id']}/frames/0/mask", headers=h)
        import cv2
        import numpy as np

        im = cv2.imdecode(np.frombuffer(img.content, np.uint8), cv2.IMREAD_UNCHANGED)
        ml = cv2.imdecode(np.frombuffer(layer.content, np.uint8), cv2.IMREAD_UNCHANGED)
        assert im.shape[:2] == ml.shape[:2] == (int(src.Rows), int(src.Columns)) and ml.shape[2] == 4
        mask = cv2.imdecode(np.frombuffer(c.get(res["files"]["mask"], headers=h).content, np.uint8), 0)
        assert ((ml[..., 3] > 0) == (mask > 0)).all()  # the viewer's layer is the stored mask
        assert list(st.spool.iterdir()) == []  # the upload itself is not kept
        assert st.integrity_check() == []
    st.dispose()


def test_failed_job_keeps_reason_and_no_result(tmp_path):
    st = make_store(tmp_path / "data")
    app = make_app(st, model=tmp_path / "missing-model.pt")
    with TestClient(app) as c:
        h = login(c, "operator")
        sample = samples()[0]
        jid = c.post("/api/v1/jobs", files={"files": (sample.name, sample.read_bytes())}, headers=h).json()["jobs"][0]["id"]
        w = Worker(st, model=tmp_path / "missing-model.pt")
        assert w.run_once()
        job = c.get(f"/api/v1/jobs/{jid}", headers=h).json()
        assert job["status"] == "failed" and job["error"] and job["result_id"] is None
        assert "\n" not in job["error"]
        assert st.integrity_check() == []
    st.dispose()


def _cine(src, dest, n=3):
    """A small multi-frame DICOM made from a shipped sample: the frame shifted a little each time."""
    import numpy as np
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.dcmread(src)
    ds.decompress()
    px = ds.pixel_array
    frames = np.stack([np.roll(px, 12 * k, axis=1) for k in range(n)])
    ds.NumberOfFrames = n
    ds.PixelData = frames.tobytes()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(dest, enforce_file_format=True)
    return dest


def test_cine_upload_gives_scrollable_frames(tmp_path):
    import cv2
    import numpy as np

    st = make_store(tmp_path / "data")
    app = make_app(st)
    cine = _cine(samples()[0], tmp_path / "cine.dcm")
    with TestClient(app) as c:
        h = login(c, "operator")
        r = c.post("/api/v1/jobs", files={"files": ("cine.dcm", cine.read_bytes())}, headers=h)
        jid = r.json()["jobs"][0]["id"]
        assert Worker(st).run_once()
        job = c.get(f"/api/v1/jobs/{jid}", headers=h).json()
        assert job["status"] == "done", job
        res = c.get(job["result_url"], headers=h).json()
        assert res["kind"] == "cine" and res["frames"] == 3 and res["view_frames"] == [0, 1, 2]
        assert len(res["measurements"]["frames"]) == 3
        layers = []
        for f in range(3):
            png = c.get(f"/api/v1/results/{res['id']}/frames/{f}/mask", headers=h).content
            layers.append(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)[..., 3] > 0)
        assert all(m.any() for m in layers)
        assert not np.array_equal(layers[0], layers[2])  # the lesion moved with the frames
        mask = c.get(res["files"]["mask"], headers=h)
        assert mask.headers["content-disposition"].endswith('mask.nii.gz"')
        assert c.get(f"/api/v1/results/{res['id']}/frames/3/image", headers=h).status_code == 404
    st.dispose()


def test_nifti_volume_upload(tmp_path):
    """A NIfTI volume (slices of a shipped sample) goes through the same path: per-slice frames,
    measurements in mm from the header's voxel size."""
    import nibabel as nib
    import numpy as np

    from sonoseg.io import load_image

    px = np.asarray(load_image(samples()[0]).pixels, dtype=np.float32)
    vol = np.stack([px.T, px.T], axis=-1)  # x, y, z
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([0.1, 0.1, 1.0, 1.0])), str(path))
    st = make_store(tmp_path / "data")
    with TestClient(make_app(st)) as c:
        h = login(c, "operator")
        r = c.post("/api/v1/jobs", files={"files": ("vol.nii.gz", path.read_bytes())}, headers=h)
        assert r.status_code == 202, r.text
        assert Worker(st).run_once()
        job = c.get(f"/api/v1/jobs/{r.json()['jobs'][0]['id']}", headers=h).json()
        assert job["status"] == "done", job
        res = c.get(job["result_url"], headers=h).json()
        assert res["kind"] == "volume" and res["view_frames"] == [0, 1] and res["unit"] == "mm"
        assert res["max_diameter"] > 0 and "seg" not in res["files"]
    st.dispose()
