"""3D end to end on a synthetic phantom through the CLI: validate -> train (the 2D trainer, a 3D
config) -> evaluate (per organ, mm) -> predict NIfTI and a DICOM series (labels in the original grid,
per-organ measurements, a multi-segment DICOM SEG that reads back with the right labels and geometry;
the autouse fixture runs dciodvfy on it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sonoseg.cli.main import app
from sonoseg.data.volume_phantom import write_phantom_dataset

RECIPE = ("volume={spacing: [3.2, 3.6, 4.0], patch_size: [32, 32, 16], roi_size: [32, 32, 16], num_samples: 2}",
          "model.params={channels: [8, 16, 32], num_res_units: 0}", "train.lr=0.01", "train.scheduler=none",
          "train.seed=0", "data.batch_size=2")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vol3d")
    root = write_phantom_dataset(tmp / "ds", n=2)
    res = CliRunner().invoke(app, ["validate", str(root)])
    assert res.exit_code == 0, res.output
    args = ["train", str(root), "--epochs", "25", "--threads", "1", "--out", str(tmp / "runs"), "--name", "r",
            "--no-progress"]
    for o in RECIPE:
        args += ["--set", o]
    res = CliRunner().invoke(app, args)  # no --config: the dataset holds volumes -> the 3D recipe
    assert res.exit_code == 0, res.output
    assert "3D recipe" in res.output
    return root, tmp / "runs" / "r" / "best.pt"


def test_train_stores_the_volume_config_and_a_3d_network(trained):
    from sonoseg.train.checkpoint import load_model

    _, ckpt = trained
    model, cfg = load_model(ckpt)
    assert cfg.is_3d and cfg.model.name == "unet3d" and cfg.model.classes == 4
    assert cfg.volume.class_names() == {1: "liver", 2: "spleen", 3: "kidney"}
    assert cfg.model.params["spatial_dims"] == 3 and cfg.train.loss == "dice_ce"
    assert model(__import__("torch").zeros(1, 1, 10, 12, 6)).shape == (1, 4, 10, 12, 6)


def test_evaluate_reports_each_organ_in_mm(trained, tmp_path):
    root, ckpt = trained
    res = CliRunner().invoke(app, ["evaluate", str(root), "--model", str(ckpt), "--out", str(tmp_path / "ev"),
                                   "--threads", "1", "--n-boot", "100", "--no-progress"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n_cases"] == 2 and set(m["organs"]) >= {"liver", "spleen", "kidney"}
    # 25 short epochs on two phantoms: a learning pipeline, not a converged model
    assert m["organs"]["liver"]["dice"]["mean"] > 0.6
    assert m["organs"]["liver"]["hd95_mm"]["n"] == 2
    rows = (tmp_path / "ev" / "per_case.csv").read_text().splitlines()
    assert rows[0].startswith("case,label,organ,status,dice,iou,hd95_mm,assd_mm,gt_ml,pred_ml") and len(rows) == 7
    assert (tmp_path / "ev" / "report.html").is_file() and len(list((tmp_path / "ev" / "overlays").glob("*.png"))) == 2


def test_predict_nifti_and_dicom_series_with_multisegment_seg(trained, tmp_path):
    import highdicom as hd
    import pydicom

    from sonoseg.io import read_nifti, write_dicom_series
    from sonoseg.preprocess.volume import read_volume

    root, ckpt = trained
    series = tmp_path / "series"
    write_dicom_series(read_nifti(root / "images" / "case1.nii.gz"), series, modality="CT")
    out = tmp_path / "pred"
    res = CliRunner().invoke(app, ["predict", str(root / "images" / "case0.nii.gz"), str(series), "--model", str(ckpt),
                                   "--out", str(out), "--threads", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    payload = json.loads((out / "results.json").read_text())
    assert payload["n_ok"] == 2 and payload["kind"] == "volume3d"
    nii, dcm = payload["results"]
    # NIfTI output on the input's own grid and affine
    src, lab = read_nifti(root / "images" / "case0.nii.gz"), read_nifti(nii["outputs"]["labels"])
    assert lab.array.shape == src.array.shape and np.allclose(lab.affine, src.affine)
    liver = next(o for o in nii["organs"] if o["name"] == "liver")
    assert liver["volume_ml"] > 0 and len(liver["bbox_mm"]) == 3 and liver["axial_diameter_mm"] > 0
    # DICOM series -> labels + multi-segment SEG referencing every slice it has a segment on
    vol = read_volume(series)
    labels = read_nifti(dcm["outputs"]["labels"]).array
    assert labels.shape == vol.array.shape
    seg = hd.seg.segread(dcm["seg"])
    names = {1: "liver", 2: "spleen", 3: "kidney"}
    # every label of the model is a segment, numbered as its label-table row (here label value = row)
    assert [d.SegmentLabel for d in seg.SegmentSequence] == [names[v] for v in sorted(names)]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Liver"
    files = sorted(series.glob("*.dcm"))
    src_ds = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert seg.FrameOfReferenceUID == src_ds[0].FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src_ds[0].SeriesInstanceUID
    # each source slice's SEG pixels (segments combined) equal the NIfTI label map on that slice
    from sonoseg.infer.volume_run import series_sources

    ordered = series_sources(series, vol)
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in ordered]
    got = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False, skip_overlap_checks=True,
                                            assert_missing_frames_are_empty=True)
    assert got.shape == labels.shape and np.array_equal(got, labels)
