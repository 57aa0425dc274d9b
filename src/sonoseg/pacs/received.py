"""Is a received instance one we can store and read? Checked before the sender is told "success".

A sender that hears 0x0000 deletes its copy or marks it done, so a broken instance acknowledged as
stored is lost silently (it only fails later, in the listener's log). What is checked here is cheap
(no pixel decoding): the UIDs a file is named by, and for images that the pixel data holds what the
header says (every byte of an uncompressed image; every frame of a compressed one, as fragments).
An image too large to segment is refused as "out of resources", so the sender may keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pydicom.dataset import Dataset

OUT_OF_RESOURCES = 0xA700  # Refused: out of resources
DATASET_MISMATCH = 0xA900  # Error: data set does not match SOP class
CANNOT_UNDERSTAND = 0xC210  # Error: cannot understand (0xCxxx)
PIXELS_INCONSISTENT = 0xC211  # Error: cannot understand - pixel data does not match the header


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str  # one line, no header values that could identify anyone


def check_instance(ds: Dataset, transfer_syntax, max_frame_pixels: int) -> Optional[Refusal]:
    """None when the instance can be stored and read; else the failure status for the C-STORE answer."""
    from sonoseg.infer.sop_class import kind_of_class

    for kw in ("StudyInstanceUID", "SOPInstanceUID"):
        if not str(ds.get(kw, "") or "").strip():
            return Refusal(CANNOT_UNDERSTAND, f"no {kw}")
    if kind_of_class(str(ds.get("SOPClassUID", ""))) is not None:
        return None  # SEG, SR, PR ...: stored, never segmented (no pixel checks)
    if "PixelData" not in ds:
        return Refusal(DATASET_MISMATCH, "an image storage SOP class without pixel data")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return Refusal(CANNOT_UNDERSTAND, "Rows, Columns or BitsAllocated missing or not a number")
    if rows < 1 or cols < 1 or frames < 1 or bits not in (1, 8, 16, 32, 64) or spp not in (1, 3, 4):
        return Refusal(CANNOT_UNDERSTAND, f"impossible geometry ({rows} x {cols}, {frames} frame(s), "
                                          f"{spp} sample(s), {bits} bits)")
    if transfer_syntax is not None and not transfer_syntax.is_encapsulated:
        need = (rows * cols * frames * spp * bits + 7) // 8
        have = len(ds.PixelData)
        if have < need:
            return Refusal(PIXELS_INCONSISTENT, f"pixel data holds {have} bytes, the header ({rows} x {cols}, "
                                                f"{frames} frame(s)) needs {need}: truncated or a wrong header")
    elif transfer_syntax is not None:
        got = _compressed_frames(ds.PixelData, frames)
        if got is not None:
            return Refusal(PIXELS_INCONSISTENT, got)
    if rows * cols * spp > max_frame_pixels:
        return Refusal(OUT_OF_RESOURCES, f"a frame of {rows} x {cols} x {spp} is more than this listener "
                                         f"segments ({max_frame_pixels} values)")
    return None


def _compressed_frames(data: bytes, frames: int) -> Optional[str]:
    """None when the encapsulated pixel data is whole (every item as long as it says) and holds
    ``frames`` frames; else why not."""
    import struct

    from pydicom.encaps import generate_frames

    pos, items = 0, 0
    while pos + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHL", data, pos)
        if (group, elem) == (0xFFFE, 0xE0DD):
            break
        if (group, elem) != (0xFFFE, 0xE000):
            return "compressed pixel data is not a sequence of items"
        if pos + 8 + length > len(data):
            return f"compressed pixel data is cut short (an item of {length} bytes has {len(data) - pos - 8})"
        pos, items = pos + 8 + length, items + 1
    if items < 2:
        return "compressed pixel data holds no frame"
    try:
        n = sum(1 for _ in generate_frames(data, number_of_frames=frames))
    except Exception as exc:  # noqa: BLE001 - any parse failure means broken pixel data
        return f"compressed pixel data cannot be parsed ({type(exc).__name__})"
    if n < frames:
        return f"compressed pixel data holds {n} frame(s), the header says {frames}"
    return None
