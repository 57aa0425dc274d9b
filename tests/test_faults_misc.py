"""Smaller faults of issue 15 outside predict: evaluate without masks, --units auto on a mixed
dataset, a labels.csv with one non-UTF-8 byte."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture
def tiny(tiny_model) -> Path:
    return tiny_model


def _png_pair(root: Path, stem: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = (rng.random((40, 48)) * 255).astype(np.uint8)
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 12:36] = 255
    cv2.imwrite(str(root / "images" / f"{stem}.png"), img)
    cv2.imwrite(str(root / "masks" / f"{stem}.png"), mask)


def _dataset(tmp_path: Path) -> Path:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        _png_pair(root, f"img{i}", i)
    return root


def test_evaluate_without_masks_folder_is_one_line(tiny, tmp_path):
    from typer.testing import CliRunner

    from sonoseg.cli.main import app

    root = _dataset(tmp_path)
    for p in (root / "masks").iterdir():
        p.unlink()
    (root / "masks").rmdir()
    res = CliRunner().invoke(app, ["evaluate", str(root), "--model", str(tiny), "--out", str(tmp_path / "ev"),
                                   "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "masks/ folder is missing" in res.output and "Traceback" not in res.output
    assert not isinstance(res.exception, TypeError)


def test_evaluate_units_auto_on_mixed_nifti_and_png(tiny, tmp_path):
    import nibabel as nib

    from sonoseg.evaluate.options import EvaluateOptions
    from sonoseg.evaluate.run import evaluate_model

    root = _dataset(tmp_path)
    vol = (np.random.default_rng(9).random((44, 44, 1)) * 255).astype(np.float32)  # square: no orientation question
    m = np.zeros((44, 44, 1), np.uint8)
    m[12:36, 10:30] = 1
    nib.save(nib.Nifti1Image(vol, np.diag([0.5, 0.5, 1.0, 1.0])), str(root / "images" / "vol.nii.gz"))
    nib.save(nib.Nifti1Image(m, np.diag([0.5, 0.5, 1.0, 1.0])), str(root / "masks" / "vol.nii.gz"))
    notes = []
    result = evaluate_model(root, EvaluateOptions(model=tiny, out_dir=tmp_path / "ev", n_boot=10, distance_units="auto"),
                            log=notes.append)
    assert result.units == "px"
    assert result.counts["n_images"] == 4
    assert any("pixels" in n for n in notes)


def test_labels_csv_with_a_non_utf8_byte_is_read(tmp_path, caplog):
    from sonoseg.data import discover_dataset

    root = _dataset(tmp_path)
    (root / "labels.csv").write_bytes(b"image,class,group\nimg0.png,b\xe9nign,P1\nimg1.png,malignant,P2\n"
                                      b"img2.png,normal,P3\n")
    samples = {s.stem: s for s in discover_dataset(root)}
    assert samples["img1"].cls == "malignant" and samples["img0"].cls == "b\u00e9nign"
    assert samples["img0"].group == "P1"
    assert "not valid UTF-8" in caplog.text
