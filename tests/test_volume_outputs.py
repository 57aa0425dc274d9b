"""3D prediction outputs as the user trained them (issue 25 items 9 and 11): the label map holds the
training label values, a label table beside it (ITK-SNAP and 3D Slicer formats) names and colours them,
the DICOM SEG's segments follow the table, and the overlay shows one colour per label, a legend and the
slice position in mm. The end-to-end test runs the shipped models/ct_organs_fit.pt (trained on
TotalSegmentator ids 1, 2, 3, 5, 6, 52) on the real CT DICOM series of /work/shared/data/ct_totalseg."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from sonoseg.outputs.label_table import distinct_colors, label_table
from sonoseg.infer.volume_overlay import render_volume_overlay

REPO = Path(__file__).resolve().parents[1]
CT_MODEL = REPO / "models" / "ct_organs_fit.pt"
TRAINED = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach", 52: "aorta"}


def ct_data() -> Path:
    import os

    root = Path(os.environ.get("SONOSEG_DATA", REPO.parent / "shared" / "data")) / "ct_totalseg"
    for cand in (root, Path("/work/shared/data/ct_totalseg")):
        if (cand / "example_ct_dicom").is_dir():
            return cand
    pytest.skip("ct_totalseg data not found (../shared/data/ct_totalseg or $SONOSEG_DATA/ct_totalseg)")


def read_itksnap(path: Path) -> dict[int, tuple[tuple[int, int, int], str]]:
    rows = {}
    for line in path.read_text().splitlines():
        m = re.match(r'\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d)\s+(\d)\s+"(.*)"\s*$', line)
        if m and not line.lstrip().startswith("#"):
            rows[int(m[1])] = ((int(m[2]), int(m[3]), int(m[4])), m[8])
    return rows


def read_ctbl(path: Path) -> dict[int, tuple[tuple[int, int, int], str]]:
    rows = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        v, name, r, g, b, _a = line.split()
        rows[int(v)] = ((int(r), int(g), int(b)), name)
    return rows


def test_colours_are_distinct_for_many_labels():
    for n in (1, 6, 12, 40, 117):
        cols = distinct_colors(n)
        assert len(cols) == n == len(set(cols)) and (0, 0, 0) not in cols
    entries = label_table(TRAINED)
    assert [e.value for e in entries] == [1, 2, 3, 5, 6, 52] and [e.segment_number for e in entries] == list(range(1, 7))


def test_overlay_one_colour_per_label_legend_and_position_mm():
    """Two organs on one axial slice of a synthetic CT (labels 5 and 52, LPS-stored like DICOM): each is
    drawn in its own table colour, every table colour is in the legend, the slice is given in mm."""
    img = np.full((10, 60, 80), -1000, np.int16)  # [z, y, x]
    img[:, 10:50, 10:70] = 40
    lab = np.zeros(img.shape, np.uint8)
    lab[6, 15:30, 15:35] = 5
    lab[6, 35:45, 50:60] = 52
    lab[2, 20:25, 20:25] = 1
    aff = np.array([[-0.8, 0, 0, 100.0], [0, -0.8, 0, 50.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
    entries = label_table(TRAINED)
    rgb, k, s_mm, on_slice = render_volume_overlay(img, lab, aff, entries, (-160.0, 240.0))
    assert k == 6 and s_mm == pytest.approx(-300.0 + 6 * 2.5) and on_slice == [5, 52]
    colours = {tuple(int(v) for v in c) for c in rgb.reshape(-1, 3)}
    assert all(e.color in colours for e in entries)  # the legend's patches
    by_value = {e.value: e.color for e in entries}
    assert by_value[5] != by_value[52]
    # the outline of each organ is drawn in its own colour inside the image part (left of the legend)
    image_part = rgb[:, : rgb.shape[1] - 280]
    for v in (5, 52):
        assert (image_part == np.array(by_value[v], np.uint8)).all(-1).any(), v


@pytest.mark.skipif(not CT_MODEL.is_file(), reason="models/ct_organs_fit.pt not in this checkout")
def test_ct_prediction_keeps_training_labels_table_seg_and_overlay(tmp_path):
    import highdicom as hd

    from sonoseg.cli.main import app
    from sonoseg.infer.volume_run import series_sources
    from sonoseg.io import read_nifti
    from sonoseg.preprocess.volume import read_volume

    series = ct_data() / "example_ct_dicom"
    out = tmp_path / "pred"
    res = CliRunner().invoke(app, ["predict", str(series), "--model", str(CT_MODEL), "--out", str(out),
                                   "--threads", "1", "--no-progress"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads((out / "results.json").read_text())["results"]
    labels = read_nifti(r["outputs"]["labels"]).array
    found = {int(v) for v in np.unique(labels)} - {0}
    assert found and found <= set(TRAINED) and found & {5, 6, 52}  # training ids, not 1..6
    assert {o["label"]: o["name"] for o in r["organs"]} == TRAINED

    itk, ctbl = read_itksnap(Path(r["outputs"]["label_tables"]["itksnap"])), read_ctbl(Path(r["outputs"]["label_tables"]["slicer"]))
    assert {v: n for v, (_, n) in itk.items()} == {0: "Clear Label", **TRAINED}
    assert {v: n for v, (_, n) in ctbl.items()} == {0: "Background", **TRAINED}
    colours = {v: c for v, (c, _) in itk.items() if v}
    assert colours == {v: c for v, (c, _) in ctbl.items() if v} and len(set(colours.values())) == len(TRAINED)
    meas = json.loads(Path(r["outputs"]["measurements"]).read_text())
    assert [(e["value"], e["name"], tuple(e["color_rgb"])) for e in meas["label_table"]] == \
        [(v, TRAINED[v], colours[v]) for v in sorted(TRAINED)]

    # SEG: segment n = row n of the table (name, colour, label value in the description)
    seg = hd.seg.segread(r["seg"])
    segs = list(seg.SegmentSequence)
    assert [int(s.SegmentNumber) for s in segs] == list(range(1, 7))
    assert [s.SegmentLabel for s in segs] == [TRAINED[v] for v in sorted(TRAINED)]
    for s, v in zip(segs, sorted(TRAINED)):
        assert s.SegmentDescription.startswith(f"label {v} ")
        got = hd.color.CIELabColor.from_dicom_value(s.RecommendedDisplayCIELabValue).to_rgb()
        assert np.abs(np.array(got, int) - np.array(colours[v])).max() <= 2
    vol = read_volume(series)
    heads = [pydicom.dcmread(f, stop_before_pixels=True) for f in series_sources(series, vol)]
    uids = [str(h.SOPInstanceUID or h.file_meta.MediaStorageSOPInstanceUID) for h in heads]  # blank in this series
    got = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False, skip_overlap_checks=True,
                                            assert_missing_frames_are_empty=True)
    value_of_segment = np.array([0] + sorted(TRAINED), np.uint8)
    assert np.array_equal(value_of_segment[got], labels)

    # overlay: its slice is a real slice position of the series (patient z = S)
    positions = {round(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]), 2)
                 for f in series.iterdir()}
    assert round(r["overlay_slice"]["s_mm"], 2) in positions
    assert set(r["overlay_slice"]["labels"]) <= found and r["overlay_slice"]["labels"]
