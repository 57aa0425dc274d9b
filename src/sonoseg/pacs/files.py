"""Received instances on disk, the same way for every protocol: ``OUT/<study tag>/<SOP Instance UID>.dcm``.

The study folder is named by a hash of the Study Instance UID (:func:`sonoseg.pacs.query.study_tag`),
so folder listings and logs show no identifier; each file is written atomically (a crash leaves no
half file that a later run would take for a complete instance)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from sonoseg.errors import InputError
from sonoseg.pacs.query import study_tag

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _safe_uid(uid: str) -> str:
    u = str(uid).strip()
    if not u or len(u) > 64 or any(c not in "0123456789." for c in u):
        raise InputError("<received instance>", "SOP Instance UID is not a valid UID")
    return u


def instance_path(out_dir: Path, ds: Dataset) -> Path:
    return Path(out_dir) / study_tag(ds.StudyInstanceUID) / f"{_safe_uid(ds.SOPInstanceUID)}.dcm"


def _write_atomic(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_encoded(data: bytes, study_uid: str, sop_uid: str, out_dir: Path) -> Path:
    """Write a received Part 10 byte stream as it came (a DIMSE C-STORE: no decode, no re-encode)."""
    path = Path(out_dir) / study_tag(study_uid) / f"{_safe_uid(sop_uid)}.dcm"
    return _write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def save_instance(ds: Dataset, out_dir: Path, file_meta: FileMetaDataset | None = None) -> Path:
    """Write one received dataset (with its File Meta Information) under ``out_dir``; returns the path."""
    meta = file_meta if file_meta is not None else getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    return _write_atomic(instance_path(out_dir, ds), lambda tmp: ds.save_as(tmp, enforce_file_format=True))


def dicom_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files and folders (recursively, ``*.dcm`` and extension-less files) -> sorted file list."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                          and (f.suffix.lower() == ".dcm" or not f.suffix))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(p, "no such file or folder")
    return out


def read_header(path: str | Path, tags: list[str] | None = None) -> Dataset:
    """The header of a file to send (no pixel data); a one-line InputError when it is not DICOM."""
    import pydicom

    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for non-DICOM input
        raise InputError(path, f"not a readable DICOM file ({type(exc).__name__})") from None


def is_result(path: str | Path) -> bool:
    """A DICOM SEG (anyone's) or one of sonoseg's overlay captures: what ``push`` sends from a folder."""
    import pydicom

    from sonoseg.outputs.dicom_sc import is_overlay_capture

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "Manufacturer", "ManufacturerModelName"])
    except Exception:  # noqa: BLE001 - not DICOM: not a result
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS or is_overlay_capture(ds)
