"""PNG/JPEG/TIFF/BMP via OpenCV, format detection, input discovery, batch loading."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from conftest import dicom_testfile
from PIL import Image

from sonoseg.errors import InputError
from sonoseg.io import detect_format, find_inputs, iter_frames, iter_images, load_image, read_meta


def _rgb_image() -> np.ndarray:
    """Distinct R, G, B planes so a channel swap cannot go unnoticed."""
    h, w = 40, 56
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]  # R: horizontal ramp
    img[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]  # G: vertical ramp
    img[..., 2] = 77  # B: constant
    return img


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
def test_lossless_rgb_formats_are_rgb(tmp_path, ext):
    rgb = _rgb_image()
    p = tmp_path / f"img{ext}"
    Image.fromarray(rgb).save(p)  # written by Pillow (RGB order), read by OpenCV
    out = load_image(p)
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == rgb.shape
    np.testing.assert_array_equal(out.pixels, rgb)
    assert out.meta.format == "image" and out.meta.photometric == "RGB" and out.meta.samples_per_pixel == 3


def test_jpeg_rgb_close(tmp_path):
    rgb = _rgb_image()
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    out = load_image(tmp_path / "a.jpg").pixels.astype(int)
    assert out.shape == rgb.shape
    assert np.abs(out - rgb).mean() < 3
    assert abs(out[..., 2].mean() - 77) < 3  # blue stayed blue


def test_grey_8_and_16_bit(tmp_path):
    g8 = (np.arange(30 * 20) % 256).astype(np.uint8).reshape(30, 20)
    g16 = (np.arange(30 * 20) * 97).astype(np.uint16).reshape(30, 20)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    a, b = load_image(tmp_path / "g8.png"), load_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(a.pixels, g8)
    assert b.pixels.dtype == np.uint16
    np.testing.assert_array_equal(b.pixels, g16)
    m = read_meta(tmp_path / "g16.png")
    assert (m.rows, m.columns, m.samples_per_pixel, m.bits_stored, m.photometric) == (30, 20, 1, 16, "MONOCHROME2")


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([_rgb_image(), np.full((40, 56), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png").pixels, _rgb_image())


def test_multipage_tiff_streams_pages(tmp_path):
    pages = [np.full((16, 24), v, np.uint8) for v in (10, 20, 30)]
    Image.fromarray(pages[0]).save(tmp_path / "m.tif", save_all=True, append_images=[Image.fromarray(p) for p in pages[1:]])
    frames = list(iter_frames(tmp_path / "m.tif"))
    assert [int(f.mean()) for f in frames] == [10, 20, 30]
    assert load_image(tmp_path / "m.tif").pixels.shape == (3, 16, 24)
    assert read_meta(tmp_path / "m.tif").frames == 3


def test_unreadable_image(tmp_path):
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(InputError, match="unreadable image") as ei:
        load_image(p)
    assert ei.value.path == str(p)


def test_busi_png(busi):
    p = sorted((busi / "images").glob("*.png"))[0]
    img = load_image(p)
    ref = np.asarray(Image.open(p))
    assert img.pixels.shape[:2] == ref.shape[:2]
    np.testing.assert_array_equal(img.pixels, ref if ref.ndim == 2 else ref[..., :3])


# ---------------------------------------------------------------- detection / discovery


def test_detect_format_by_content(tmp_path):
    shutil.copy(dicom_testfile("US1_UNCR.dcm"), tmp_path / "IM000123")  # PACS-style, no extension
    Image.fromarray(_rgb_image()).save(tmp_path / "really_png.dat", format="PNG")
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), tmp_path / "vol.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    assert detect_format(tmp_path / "IM000123") == "dicom"
    assert detect_format(tmp_path / "really_png.dat") == "image"
    assert detect_format(tmp_path / "vol.nii.gz") == "nifti"
    assert detect_format(dicom_testfile("OT-PAL-8-face.dcm")) == "dicom"  # no preamble, .dcm name
    with pytest.raises(InputError, match="unrecognised format"):
        detect_format(tmp_path / "notes.txt")


def test_find_inputs_recursive_and_filters(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(dicom_testfile("US1_UNCR.dcm"), tmp_path / "a" / "b" / "IM0001")
    Image.fromarray(_rgb_image()).save(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "readme.md").write_text("# not an image")
    (tmp_path / "a" / ".hidden.png").write_bytes(b"")
    (tmp_path / "a" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    found = find_inputs([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/IM0001", "a/x.png"]
    assert find_inputs([tmp_path / "a"], recursive=False) == [tmp_path / "a" / "x.png"]
    with pytest.raises(InputError, match="no DICOM, NIfTI or image files"):
        find_inputs([tmp_path], recursive=False)  # top level holds only the folder "a"
    # an explicitly named file is kept even when unrecognised, so that it fails loudly later
    assert find_inputs([tmp_path / "a" / "readme.md"]) == [tmp_path / "a" / "readme.md"]


def test_find_inputs_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty folder"):
        find_inputs(tmp_path / "empty")
    with pytest.raises(InputError, match="no such file"):
        find_inputs(tmp_path / "missing")


def test_iter_images_skips_and_reports(tmp_path):
    Image.fromarray(_rgb_image()).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    shutil.copy(dicom_testfile("rtplan.dcm"), tmp_path / "plan.dcm")  # DICOM without pixels
    failures: list[InputError] = []
    loaded = list(iter_images([tmp_path], failures=failures))
    assert [li.meta.path for li in loaded] == [str(tmp_path / "good.png")]
    assert sorted(f.path for f in failures) == [str(tmp_path / "bad.png"), str(tmp_path / "plan.dcm")]
