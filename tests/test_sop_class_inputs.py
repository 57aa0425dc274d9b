"""Inputs are chosen by SOP Class, the same way in predict, listen and the service: image storage classes
are segmented; SEG, SR, PR, KO and other non-image objects are skipped and counted (a study pulled from
a PACS holds its earlier SEGs, and a SEG has pixel data: "has pixels" is not the test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from conftest import dicom_testfile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from sonoseg.infer.sop_class import kind_of_class, not_an_image, split_images

IMAGE = "gdcm-US-ALOKA-16.dcm"
CLASSES = {"SR": ("1.2.840.10008.5.1.4.1.1.88.22", "SR"), "PR": ("1.2.840.10008.5.1.4.1.1.11.1", "PR"),
           "KO": ("1.2.840.10008.5.1.4.1.1.88.59", "KO"), "Encapsulated PDF": ("1.2.840.10008.5.1.4.1.1.104.1", "DOC")}


def _object(path: Path, sop_class: str, modality: str, study: str) -> Path:
    """A minimal non-image object of ``sop_class`` in ``study`` (what a PACS holds next to the images)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, generate_uid(), modality
    ds.save_as(path, enforce_file_format=True)
    return path


def _pulled_study(folder: Path) -> tuple[Path, Path]:
    """A study folder as `pacs pull` leaves it: the image, its earlier SEG, an SR, a PR, a KO and a PDF."""
    from sonoseg.outputs.dicom_seg import write_dicom_seg

    folder.mkdir(parents=True)
    image = folder / "image.dcm"
    image.write_bytes(dicom_testfile(IMAGE).read_bytes())
    head = pydicom.dcmread(image, stop_before_pixels=True)
    write_dicom_seg(image, np.ones((head.Rows, head.Columns), np.uint8), folder / "earlier.seg.dcm")
    for name, (uid, modality) in CLASSES.items():
        _object(folder / f"{name.replace(' ', '_')}.dcm", uid, modality, head.StudyInstanceUID)
    return folder, image


def test_kinds_by_sop_class():
    assert kind_of_class("1.2.840.10008.5.1.4.1.1.6.1") is None  # US image
    assert kind_of_class("1.2.840.10008.5.1.4.1.1.3.1") is None  # US multi-frame
    assert kind_of_class("1.2.840.10008.5.1.4.1.1.6.2") is None  # enhanced US volume
    assert kind_of_class("1.2.840.10008.5.1.4.1.1.7") is None  # secondary capture
    assert kind_of_class("1.2.840.10008.5.1.4.1.1.66.4") == "SEG"
    assert [kind_of_class(uid) for uid, _ in CLASSES.values()] == ["SR", "PR", "KO", "Encapsulated PDF"]


def test_predict_segments_the_image_and_counts_the_rest(tmp_path, tiny_model):
    """`predict --no-domain-check` on a pulled study folder: one result (the image), no SEG of a SEG."""
    from sonoseg.infer.options import PredictOptions
    from sonoseg.infer.run import predict_inputs

    folder, image = _pulled_study(tmp_path / "pulled")
    lines = []
    opts = PredictOptions(model=tiny_model, backend="torch", threads=1, domain=False)
    payload = predict_inputs([folder], tmp_path / "out", opts, log=lines.append)
    assert [Path(r["input"]).name for r in payload["results"]] == [image.name]
    assert payload["n_not_images"] == 5
    assert payload["not_images"] == {"SEG": 1, "SR": 1, "PR": 1, "KO": 1, "Encapsulated PDF": 1}
    assert len(list((tmp_path / "out").glob("*.seg.dcm"))) == 1
    assert any(ln.startswith("skipped 5 not images (") and "1 SEG" in ln for ln in lines)
    images, skipped = split_images(sorted(folder.iterdir()))
    assert images == [image] and sum(skipped.values()) == 5
    assert not_an_image(tmp_path / "out" / "results.json") is None  # not DICOM: the readers decide
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    r = CliRunner().invoke(app, ["predict", str(folder), "-o", str(tmp_path / "cli"), "-m", str(tiny_model),
                                 "--backend", "torch", "--threads", "1", "--no-domain-check"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "skipped 5 not images (" in r.output and "1 ok, 0 failed" in r.output


def test_service_refuses_non_image_objects_with_422(tmp_path):
    from _serve import login, make_app, make_store
    from fastapi.testclient import TestClient

    folder, image = _pulled_study(tmp_path / "pulled")
    st = make_store(tmp_path / "data")
    try:
        with TestClient(make_app(st)) as c:
            h = login(c, "operator")
            for name, words in (("earlier.seg.dcm", "SEG"), ("SR.dcm", "SR"), ("KO.dcm", "KO")):
                r = c.post("/api/v1/jobs", files={"files": (name, (folder / name).read_bytes())}, headers=h)
                assert r.status_code == 422, (name, r.text)
                assert f"not an image to segment: {words}" in r.json()["detail"]
            r = c.post("/api/v1/jobs", files={"files": ("image.dcm", image.read_bytes())}, headers=h)
            assert r.status_code == 202, r.text
    finally:
        st.dispose()
