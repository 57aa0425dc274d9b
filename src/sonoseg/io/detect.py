"""Which reader a file needs, decided from its content first and its name second.

DICOM files often have no extension (PACS exports, DICOMDIR trees) and some have no preamble, so the
extension alone is not enough; conversely a PNG renamed .dcm should still load as an image.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterable, Literal

from sonoseg.errors import InputError

Format = Literal["dicom", "nifti", "image"]

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DICOM_EXTS = {".dcm", ".dicom", ".dic", ".ima"}
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")
_NIFTI_MAGIC = (b"n+1\x00", b"ni1\x00", b"n+2\x00", b"ni2\x00")
_SKIP_NAMES = {"DICOMDIR", "Thumbs.db", "LOCKFILE", "VERSION"}


def _is_nifti_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _nifti_magic(head: bytes) -> bool:
    # NIfTI-1 keeps its magic at byte 344, NIfTI-2 at byte 4
    return head[344:348] in _NIFTI_MAGIC or head[4:8] in _NIFTI_MAGIC


def _sniff(path: Path) -> Format | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(548)
    except IsADirectoryError:
        return None
    except OSError as exc:
        raise InputError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(_IMAGE_MAGIC):
        return "image"
    if _nifti_magic(head):
        return "nifti"
    if head[:2] == b"\x1f\x8b":  # gzip: look inside for a NIfTI header
        try:
            with gzip.open(path, "rb") as gz:
                if _nifti_magic(gz.read(548)):
                    return "nifti"
        except (OSError, EOFError):
            return None
    return None


def _looks_like_raw_dicom(path: Path) -> bool:
    """Preamble-less DICOM (old ACR-NEMA style / 'no meta' files) starts with a group 0x0008 or
    0x0002 tag; accept that only for extension-less names, where nothing else claims the file."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[:2] in (b"\x08\x00", b"\x02\x00", b"\x00\x08", b"\x00\x02")


def detect_format(path: str | Path) -> Format:
    """Return 'dicom', 'nifti' or 'image' for ``path``; raise InputError when it is none of them."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file")
    if p.is_dir():
        raise InputError(p, "is a folder (use load_series / find_inputs for folders)")
    sniffed = _sniff(p)
    suffix = p.suffix.lower()
    if sniffed == "image" and suffix in DICOM_EXTS:
        return "dicom"  # DICOM preambles may hold a TIFF header ("II*\0"): trust the name then
    if sniffed is not None:
        return sniffed
    if _is_nifti_name(p):
        return "nifti"  # compressed but unreadable: the NIfTI reader gives the precise reason
    if suffix in DICOM_EXTS:
        return "dicom"  # no preamble: read later with force=True
    if suffix in IMAGE_EXTS:
        return "image"
    if suffix == "" and _looks_like_raw_dicom(p):
        return "dicom"
    raise InputError(p, "unrecognised format (not DICOM, NIfTI or PNG/JPEG/TIFF/BMP)")


def _candidate(path: Path) -> bool:
    if path.name.startswith(".") or path.name in _SKIP_NAMES:
        return False
    try:
        detect_format(path)
    except InputError:
        return False
    return True


def find_inputs(paths: Iterable[str | Path] | str | Path, recursive: bool = True) -> list[Path]:
    """Expand files and folders into a sorted, de-duplicated list of readable-looking inputs.

    Files named explicitly are always kept (a bad one then fails loudly with its own reason); files
    found inside folders are kept only when their content/extension says DICOM, NIfTI or image.
    Raises InputError when a path does not exist or when nothing at all was found.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    found: dict[Path, None] = {}
    for p in paths:
        if not p.exists():
            raise InputError(p, "no such file or folder")
        if p.is_file():
            found[p] = None
            continue
        walker = p.rglob("*") if recursive else p.glob("*")
        for child in sorted(walker):
            if child.is_file() and not any(part.startswith(".") for part in child.relative_to(p).parts) and _candidate(child):
                found[child] = None
    if not found:
        where = ", ".join(str(p) for p in paths) or "(no paths)"
        raise InputError(where, "no DICOM, NIfTI or image files found (empty folder?)")
    return sorted(found)
