"""PNG / JPEG / TIFF / BMP through OpenCV (bit depth kept with IMREAD_UNCHANGED, BGR -> RGB).

Header-only metadata comes from Pillow, which opens images lazily; OpenCV has no header-only read.
Multi-page TIFFs are read one page at a time (cv2.imreadmulti with start/count) so they stream too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from sonoseg.errors import InputError
from sonoseg.io.spacing import PNG_SOURCE, png_phys_spacing
from sonoseg.io.types import ImageMeta, LoadedImage


_GREY_MODES = {"1", "L", "I", "I;16", "I;16B", "I;16L", "F"}  # Pillow modes OpenCV also reads as 1 channel


def _to_rgb(img: np.ndarray) -> np.ndarray:
    """OpenCV order -> RGB (alpha dropped); greyscale stays HxW. 3-channel images whose channels are
    all equal stay RGB: colour-vs-grey is a preprocessing decision, not an ingest one."""
    if img.ndim == 2:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        return img[:, :, 0]
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"{img.shape[2]} channels")


def _page_count(path: Path) -> int:
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            return max(int(cv2.imcount(str(path))), 1)
        except cv2.error:
            return 1
    return 1


def _read_page(path: Path, index: int) -> np.ndarray:
    if index == 0:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    else:
        ok, pages = cv2.imreadmulti(str(path), start=index, count=1, flags=cv2.IMREAD_UNCHANGED)
        img = pages[0] if ok and pages else None
    if img is None or img.size == 0:
        raise InputError(path, "unreadable image (OpenCV could not decode it: corrupt or unsupported)")
    try:
        return _to_rgb(img)
    except ValueError as exc:
        raise InputError(path, f"unsupported image layout ({exc})") from None


def _meta(path: Path, shape: tuple[int, ...], dtype: np.dtype, frames: int) -> ImageMeta:
    rgb = len(shape) == 3
    return ImageMeta(
        path=str(path),
        format="image",
        rows=int(shape[0]),
        columns=int(shape[1]),
        frames=frames,
        samples_per_pixel=3 if rgb else 1,
        photometric="RGB" if rgb else "MONOCHROME2",
        transfer_syntax=None,
        bits_stored=int(np.dtype(dtype).itemsize * 8),
    )


def _check_header(p: Path) -> None:
    """PNG/JPEG: the declared size against the budget from the raw header, before Pillow (which
    raises past its own bomb limit, and the fallback below would then decode with OpenCV)."""
    from sonoseg.io.budget import check_declared
    from sonoseg.io.image_header import read_image_header

    try:
        h = read_image_header(p)
    except ValueError:
        return  # malformed: Pillow, then OpenCV, give the reason
    if h is not None:
        check_declared(p, h.rows, h.columns, h.frames, 1 if h.samples == 1 else 3)


def read_image_meta(path: str | Path) -> ImageMeta:
    """Size/mode from the file header (Pillow, lazy); falls back to a full decode."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file")
    _check_header(p)
    try:
        from PIL import Image

        with Image.open(p) as im:
            w, h = im.size
            frames = int(getattr(im, "n_frames", 1) or 1)
            mode = im.mode
            spacing = png_phys_spacing(im.info) if im.format == "PNG" else None
        if w > 0 and h > 0:
            from sonoseg.io.budget import check_declared

            rgb = mode not in _GREY_MODES
            check_declared(p, h, w, frames, 3 if rgb else 1)  # from the header, before decoding
            bits = 16 if mode.startswith("I;16") or mode == "I" else 32 if mode == "F" else 8
            return ImageMeta(
                path=str(p),
                format="image",
                rows=h,
                columns=w,
                frames=frames,
                samples_per_pixel=3 if rgb else 1,
                photometric="RGB" if rgb else "MONOCHROME2",
                bits_stored=bits,
                pixel_spacing_mm=spacing,
                spacing_source=PNG_SOURCE if spacing else None,
            )
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - Pillow cannot read it: let OpenCV decide (it reads more TIFFs)
        pass
    img = _read_page(p, 0)
    return _meta(p, img.shape, img.dtype, _page_count(p))


def iter_image_frames(path: str | Path) -> Iterator[np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file")
    read_image_meta(p)  # header-only: refuses a declared size over the budget before decoding
    for i in range(_page_count(p)):
        yield _read_page(p, i)


def load_image_file(path: str | Path) -> LoadedImage:
    """HxW or HxWx3 (RGB); multi-page TIFF -> FxHxW[x3]. Bit depth as stored (uint8/uint16)."""
    p = Path(path)
    pages = list(iter_image_frames(p))
    if len({(f.shape, f.dtype) for f in pages}) > 1:
        raise InputError(p, "multi-page image with pages of different sizes")
    pixels = pages[0] if len(pages) == 1 else np.stack(pages)
    meta = _meta(p, pages[0].shape, pages[0].dtype, len(pages))
    try:
        meta.pixel_spacing_mm = read_image_meta(p).pixel_spacing_mm
        meta.spacing_source = PNG_SOURCE if meta.pixel_spacing_mm else None
    except InputError:
        pass
    return LoadedImage(pixels=pixels, meta=meta)
