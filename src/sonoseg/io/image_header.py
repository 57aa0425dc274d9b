"""PNG / JPEG geometry from the file header, without an image library.

Pillow refuses to say the size of an image past its decompression-bomb limit (it raises), and OpenCV
has no header-only read (it allocates the declared size, then decodes): the budget check
(:mod:`sonoseg.io.budget`) needs the declared size before either of them touches the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageHeader:
    rows: int
    columns: int
    frames: int
    samples: int
    sample_bytes: int


def read_image_header(path: str | Path) -> Optional[ImageHeader]:
    """The header of a PNG or JPEG file; None for other formats. ValueError when it is malformed."""
    with open(path, "rb") as f:
        head = f.read(8)
        if head == PNG_SIGNATURE:
            return _png(f)
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            return _jpeg(f)
    return None


def _read(f, n: int) -> bytes:
    b = f.read(n)
    if len(b) != n:
        raise ValueError("header cut short")
    return b


def _png(f) -> ImageHeader:
    """IHDR, and acTL (animated PNG: frames) if it comes before the first IDAT."""
    length, kind = struct.unpack(">I4s", _read(f, 8))
    if kind != b"IHDR" or length != 13:
        raise ValueError("PNG without an IHDR header")
    w, h, depth, colour = struct.unpack(">IIBB", _read(f, 10))
    f.seek(length - 10 + 4, 1)
    frames = 1
    while len(hdr := f.read(8)) == 8:
        length, kind = struct.unpack(">I4s", hdr)
        if kind == b"IDAT":
            break
        if kind == b"acTL":
            frames = max(struct.unpack(">I", _read(f, 4))[0], 1)
            length -= 4
        f.seek(length + 4, 1)
    samples = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(colour, 4)
    return ImageHeader(h, w, frames, samples, 2 if depth == 16 else 1)


def _jpeg(f) -> ImageHeader:
    """The first SOFn segment (SOF0-SOF15 but DHT, JPG and DAC, which share the range). Segments are
    skipped by their length, so a large file is never scanned byte by byte."""
    while True:
        skipped = 0
        while _read(f, 1) != b"\xff":  # stray bytes before a marker: libjpeg skips them too, within reason
            skipped += 1
            if skipped > 65536:
                raise ValueError("JPEG marker expected")
        m = _read(f, 1)[0]
        while m == 0xFF:  # fill bytes
            m = _read(f, 1)[0]
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # standalone markers
            continue
        if m == 0xDA:
            raise ValueError("JPEG scan before its frame header (SOF)")
        length = struct.unpack(">H", _read(f, 2))[0]
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            precision, h, w, comps = struct.unpack(">BHHB", _read(f, 6))
            return ImageHeader(h, w, 1, comps, 2 if precision > 8 else 1)
        if length < 2:
            raise ValueError("JPEG segment with an impossible length")
        f.seek(length - 2, 1)
